"""Participant Ed25519 keys: signing, verification, key ids and passphrase-protected key files.

A participant signs every transaction with an Ed25519 key (SPEC §2, §4). This module is the only place
that touches PyNaCl's signing API; callers see `PrivateKey`, `PublicKey`, `KeyId` and `LedgerError`s.

Key id
    ``KeyId`` is 16 lowercase hex characters: the first 8 bytes of
    SHA-256(``b"cdcer/key-id/v1\\x00"`` ‖ 32-byte raw public key).

Key file (``cdcer-key/v1``)
    A UTF-8 JSON object. An encrypted file::

        {"format": "cdcer-key/v1", "label": "...", "public_key": "<b64>", "key_id": "<hex>",
         "encryption": "argon2id+xsalsa20poly1305",
         "kdf": {"opslimit": 2, "memlimit": 67108864, "salt": "<b64 16 bytes>"},
         "nonce": "<b64 24 bytes>", "ciphertext": "<b64 80 bytes>"}

    The secret box key is Argon2id(passphrase, salt, opslimit, memlimit). The plaintext is the 32-byte
    seed followed by SHA-256(``b"cdcer/key-file/v1\\x00"`` ‖ RFC 8785 JSON of the header), where the
    header is every field except ``nonce`` and ``ciphertext``. XSalsa20-Poly1305 has no associated data,
    so this digest is what binds the label, public key and KDF parameters to the ciphertext: editing any
    of them is detected after decryption. The KDF limits are read from the file, after checking them
    against upper bounds, so a hostile file cannot make the reader allocate gigabytes.

    A plain file (development only) has ``"encryption": "none"`` and ``"seed": "<b64>"`` instead of the
    ``kdf``, ``nonce`` and ``ciphertext`` fields.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, NewType

import nacl.exceptions
import nacl.secret
import nacl.signing
import nacl.utils
from nacl.pwhash import argon2id

from ledger.encoding import b64decode, b64encode, canonical_json
from ledger.errors import EncodingError, KeyFileError, SignatureError

__all__ = [
    "KdfProfile",
    "KeyId",
    "PrivateKey",
    "PublicKey",
    "decode_key_file",
    "encode_key_file",
    "read_key_file",
    "read_public_key",
    "write_key_file",
]

KeyId = NewType("KeyId", str)
"""A participant key id: 16 lowercase hex characters (see the module docstring)."""

KdfProfile = Literal["interactive", "moderate", "sensitive"]

_KEY_FILE_FORMAT: Final = "cdcer-key/v1"
_KDF_PROFILE_ENV: Final = "CDCER_KDF_PROFILE"

_PUBLIC_KEY_SIZE: Final = 32
_SEED_SIZE: Final = 32
_SIGNATURE_SIZE: Final = 64

_KEY_ID_PREFIX: Final = b"cdcer/key-id/v1\x00"
_HEADER_DIGEST_PREFIX: Final = b"cdcer/key-file/v1\x00"
_ENCRYPTED: Final = "argon2id+xsalsa20poly1305"
_PLAIN: Final = "none"
_KDF_LIMITS: Final[dict[str, tuple[int, int]]] = {
    "interactive": (argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE),
    "moderate": (argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE),
    "sensitive": (argon2id.OPSLIMIT_SENSITIVE, argon2id.MEMLIMIT_SENSITIVE),
}
# Bounds on what a file may ask of the reader: nothing costlier than libsodium's "sensitive" profile
# (1 GiB, 4 passes), nothing below libsodium's own minimum.
_MIN_OPSLIMIT: Final = argon2id.OPSLIMIT_MIN
_MAX_OPSLIMIT: Final = argon2id.OPSLIMIT_SENSITIVE
_MIN_MEMLIMIT: Final = argon2id.MEMLIMIT_MIN
_MAX_MEMLIMIT: Final = argon2id.MEMLIMIT_SENSITIVE
_DIGEST_SIZE: Final = 32
_PLAINTEXT_SIZE: Final = _SEED_SIZE + _DIGEST_SIZE
_CIPHERTEXT_SIZE: Final = _PLAINTEXT_SIZE + nacl.secret.SecretBox.MACBYTES
# A key file is a few hundred bytes; refuse to parse anything that is clearly something else.
_MAX_FILE_SIZE: Final = 64 * 1024
_MAX_LABEL_LENGTH: Final = 256

_COMMON_FIELDS: Final = frozenset({"format", "label", "public_key", "key_id", "encryption"})
_ENCRYPTED_FIELDS: Final = _COMMON_FIELDS | {"kdf", "nonce", "ciphertext"}
_PLAIN_FIELDS: Final = _COMMON_FIELDS | {"seed"}
_KDF_FIELDS: Final = frozenset({"opslimit", "memlimit", "salt"})


def _key_id_of(raw_public_key: bytes) -> KeyId:
    """The key id of a 32-byte raw Ed25519 public key (first 8 bytes of a domain-separated SHA-256)."""
    if len(raw_public_key) != _PUBLIC_KEY_SIZE:
        raise EncodingError(f"public key: expected {_PUBLIC_KEY_SIZE} bytes, found {len(raw_public_key)}")
    return KeyId(hashlib.sha256(_KEY_ID_PREFIX + raw_public_key).digest()[:8].hex())


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key (32 raw bytes) that verifies detached signatures."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes):
            raise EncodingError(f"public key: expected bytes, found {type(self.raw).__name__}")
        if len(self.raw) != _PUBLIC_KEY_SIZE:
            raise EncodingError(f"public key: expected {_PUBLIC_KEY_SIZE} bytes, found {len(self.raw)}")

    @classmethod
    def from_b64(cls, text: str) -> PublicKey:
        """Parse a public key from strict standard base64 of exactly 32 bytes."""
        return cls(b64decode(text, what="public key", size=_PUBLIC_KEY_SIZE))

    def b64(self) -> str:
        """The public key as standard base64 with padding."""
        return b64encode(self.raw)

    @property
    def key_id(self) -> KeyId:
        """The participant key id of this public key."""
        return _key_id_of(self.raw)

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check a detached Ed25519 signature over `message`; raise `SignatureError` if it fails."""
        if len(signature) != _SIGNATURE_SIZE:
            raise SignatureError(
                f"signature does not verify for key {self.key_id}: "
                f"expected {_SIGNATURE_SIZE} bytes, found {len(signature)}"
            )
        try:
            nacl.signing.VerifyKey(self.raw).verify(message, signature)
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            # BadSignatureError is a CryptoError; libsodium also refuses small-order or non-canonical
            # public keys at this point, which is the same answer for the caller.
            raise SignatureError(f"signature does not verify for key {self.key_id}") from None


