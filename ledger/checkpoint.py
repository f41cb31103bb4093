"""C2SP tlog checkpoints (https://c2sp.org/tlog-checkpoint) and witness cosignatures.

A checkpoint is a signed note whose text is::

    <origin>\\n<tree size, decimal>\\n<base64 RFC 6962 root hash>\\n[<extension line>\\n ...]

The registry signs it with its Ed25519 note key (`ledger.note.NoteSigner`). Witnesses add
cosignatures (https://c2sp.org/tlog-cosignature, ``cosignature/v1``): note signatures under key
type 0x04 whose signature field is an 8-byte big-endian timestamp followed by an Ed25519 signature
of ``cosignature/v1\\ntime <timestamp>\\n`` + the checkpoint text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from ledger.encoding import b64decode, b64encode
from ledger.errors import EncodingError, NoteError
from ledger.note import (
    ED25519_SIGNATURE_SIZE,
    Ed25519SigningKey,
    KeyId,
    Note,
    NoteSignature,
    Signer,
    Verifier,
    add_signatures,
    check_ed25519_key,
    check_key_name,
    ed25519_verify,
    format_verifier_key,
    open_note,
    parse_ed25519_verifier_key,
    parse_note,
    sign_note,
)

HASH_SIZE = 32
"""Bytes in an RFC 6962 SHA-256 root hash."""

MAX_TREE_SIZE = (1 << 63) - 1
"""Largest tree size accepted: a signed 64-bit integer, as in Go's tlog and SQL BIGINT."""

SIG_TYPE_COSIGNATURE_V1 = 0x04
"""Signature type byte of timestamped Ed25519 witness cosignatures (cosignature/v1)."""

TIMESTAMP_SIZE = 8
MAX_TIMESTAMP = (1 << 63) - 1
"""The cosignature spec caps timestamps at 2^63 - 1."""

COSIGNATURE_SIZE = TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE

_TREE_SIZE = re.compile(r"0|[1-9][0-9]*")


# --- checkpoints ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the log's origin, the tree size and the root hash, plus optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, what="checkpoint origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise NoteError(f"checkpoint size must be an int, found {type(self.size).__name__}")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise NoteError(f"checkpoint size must be between 0 and {MAX_TREE_SIZE}, found {self.size}")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            found = len(self.root_hash) if isinstance(self.root_hash, bytes) else type(self.root_hash).__name__
            raise NoteError(f"checkpoint root hash must be {HASH_SIZE} bytes, found {found}")
        for number, line in enumerate(self.extensions, 1):
            _check_line(line, what=f"checkpoint extension line {number}")

    def body(self) -> str:
        """The note text: origin, size and base64 root hash lines, then the extension lines."""
        lines = [self.origin, str(self.size), b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)


