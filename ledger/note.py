"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

A signed note is a UTF-8 text ending in a newline, a blank line, then one or more signature lines::

    <text, ending in \\n>
    \\n
    — <key name> <base64(4-byte key id || signature)>\\n

The signature covers the text including its final newline, not the blank line. A key is identified by
its name and a 4-byte key id, SHA-256(name || 0x0A || signature type || public key)[:4]; its verifier
key is published as ``<name>+<8 hex key id>+<base64(signature type || public key)>``.

The format is byte-compatible with Go's ``golang.org/x/mod/sumdb/note``. Verification follows the
spec: signatures by unknown keys are ignored, a known key whose signature fails rejects the whole
note, and a note without a verified signature from a known key is rejected.

Anything that can verify a signature line — a registry key here, a witness cosignature key in
`ledger.checkpoint` — is a `Verifier`, so `open_note` serves both.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, NewType, Protocol, Self

import nacl.exceptions
import nacl.signing

from ledger.encoding import b64decode, b64encode
from ledger.errors import EncodingError, NoteError

KeyId = NewType("KeyId", bytes)
"""The 4-byte key id of a note key (big-endian uint32 on the wire)."""

SIG_TYPE_ED25519 = 0x01
"""Signature type byte of plain Ed25519 note signatures."""

KEY_ID_SIZE = 4
ED25519_PUBLIC_KEY_SIZE = 32
ED25519_SEED_SIZE = 32
ED25519_SIGNATURE_SIZE = 64

MAX_SIGNATURES = 100
"""Most signature lines a note may carry (Go's limit; the spec asks verifiers to accept at least 16)."""

MAX_NOTE_SIZE = 1 << 20
"""Most bytes a signed note may have; a checkpoint with a hundred signatures is far below this."""

SIGNATURE_PREFIX = "\u2014 "
"""Every signature line starts with an em dash (U+2014) and a space."""

_HEX8 = re.compile(r"[0-9a-fA-F]{8}")


# --- key names, key ids and verifier keys -------------------------------------------------------


def check_key_name(name: str, *, what: str = "key name") -> None:
    """Raise `NoteError` unless `name` is a valid key name.

    A key name is non-empty UTF-8 without Unicode spaces, without plus (U+002B) and without control
    characters (which a note may not contain anyway).
    """
    if not isinstance(name, str) or name == "":
        raise NoteError(f"{what} must be a non-empty string")
    for offset, char in enumerate(name):
        if char.isspace():
            raise NoteError(f"{what} {name!r} contains a space character (U+{ord(char):04X}) at {offset}")
        if char == "+":
            raise NoteError(f"{what} {name!r} contains '+' at {offset}, which separates verifier key fields")
        if ord(char) < 0x20:
            raise NoteError(f"{what} {name!r} contains control character U+{ord(char):04X} at {offset}")
    _utf8(name, what=what)


def compute_key_id(name: str, sig_type: int, public_key: bytes) -> KeyId:
    """The key id SHA-256(name || 0x0A || sig_type || public_key)[:4] recommended by the spec."""
    check_key_name(name)
    if not 0 <= sig_type <= 0xFF:
        raise NoteError(f"signature type must be one byte, found {sig_type}")
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key).digest()
    return KeyId(digest[:KEY_ID_SIZE])


def format_verifier_key(name: str, sig_type: int, public_key: bytes) -> str:
    """Encode ``<name>+<8 hex key id>+<base64(sig_type || public_key)>``."""
    key_id = compute_key_id(name, sig_type, public_key)
    return f"{name}+{key_id.hex()}+{b64encode(bytes([sig_type]) + public_key)}"


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """The fields of a parsed verifier key string, before the key type is interpreted."""

    name: str
    key_id: KeyId
    sig_type: int
    public_key: bytes