class PrivateKey:
    """An Ed25519 signing key. Its `repr` names only the key id, never the seed."""

    __slots__ = ("_signing_key",)

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._signing_key = signing_key

    @classmethod
    def generate(cls) -> PrivateKey:
        """A new random key from the operating system's CSPRNG."""
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> PrivateKey:
        """The key for a 32-byte Ed25519 seed; any other length raises `EncodingError`."""
        if not isinstance(seed, bytes):
            raise EncodingError(f"seed: expected bytes, found {type(seed).__name__}")
        if len(seed) != _SEED_SIZE:
            raise EncodingError(f"seed: expected {_SEED_SIZE} bytes, found {len(seed)}")
        return cls(nacl.signing.SigningKey(seed))

    @property
    def seed(self) -> bytes:
        """The 32-byte secret seed. Handle with care: it is the whole secret."""
        return bytes(self._signing_key)

    @property
    def public_key(self) -> PublicKey:
        """The matching public key."""
        return PublicKey(bytes(self._signing_key.verify_key))

    @property
    def key_id(self) -> KeyId:
        """The participant key id of the matching public key."""
        return self.public_key.key_id

    def sign(self, message: bytes) -> bytes:
        """A 64-byte detached Ed25519 signature over `message`."""
        return bytes(self._signing_key.sign(message).signature)

    def __repr__(self) -> str:
        return f"PrivateKey(key_id={self.key_id!r})"