def parse_checkpoint_body(text: str) -> Checkpoint:
    """Parse a checkpoint note text strictly.

    At least three lines, each ending in a newline: a non-empty origin, a decimal size without
    leading zeros, a base64 32-byte root hash; any further lines are non-empty extension lines.
    """
    if not isinstance(text, str):
        raise NoteError(f"checkpoint body must be a string, found {type(text).__name__}")
    if not text.endswith("\n"):
        raise NoteError("checkpoint body must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError(f"checkpoint body has {len(lines)} line(s), expected at least 3 (origin, size, root hash)")
    origin, size_text, root_text, *extensions = lines
    if origin == "":
        raise NoteError("checkpoint origin (line 1) is empty")
    if not _TREE_SIZE.fullmatch(size_text):
        if re.fullmatch(r"0[0-9]+", size_text):
            raise NoteError(f"checkpoint size (line 2) {size_text!r} has leading zeros")
        raise NoteError(f"checkpoint size (line 2) {_clip(size_text)!r} is not a decimal number")
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise NoteError(f"checkpoint size (line 2) {size_text} is larger than {MAX_TREE_SIZE}")
    try:
        root_hash = b64decode(root_text, what="checkpoint root hash (line 3)", size=HASH_SIZE)
    except EncodingError as exc:
        raise NoteError(str(exc)) from None
    for number, line in enumerate(extensions, 4):
        if line == "":
            raise NoteError(f"checkpoint extension line (line {number}) is empty")
    return Checkpoint(origin=origin, size=size, root_hash=root_hash, extensions=tuple(extensions))


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint whose registry signature verified, with the note it came from."""

    checkpoint: Checkpoint
    note: Note

    def to_bytes(self) -> bytes:
        """The signed note, with every signature line it carried (cosignatures included)."""
        return self.note.to_bytes()


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> bytes:
    """The checkpoint as a signed note, signed by the registry's note key."""
    return sign_note(checkpoint.body(), signer)


def open_checkpoint(data: bytes, verifier: Verifier, *, origin: str | None = None) -> SignedCheckpoint:
    """Verify the registry's signature on a signed checkpoint and parse it.

    Steps: (1) the note parses and carries a valid signature by `verifier` (other signatures,
    such as witness cosignatures, are ignored); (2) the text is a well-formed checkpoint; (3) if
    `origin` is given, the checkpoint names that origin.
    """
    # (1) signature
    note = open_note(data, [verifier])
    # (2) body
    checkpoint = parse_checkpoint_body(note.text)
    # (3) origin
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"checkpoint origin is {_clip(checkpoint.origin)!r}, expected {origin!r}")
    return SignedCheckpoint(checkpoint=checkpoint, note=note)


# --- witness cosignatures (cosignature/v1) -------------------------------------------------------


def cosignature_message(checkpoint_body: str, timestamp: int) -> bytes:
    """The bytes a witness signs: ``cosignature/v1\\ntime <timestamp>\\n`` + the checkpoint body."""
    _check_timestamp(timestamp)
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_body}".encode()


@dataclass(frozen=True, slots=True)
class Cosignature:
    """A witness cosignature that verified: who signed, with which key, and when (POSIX seconds)."""

    name: str
    key_id: KeyId
    timestamp: int


class CosignatureSigner(Ed25519SigningKey):
    """A witness's Ed25519 cosigning key (key type 0x04)."""

    __slots__ = ()

    SIG_TYPE: ClassVar[int] = SIG_TYPE_COSIGNATURE_V1
    NAME_WHAT: ClassVar[str] = "witness name"
    KEY_WHAT: ClassVar[str] = "witness key"

    def verifier(self) -> CosignatureVerifier:
        """The verifier for this key."""
        return CosignatureVerifier(name=self._name, key_id=self._key_id, public_key=self._public_key)

    def cosign(self, checkpoint_body: str, timestamp: int) -> NoteSignature:
        """Cosign a checkpoint body at `timestamp` (POSIX seconds); returns the signature line.

        The body must be a well-formed checkpoint: a witness states facts about tree heads only.
        Checking consistency with the last checkpoint it saw is the caller's job.
        """
        parse_checkpoint_body(checkpoint_body)
        message = cosignature_message(checkpoint_body, timestamp)
        signature = self._key.sign(message).signature
        return NoteSignature(
            name=self._name,
            key_id=self._key_id,
            signature=timestamp.to_bytes(TIMESTAMP_SIZE, "big") + signature,
        )