def parse_verifier_key(vkey: str) -> VerifierKey:
    """Parse ``<name>+<8 hex key id>+<base64(type || key)>`` and check the key id against the key.

    The key type and length are not checked here; `NoteVerifier.from_vkey` and
    `ledger.checkpoint.CosignatureVerifier.from_vkey` each accept only their own type.
    """
    if not isinstance(vkey, str):
        raise NoteError(f"verifier key must be a string, found {type(vkey).__name__}")
    # The name holds no '+', the key id holds none, and the base64 key may hold some: split twice.
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise NoteError(f"verifier key {vkey!r} must have the form <name>+<8 hex digit key id>+<base64 key>")
    name, id_hex, key_b64 = parts
    check_key_name(name, what="verifier key name")
    if not _HEX8.fullmatch(id_hex):
        raise NoteError(f"verifier key {name}: key id must be 8 hex digits, found {id_hex!r}")
    if key_b64 == "":
        raise NoteError(f"verifier key {name}: key data is empty")
    try:
        key_data = b64decode(key_b64, what=f"verifier key {name}: key data")
    except EncodingError as exc:
        raise NoteError(str(exc)) from None
    if len(key_data) < 2:
        raise NoteError(f"verifier key {name}: key data is {len(key_data)} bytes, expected a type byte and a key")
    key_id = KeyId(bytes.fromhex(id_hex))
    expected = compute_key_id(name, key_data[0], key_data[1:])
    if key_id != expected:
        raise NoteError(
            f"verifier key {name}: key id {key_id.hex()} does not match the key, which hashes to {expected.hex()}"
        )
    return VerifierKey(name=name, key_id=key_id, sig_type=key_data[0], public_key=key_data[1:])


# --- signers and verifiers -----------------------------------------------------------------------