# --- key files -----------------------------------------------------------------------------------


def encode_key_file(
    key: PrivateKey,
    *,
    passphrase: str | None,
    label: str = "",
    kdf_profile: KdfProfile | None = None,
) -> bytes:
    """The bytes of a ``cdcer-key/v1`` key file for `key`.

    With a passphrase the seed is encrypted (Argon2id + XSalsa20-Poly1305). ``passphrase=None`` writes
    the seed in the clear and is for development only. `kdf_profile` chooses the Argon2id limits;
    when omitted it is read from ``$CDCER_KDF_PROFILE`` and defaults to ``moderate``.
    """
    _check_label(label)
    public_key = key.public_key
    header: dict[str, Any] = {
        "format": _KEY_FILE_FORMAT,
        "label": label,
        "public_key": public_key.b64(),
        "key_id": public_key.key_id,
    }
    if passphrase is None:
        header["encryption"] = _PLAIN
        header["seed"] = b64encode(key.seed)
        return _dump(header)

    secret = _passphrase_bytes(passphrase)
    opslimit, memlimit = _kdf_limits(kdf_profile)
    salt = nacl.utils.random(argon2id.SALTBYTES)
    header["encryption"] = _ENCRYPTED
    header["kdf"] = {"opslimit": opslimit, "memlimit": memlimit, "salt": b64encode(salt)}
    box = nacl.secret.SecretBox(_derive_key(secret, salt, opslimit, memlimit, "key file"))
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    encrypted = box.encrypt(key.seed + _header_digest(header, "key file"), nonce)
    return _dump({**header, "nonce": b64encode(nonce), "ciphertext": b64encode(encrypted.ciphertext)})


def decode_key_file(data: bytes, *, passphrase: str | None) -> PrivateKey:
    """The private key in key file bytes; every failure is a `KeyFileError` saying what to fix.

    An encrypted file needs its passphrase; a plain file must be read with ``passphrase=None``.
    """
    return _decode(data, passphrase, "key file")


def read_public_key(data: bytes) -> PublicKey:
    """The public key stated in key file bytes, without the passphrase.

    Checks the file's structure and that its key id matches its public key; it cannot check that the
    encrypted seed belongs to that public key (only `decode_key_file` can).
    """
    document = _parse(data, "key file")
    return _header_public_key(document, "key file")


def write_key_file(
    path: Path,
    key: PrivateKey,
    *,
    passphrase: str | None,
    label: str = "",
    overwrite: bool = False,
    kdf_profile: KdfProfile | None = None,
) -> None:
    """Write `key` to `path` as a key file readable only by its owner (mode 0600).

    Refuses to replace an existing file unless ``overwrite=True``; a replacement is written to a
    temporary file and renamed over the old one, so a crash never leaves a half-written key.
    """
    data = encode_key_file(key, passphrase=passphrase, label=label, kdf_profile=kdf_profile)
    try:
        if overwrite:
            _replace_file(path, data)
        else:
            _create_file(path, data)
    except FileExistsError:
        raise KeyFileError(f"key file {path} already exists; pass overwrite=True to replace it") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror or exc}") from None


def read_key_file(path: Path, *, passphrase: str | None) -> PrivateKey:
    """Read and decrypt the key file at `path`; every failure is a `KeyFileError` naming the path."""
    try:
        with path.open("rb") as stream:
            data = stream.read(_MAX_FILE_SIZE + 1)
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} not found") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    return _decode(data, passphrase, f"key file {path}")


# --- helpers -------------------------------------------------------------------------------------