@dataclass(frozen=True, slots=True)
class CosignatureVerifier:
    """A witness's cosignature verifier (key type 0x04); it fits `ledger.note.Verifier`."""

    name: str
    key_id: KeyId
    public_key: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name, what="witness name")
        check_ed25519_key(self.name, self.key_id, self.public_key, SIG_TYPE_COSIGNATURE_V1, what="witness")

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """Parse a witness verifier key ``<name>+<8 hex key id>+<base64(0x04 || public key)>``."""
        parsed = parse_ed25519_verifier_key(
            vkey,
            SIG_TYPE_COSIGNATURE_V1,
            what="witness key",
            expected="a cosignature/v1 Ed25519 key",
            hints={1: " (0x01 is a plain note key, not a witness cosignature key)"},
        )
        return cls(name=parsed.name, key_id=parsed.key_id, public_key=parsed.public_key)

    def verifier_key(self) -> str:
        """The verifier key string this verifier stands for."""
        return format_verifier_key(self.name, SIG_TYPE_COSIGNATURE_V1, self.public_key)

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Whether `sig` (timestamp || Ed25519 signature) cosigns the checkpoint text `msg`."""
        if len(sig) != COSIGNATURE_SIZE:
            return False
        timestamp = int.from_bytes(sig[:TIMESTAMP_SIZE], "big")
        if timestamp > MAX_TIMESTAMP:
            return False
        try:
            body = msg.decode("utf-8")
        except UnicodeDecodeError:
            return False
        message = cosignature_message(body, timestamp)
        return ed25519_verify(self.public_key, message, sig[TIMESTAMP_SIZE:])


def cosignature_timestamp(signature: NoteSignature) -> int:
    """The timestamp (POSIX seconds) carried in a cosignature/v1 signature field, unverified."""
    if len(signature.signature) != COSIGNATURE_SIZE:
        raise NoteError(
            f"cosignature by {signature.key_label()}: signature is {len(signature.signature)} bytes, "
            f"expected {COSIGNATURE_SIZE} (8-byte timestamp and 64-byte Ed25519 signature)"
        )
    timestamp = int.from_bytes(signature.signature[:TIMESTAMP_SIZE], "big")
    if timestamp > MAX_TIMESTAMP:
        raise NoteError(f"cosignature by {signature.key_label()}: timestamp {timestamp} exceeds 2^63 - 1")
    return timestamp


def add_cosignature(signed_checkpoint: bytes, cosignature: NoteSignature, verifier: CosignatureVerifier) -> bytes:
    """Add a witness's cosignature line to a signed checkpoint, after checking it.

    The cosignature must come from `verifier`'s key and verify over the checkpoint's text. A
    previous cosignature by the same key is replaced. The registry's own signature is not
    re-checked here.
    """
    note = parse_note(signed_checkpoint)
    parse_checkpoint_body(note.text)
    if (cosignature.name, cosignature.key_id) != (verifier.name, verifier.key_id):
        raise NoteError(
            f"cosignature is by {cosignature.key_label()}, expected witness {verifier.name}+{verifier.key_id.hex()}"
        )
    cosignature_timestamp(cosignature)
    if not verifier.verify(note.text.encode("utf-8"), cosignature.signature):
        raise NoteError(f"cosignature by {cosignature.key_label()} does not verify for this checkpoint")
    return add_signatures(signed_checkpoint, cosignature)


def verify_cosignatures(signed: SignedCheckpoint, witnesses: Sequence[CosignatureVerifier]) -> tuple[Cosignature, ...]:
    """The cosignatures on an opened checkpoint by the given witnesses that verify.

    Signatures by other keys are ignored. As for any note, a cosignature by a known witness that
    does not verify rejects the checkpoint (`NoteError`); a witness without a cosignature is simply
    absent from the result. Order follows the signature lines; one entry per witness key.
    """
    known = {(witness.name, bytes(witness.key_id)): witness for witness in witnesses}
    text = signed.note.text.encode("utf-8")
    found: dict[tuple[str, bytes], Cosignature] = {}
    for sig in signed.note.signatures:
        key = (sig.name, bytes(sig.key_id))
        witness = known.get(key)
        if witness is None:
            continue
        timestamp = cosignature_timestamp(sig)
        if not witness.verify(text, sig.signature):
            raise NoteError(f"invalid cosignature from known witness {sig.key_label()}")
        found.setdefault(key, Cosignature(name=sig.name, key_id=sig.key_id, timestamp=timestamp))
    return tuple(found.values())


@dataclass(frozen=True, slots=True)
class WitnessCheck:
    """Which of the witnesses asked for cosigned one checkpoint, and whether enough of them did.

    `missing` and `invalid` name witnesses as ``<name>+<8 hex key id>``: missing ones left no
    cosignature line, invalid ones only lines that do not verify for this checkpoint's text.
    """

    required: int
    cosigned: tuple[Cosignature, ...]
    missing: tuple[str, ...]
    invalid: tuple[str, ...]

    @property
    def satisfied(self) -> bool:
        """Whether at least `required` of the witnesses cosigned."""
        return len(self.cosigned) >= self.required

    def shortfall(self) -> str | None:
        """None if satisfied, else what is lacking, naming the witnesses that did not cosign."""
        if self.satisfied:
            return None
        parts = [f"{len(self.cosigned)} valid witness cosignature(s), {self.required} required"]
        if self.missing:
            parts.append("none from " + ", ".join(self.missing))
        if self.invalid:
            parts.append("an invalid one from " + ", ".join(self.invalid))
        return "; ".join(parts)


def check_witnesses(
    signed: SignedCheckpoint, witnesses: Sequence[CosignatureVerifier], *, required: int
) -> WitnessCheck:
    """Check that at least `required` of `witnesses` cosigned this exact checkpoint.

    Steps: (1) `required` is between 0 and the number of distinct witness keys (else `NoteError`);
    (2) each witness's cosignature lines are checked over the checkpoint's text: one that verifies
    counts, one that does not (a malformed field, or a cosignature of another checkpoint) is not
    counted and the witness is named in `invalid`; (3) a witness without a line is `missing`.
    Unlike `verify_cosignatures`, an invalid line does not reject the checkpoint, since a registry
    can append any line: what counts is how many of the witnesses vouched for this text.
    Signatures by other keys are ignored; `cosigned` follows the order of `witnesses`.
    """
    distinct = {(witness.name, bytes(witness.key_id)): witness for witness in witnesses}
    # (1) a reachable requirement
    if isinstance(required, bool) or not isinstance(required, int) or not 0 <= required <= len(distinct):
        raise NoteError(f"required witness cosignatures must be between 0 and {len(distinct)}, found {required!r}")
    # (2) the lines by each witness, over this checkpoint's text
    text = signed.note.text.encode("utf-8")
    lines: dict[tuple[str, bytes], list[NoteSignature]] = {}
    for sig in signed.note.signatures:
        lines.setdefault((sig.name, bytes(sig.key_id)), []).append(sig)
    cosigned: list[Cosignature] = []
    missing: list[str] = []
    invalid: list[str] = []
    for key, witness in distinct.items():
        label = f"{witness.name}+{witness.key_id.hex()}"
        found = lines.get(key)
        if not found:
            missing.append(label)  # (3)
            continue
        valid = next((sig for sig in found if witness.verify(text, sig.signature)), None)
        if valid is None:
            invalid.append(label)
            continue
        timestamp = cosignature_timestamp(valid)  # well-formed, since it verified
        cosigned.append(Cosignature(name=witness.name, key_id=witness.key_id, timestamp=timestamp))
    return WitnessCheck(required=required, cosigned=tuple(cosigned), missing=tuple(missing), invalid=tuple(invalid))


# --- helpers -------------------------------------------------------------------------------------


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise NoteError(f"cosignature timestamp must be an int, found {type(timestamp).__name__}")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError(f"cosignature timestamp must be between 0 and 2^63 - 1, found {timestamp}")


def _check_line(line: str, *, what: str) -> None:
    if not isinstance(line, str) or line == "":
        raise NoteError(f"{what} must be a non-empty string")
    for offset, char in enumerate(line):
        if ord(char) < 0x20:
            raise NoteError(f"{what} contains control character U+{ord(char):04X} at character {offset}")


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