class Verifier(Protocol):
    """Anything that can check signature lines of one key: a name, a key id and a check."""

    @property
    def name(self) -> str:
        """The key name the signature line must carry."""
        ...

    @property
    def key_id(self) -> KeyId:
        """The 4-byte key id the signature line must carry."""
        ...

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Whether `sig` (the signature bytes after the key id) is valid for the note text `msg`."""
        ...


class Signer(Protocol):
    """Anything that can sign a note text under a name and key id."""

    @property
    def name(self) -> str:
        """The key name written in the signature line."""
        ...

    @property
    def key_id(self) -> KeyId:
        """The 4-byte key id written in the signature line."""
        ...

    def sign(self, text: str) -> bytes:
        """The signature bytes (written after the key id) over the note text."""
        ...


def signing_key_from(key: nacl.signing.SigningKey | bytes, *, what: str = "signing key") -> nacl.signing.SigningKey:
    """Accept a PyNaCl signing key or a 32-byte Ed25519 seed."""
    if isinstance(key, nacl.signing.SigningKey):
        return key
    if isinstance(key, bytes | bytearray) and len(key) == ED25519_SEED_SIZE:
        return nacl.signing.SigningKey(bytes(key))
    found = f"{len(key)} bytes" if isinstance(key, bytes | bytearray) else type(key).__name__
    raise NoteError(f"{what} must be a nacl SigningKey or a {ED25519_SEED_SIZE}-byte seed, found {found}")


class Ed25519SigningKey:
    """An Ed25519 signing key bound to a key name, for one signature type (notes 0x01, cosignatures 0x04)."""

    __slots__ = ("_key", "_key_id", "_name", "_public_key")

    SIG_TYPE: ClassVar[int] = SIG_TYPE_ED25519
    NAME_WHAT: ClassVar[str] = "key name"
    KEY_WHAT: ClassVar[str] = "signing key"

    def __init__(self, name: str, key: nacl.signing.SigningKey | bytes) -> None:
        """Bind `key` (a nacl SigningKey or a 32-byte seed) to the key name `name`."""
        check_key_name(name, what=self.NAME_WHAT)
        self._name = name
        self._key = signing_key_from(key, what=self.KEY_WHAT)
        self._public_key = bytes(self._key.verify_key)
        self._key_id = compute_key_id(name, self.SIG_TYPE, self._public_key)

    @classmethod
    def generate(cls, name: str) -> Self:
        """A signer with a fresh random key."""
        return cls(name, nacl.signing.SigningKey.generate())

    @property
    def name(self) -> str:
        """The key name written in signature lines."""
        return self._name

    @property
    def key_id(self) -> KeyId:
        """SHA-256(name || 0x0A || signature type || public key)[:4]."""
        return self._key_id

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        return self._public_key

    def verifier_key(self) -> str:
        """The published verifier key ``<name>+<8 hex key id>+<base64(type || public key)>``."""
        return format_verifier_key(self._name, self.SIG_TYPE, self._public_key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, key_id={self._key_id.hex()})"


class NoteSigner(Ed25519SigningKey):
    """An Ed25519 note key (signature type 0x01) that signs note texts."""

    __slots__ = ()

    def verifier(self) -> NoteVerifier:
        """The verifier for this key."""
        return NoteVerifier(name=self._name, key_id=self._key_id, public_key=self._public_key)

    def sign(self, text: str) -> bytes:
        """The 64-byte Ed25519 signature of the UTF-8 bytes of `text`."""
        return self._key.sign(_utf8(text, what="note text")).signature


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """An Ed25519 note verifier (signature type 0x01), usually built from a published verifier key."""

    name: str
    key_id: KeyId
    public_key: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        check_ed25519_key(self.name, self.key_id, self.public_key, SIG_TYPE_ED25519, what="verifier")

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse a verifier key ``<name>+<8 hex key id>+<base64(0x01 || 32-byte public key)>``."""
        parsed = parse_ed25519_verifier_key(
            vkey,
            SIG_TYPE_ED25519,
            what="verifier key",
            expected="Ed25519",
            hints={4: " (0x04 is a witness cosignature key: use CosignatureVerifier)"},
        )
        return cls(name=parsed.name, key_id=parsed.key_id, public_key=parsed.public_key)

    def verifier_key(self) -> str:
        """The verifier key string this verifier stands for."""
        return format_verifier_key(self.name, SIG_TYPE_ED25519, self.public_key)

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Whether `sig` is a valid Ed25519 signature of `msg` by this key."""
        return ed25519_verify(self.public_key, msg, sig)


def check_ed25519_key(name: str, key_id: KeyId, public_key: bytes, sig_type: int, *, what: str) -> None:
    """Refuse an Ed25519 verifier whose key is not 32 bytes or whose key id does not match it."""
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE:
        raise NoteError(
            f"{what} {name}: Ed25519 public key must be {ED25519_PUBLIC_KEY_SIZE} bytes, found {len(public_key)}"
        )
    expected = compute_key_id(name, sig_type, public_key)
    if key_id != expected:
        raise NoteError(f"{what} {name}: key id {key_id.hex()} should be {expected.hex()}")


def parse_ed25519_verifier_key(
    vkey: str, sig_type: int, *, what: str, expected: str, hints: dict[int, str]
) -> VerifierKey:
    """Parse a verifier key that must be of ``sig_type`` and carry a 32-byte Ed25519 public key."""
    parsed = parse_verifier_key(vkey)
    if parsed.sig_type != sig_type:
        raise NoteError(
            f"{what} {parsed.name}: key type 0x{parsed.sig_type:02x} is not {expected} "
            f"(0x{sig_type:02x}){hints.get(parsed.sig_type, '')}"
        )
    if len(parsed.public_key) != ED25519_PUBLIC_KEY_SIZE:
        raise NoteError(
            f"{what} {parsed.name}: Ed25519 public key must be {ED25519_PUBLIC_KEY_SIZE} bytes, "
            f"found {len(parsed.public_key)}"
        )
    return parsed


def ed25519_verify(public_key: bytes, msg: bytes, sig: bytes) -> bool:
    """Ed25519 verification that answers False instead of raising on any bad input."""
    if len(sig) != ED25519_SIGNATURE_SIZE or len(public_key) != ED25519_PUBLIC_KEY_SIZE:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(msg, sig)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True


# --- notes ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: the key name, the 4-byte key id and the signature bytes after the id.

    `signature` is the raw field after the key id, so a cosignature's 8-byte timestamp prefix is
    part of it.
    """

    name: str
    key_id: KeyId
    signature: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.key_id) != KEY_ID_SIZE:
            raise NoteError(f"signature by {self.name}: key id must be {KEY_ID_SIZE} bytes, found {len(self.key_id)}")
        if len(self.signature) == 0:
            raise NoteError(f"signature by {self.name}: signature is empty")

    def line(self) -> str:
        """The signature line, ``— <name> <base64(key id || signature)>`` and a newline."""
        return f"{SIGNATURE_PREFIX}{self.name} {b64encode(self.key_id + self.signature)}\n"

    def key_label(self) -> str:
        """``<name>+<8 hex key id>``, how Go names a key in its errors."""
        return f"{self.name}+{self.key_id.hex()}"