def _decode(data: bytes, passphrase: str | None, where: str) -> PrivateKey:
    document = _parse(data, where)
    public_key = _header_public_key(document, where)
    encryption = document["encryption"]

    if encryption == _PLAIN:
        _require_fields(document, _PLAIN_FIELDS, where)
        if passphrase is not None:
            raise KeyFileError(f"{where} is not encrypted; read it with passphrase=None")
        seed = _b64_field(document, "seed", _SEED_SIZE, where)
        return _matching_key(seed, public_key, where)

    _require_fields(document, _ENCRYPTED_FIELDS, where)
    if passphrase is None:
        raise KeyFileError(f"{where} is encrypted; a passphrase is required")
    opslimit, memlimit, salt = _kdf_params(document["kdf"], where)
    nonce = _b64_field(document, "nonce", nacl.secret.SecretBox.NONCE_SIZE, where)
    ciphertext = _b64_field(document, "ciphertext", _CIPHERTEXT_SIZE, where)
    secret = _passphrase_bytes(passphrase)

    box = nacl.secret.SecretBox(_derive_key(secret, salt, opslimit, memlimit, where))
    try:
        plaintext = box.decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        raise KeyFileError(f"wrong passphrase or corrupted {where}") from None
    if len(plaintext) != _PLAINTEXT_SIZE:  # authenticated, so only a buggy writer gets here
        raise KeyFileError(f"corrupted {where}: decrypted {len(plaintext)} bytes, expected {_PLAINTEXT_SIZE}")
    seed, digest = plaintext[:_SEED_SIZE], plaintext[_SEED_SIZE:]
    key = _matching_key(seed, public_key, where)
    header = {name: document[name] for name in _ENCRYPTED_FIELDS - {"nonce", "ciphertext"}}
    if not hmac.compare_digest(digest, _header_digest(header, where)):
        raise KeyFileError(f"{where}: header does not match its encrypted contents (label or KDF parameters altered)")
    return key


def _parse(data: bytes, where: str) -> dict[str, Any]:
    if len(data) > _MAX_FILE_SIZE:
        raise KeyFileError(f"{where}: larger than {_MAX_FILE_SIZE} bytes; not a cdcer key file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KeyFileError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        document = json.loads(text, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant)
    except RecursionError:
        raise KeyFileError(f"{where}: not a cdcer key file (JSON nested too deeply)") from None
    except (json.JSONDecodeError, ValueError) as exc:
        raise KeyFileError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise KeyFileError(f"{where}: expected a JSON object, found {_json_type(document)}")
    if "format" not in document:
        raise KeyFileError(f"{where}: missing field 'format'; not a cdcer key file")
    if document["format"] != _KEY_FILE_FORMAT:
        raise KeyFileError(
            f"{where}: unknown format {document['format']!r} (expected {_KEY_FILE_FORMAT!r}); "
            "it may have been written by a newer cdcer"
        )
    _require_fields(document, _COMMON_FIELDS, where, exact=False)
    for name in ("label", "public_key", "key_id", "encryption"):
        _require_str(document, name, where)
    if document["encryption"] not in (_ENCRYPTED, _PLAIN):
        raise KeyFileError(
            f"{where}: unknown encryption {document['encryption']!r} (expected {_ENCRYPTED!r} or {_PLAIN!r})"
        )
    return document


def _header_public_key(document: dict[str, Any], where: str) -> PublicKey:
    public_key = PublicKey(_b64_field(document, "public_key", _PUBLIC_KEY_SIZE, where))
    if document["key_id"] != public_key.key_id:
        raise KeyFileError(
            f"{where}: public key mismatch: key_id {document['key_id']!r} is not the id of public_key "
            f"({public_key.key_id})"
        )
    return public_key


def _matching_key(seed: bytes, public_key: PublicKey, where: str) -> PrivateKey:
    key = PrivateKey.from_seed(seed)
    if key.public_key != public_key:
        raise KeyFileError(
            f"{where}: public key mismatch: the file states key {public_key.key_id} but its secret key is {key.key_id}"
        )
    return key


def _require_fields(document: dict[str, Any], fields: frozenset[str], where: str, *, exact: bool = True) -> None:
    missing = sorted(fields - document.keys())
    if missing:
        raise KeyFileError(f"{where}: missing field {', '.join(map(repr, missing))}")
    extra = sorted(document.keys() - fields)
    if exact and extra:
        raise KeyFileError(f"{where}: unexpected field {', '.join(map(repr, extra))}")


def _require_str(document: dict[str, Any], name: str, where: str) -> str:
    value = document[name]
    if not isinstance(value, str):
        raise KeyFileError(f"{where}: field {name!r} must be a string, found {_json_type(value)}")
    return value


def _b64_field(document: dict[str, Any], name: str, size: int, where: str) -> bytes:
    text = _require_str(document, name, where)
    try:
        return b64decode(text, what=f"field {name!r}", size=size)
    except EncodingError as exc:
        raise KeyFileError(f"{where}: {exc}") from None


def _kdf_params(kdf: Any, where: str) -> tuple[int, int, bytes]:
    if not isinstance(kdf, dict):
        raise KeyFileError(f"{where}: field 'kdf' must be an object, found {_json_type(kdf)}")
    _require_fields(kdf, _KDF_FIELDS, f"{where} kdf")
    limits: list[int] = []
    for name, low, high in (
        ("opslimit", _MIN_OPSLIMIT, _MAX_OPSLIMIT),
        ("memlimit", _MIN_MEMLIMIT, _MAX_MEMLIMIT),
    ):
        value = kdf[name]
        if not isinstance(value, int) or isinstance(value, bool):
            raise KeyFileError(f"{where}: kdf {name} must be an integer, found {_json_type(value)}")
        if not low <= value <= high:
            raise KeyFileError(f"{where}: kdf {name} {value} is outside [{low}, {high}]; refusing to run the KDF")
        limits.append(value)
    salt = _b64_field(kdf, "salt", argon2id.SALTBYTES, f"{where} kdf")
    return limits[0], limits[1], salt


def _kdf_limits(profile: KdfProfile | None) -> tuple[int, int]:
    name = profile if profile is not None else os.environ.get(_KDF_PROFILE_ENV, "") or "moderate"
    try:
        return _KDF_LIMITS[name]
    except KeyError:
        raise KeyFileError(
            f"unknown KDF profile {name!r} (from {_KDF_PROFILE_ENV} or kdf_profile); "
            f"expected one of {', '.join(sorted(_KDF_LIMITS))}"
        ) from None


def _derive_key(secret: bytes, salt: bytes, opslimit: int, memlimit: int, where: str) -> bytes:
    try:
        return argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, secret, salt, opslimit=opslimit, memlimit=memlimit)
    except (nacl.exceptions.CryptoError, ValueError, TypeError, MemoryError) as exc:
        raise KeyFileError(f"{where}: key derivation failed ({exc})") from None