def parse_signature_line(line: str, *, what: str = "signature line") -> NoteSignature:
    """Parse one signature line (with or without its final newline)."""
    if line.endswith("\n"):
        line = line[:-1]
    if "\n" in line:
        raise NoteError(f"{what} contains a newline")
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError(f"{what} does not start with an em dash (U+2014) and a space: {_clip(line)!r}")
    name, sep, b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not sep:
        raise NoteError(f"{what} has no space between the key name and the signature: {_clip(line)!r}")
    check_key_name(name, what=f"{what}: key name")
    if b64 == "":
        raise NoteError(f"{what} ({name}): signature is empty")
    try:
        raw = b64decode(b64, what=f"{what} ({name}): signature")
    except EncodingError as exc:
        raise NoteError(str(exc)) from None
    if len(raw) <= KEY_ID_SIZE:
        raise NoteError(
            f"{what} ({name}): signature is {len(raw)} bytes, expected a {KEY_ID_SIZE}-byte key id "
            "and at least one signature byte"
        )
    return NoteSignature(name=name, key_id=KeyId(raw[:KEY_ID_SIZE]), signature=raw[KEY_ID_SIZE:])


@dataclass(frozen=True, slots=True)
class Note:
    """A note text and its signature lines, in the order they appear.

    `verified` is filled by `open_note` with the signatures (one per key) that verified with a
    known key; `parse_note` leaves it empty.
    """

    text: str
    signatures: tuple[NoteSignature, ...]
    verified: tuple[NoteSignature, ...] = ()

    def to_bytes(self) -> bytes:
        """The signed note: the text, a blank line and the signature lines."""
        return _encode_note(self.text, self.signatures)


def check_note_text(text: str) -> None:
    """Raise `NoteError` unless `text` can be the text of a signed note.

    The text must end in a newline and contain no control characters other than newline.
    """
    if not isinstance(text, str):
        raise NoteError(f"note text must be a string, found {type(text).__name__}")
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    _check_characters(text, what="note text")
    _utf8(text, what="note text")


def sign_note(text: str, *signers: Signer) -> bytes:
    """Sign `text` with every signer and return the signed note, signatures in signer order."""
    check_note_text(text)
    if not signers:
        raise NoteError("sign_note needs at least one signer")
    signatures = []
    for signer in signers:
        signatures.append(NoteSignature(name=signer.name, key_id=signer.key_id, signature=signer.sign(text)))
    return _encode_note(text, tuple(signatures))


def add_signatures(data: bytes, *signatures: NoteSignature) -> bytes:
    """Add signature lines to a signed note; a line replaces an existing one by the same key.

    The note is parsed, not verified; callers check the new signatures before adding them.
    """
    note = parse_note(data)
    keys = {(sig.name, sig.key_id) for sig in signatures}
    kept = tuple(sig for sig in note.signatures if (sig.name, sig.key_id) not in keys)
    return _encode_note(note.text, kept + tuple(signatures))