def _passphrase_bytes(passphrase: str) -> bytes:
    if not isinstance(passphrase, str):
        raise KeyFileError(f"passphrase must be a string, found {type(passphrase).__name__}")
    if not passphrase:
        raise KeyFileError("passphrase must not be empty (pass passphrase=None for a plain development key)")
    # NFC so that the same typed passphrase gives the same bytes on every platform and keyboard.
    try:
        return unicodedata.normalize("NFC", passphrase).encode("utf-8")
    except UnicodeEncodeError:
        raise KeyFileError("passphrase is not valid Unicode text (it contains a lone surrogate)") from None


def _header_digest(header: dict[str, Any], where: str) -> bytes:
    try:
        return hashlib.sha256(_HEADER_DIGEST_PREFIX + canonical_json(header)).digest()
    except EncodingError as exc:
        raise KeyFileError(f"{where}: header cannot be encoded ({exc})") from None


def _check_label(label: str) -> None:
    if not isinstance(label, str):
        raise KeyFileError(f"label must be a string, found {type(label).__name__}")
    if len(label) > _MAX_LABEL_LENGTH:
        raise KeyFileError(f"label is {len(label)} characters long, at most {_MAX_LABEL_LENGTH} allowed")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in label):
        raise KeyFileError("label must not contain control characters or lone surrogates")


def _dump(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for name, value in pairs:
        if name in document:
            raise ValueError(f"duplicate field {name!r}")
        document[name] = value
    return document


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _create_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # independent of the umask
        _write_all(fd, data)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def _replace_file(path: Path, data: bytes) -> None:
    # mkstemp creates the file with mode 0600 and O_EXCL in the target's directory, so the rename is atomic.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.fsync(fd)