def parse_note(data: bytes) -> Note:
    """Parse a signed note strictly, without verifying any signature.

    Steps: (1) size limit; (2) UTF-8 and no control character but newline; (3) split at the last
    blank line; (4) each signature line well formed, at most `MAX_SIGNATURES` of them.
    """
    if not isinstance(data, bytes | bytearray):
        raise NoteError(f"note must be bytes, found {type(data).__name__}")
    # (1) size
    if len(data) > MAX_NOTE_SIZE:
        raise NoteError(f"note is {len(data)} bytes, more than the limit of {MAX_NOTE_SIZE}")
    # (2) characters
    try:
        decoded = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError(f"note is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    _check_characters(decoded, what="note")
    # (3) text and signature block, separated by the last blank line
    split = decoded.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line separating the text from the signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if block == "":
        raise NoteError("note has no signature lines after the blank line")
    if not block.endswith("\n"):
        raise NoteError("note does not end with a newline after its last signature line")
    # (4) signature lines
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(lines)} signature lines, more than the limit of {MAX_SIGNATURES}")
    signatures = tuple(
        parse_signature_line(line, what=f"signature line {number}") for number, line in enumerate(lines, 1)
    )
    return Note(text=text, signatures=signatures)


def open_note(data: bytes, verifiers: Sequence[Verifier]) -> Note:
    """Parse a signed note and verify its signatures against the known keys.

    Signatures by unknown keys (name and key id not both known) are ignored. Every signature by a
    known key must verify, or the whole note is rejected; at least one must be present. The
    returned note keeps all its signature lines and lists the verified ones in `verified`.
    """
    note = parse_note(data)
    known: dict[tuple[str, bytes], Verifier] = {}
    for verifier in verifiers:
        key = (verifier.name, bytes(verifier.key_id))
        if key in known:
            raise NoteError(f"ambiguous verifiers: more than one key named {verifier.name}+{key[1].hex()}")
        known[key] = verifier
    text = note.text.encode("utf-8")
    verified: dict[tuple[str, bytes], NoteSignature] = {}
    for sig in note.signatures:
        key = (sig.name, bytes(sig.key_id))
        match = known.get(key)
        if match is None:
            continue
        if not match.verify(text, sig.signature):
            raise NoteError(f"invalid signature from known key {sig.key_label()}")
        verified.setdefault(key, sig)
    if not verified:
        found = ", ".join(sig.key_label() for sig in note.signatures)
        expected = ", ".join(f"{name}+{key_id.hex()}" for name, key_id in known) or "none given"
        raise NoteError(f"no signature from a known key: note is signed by {found}; known keys: {expected}")
    return Note(text=note.text, signatures=note.signatures, verified=tuple(verified.values()))


# --- helpers -------------------------------------------------------------------------------------


def _encode_note(text: str, signatures: tuple[NoteSignature, ...]) -> bytes:
    check_note_text(text)
    if not signatures:
        raise NoteError("a signed note needs at least one signature")
    if len(signatures) > MAX_SIGNATURES:
        raise NoteError(f"note would have {len(signatures)} signatures, more than the limit of {MAX_SIGNATURES}")
    data = (text + "\n" + "".join(sig.line() for sig in signatures)).encode("utf-8")
    if len(data) > MAX_NOTE_SIZE:
        raise NoteError(f"note would be {len(data)} bytes, more than the limit of {MAX_NOTE_SIZE}")
    return data


def _check_characters(text: str, *, what: str) -> None:
    for offset, char in enumerate(text):
        if ord(char) < 0x20 and char != "\n":
            raise NoteError(
                f"{what} contains control character U+{ord(char):04X} at character {offset}; only newline is allowed"
            )


def _utf8(text: str, *, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NoteError(f"{what} is not encodable as UTF-8 ({exc.reason} at {exc.start})") from None


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
