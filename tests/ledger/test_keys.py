"""Tests for `ledger.keys`: signatures, key ids and key files."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nacl.pwhash import argon2id

from ledger.errors import EncodingError, KeyFileError, SignatureError
from ledger.keys import (
    KeyId,
    PrivateKey,
    PublicKey,
    decode_key_file,
    encode_key_file,
    read_key_file,
    read_public_key,
    write_key_file,
)

# RFC 8032 §7.1, test 1: an independent answer for the public key and the signature of "".
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555f"
    "b8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDCER_KDF_PROFILE", "interactive")


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.from_seed(RFC8032_SEED)


def _load(data: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(data)
    return document


def _dump(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def _flip_bit(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# --- signatures ----------------------------------------------------------------------------------


def test_sign_verify_round_trip() -> None:
    key = PrivateKey.generate()
    signature = key.sign(b"transfer 10 units")
    assert len(signature) == 64
    key.public_key.verify(b"transfer 10 units", signature)


def test_known_answer_rfc8032(key: PrivateKey) -> None:
    assert key.seed == RFC8032_SEED
    assert key.public_key.raw == RFC8032_PUBLIC
    assert key.sign(b"") == RFC8032_SIGNATURE
    PublicKey(RFC8032_PUBLIC).verify(b"", RFC8032_SIGNATURE)


def test_verify_rejects_flipped_message_bit(key: PrivateKey) -> None:
    signature = key.sign(b"retire 5 units")
    with pytest.raises(SignatureError, match=f"does not verify for key {key.key_id}"):
        key.public_key.verify(b"retire 4 units", signature)


@pytest.mark.parametrize("index", [0, 31, 32, 63])
def test_verify_rejects_flipped_signature_bit(key: PrivateKey, index: int) -> None:
    signature = _flip_bit(key.sign(b"message"), index)
    with pytest.raises(SignatureError, match="signature does not verify"):
        key.public_key.verify(b"message", signature)


def test_verify_rejects_other_key(key: PrivateKey) -> None:
    other = PrivateKey.generate()
    with pytest.raises(SignatureError, match=f"does not verify for key {other.key_id}"):
        other.public_key.verify(b"message", key.sign(b"message"))


@pytest.mark.parametrize("length", [0, 63, 65])
def test_verify_rejects_wrong_signature_length(key: PrivateKey, length: int) -> None:
    signature = (key.sign(b"message") * 2)[:length]
    with pytest.raises(SignatureError, match=f"does not verify.*expected 64 bytes, found {length}"):
        key.public_key.verify(b"message", signature)


def test_verify_rejects_small_order_public_key(key: PrivateKey) -> None:
    # The identity point: libsodium refuses it; the caller must still only see a SignatureError.
    identity = PublicKey(bytes([1]) + bytes(31))
    with pytest.raises(SignatureError, match="does not verify"):
        identity.verify(b"message", key.sign(b"message"))


# --- key ids and public keys ---------------------------------------------------------------------


def test_key_id_known_answer(key: PrivateKey) -> None:
    expected = hashlib.sha256(b"cdcer/key-id/v1\x00" + RFC8032_PUBLIC).digest()[:8].hex()
    assert expected == "3c6bfe56f3e8e353"  # pinned: a key id must never change
    assert key.key_id == KeyId(expected)
    assert key.public_key.key_id == expected
    assert PublicKey(RFC8032_PUBLIC).key_id == expected


def test_public_key_base64_round_trip(key: PrivateKey) -> None:
    text = key.public_key.b64()
    assert text == base64.b64encode(RFC8032_PUBLIC).decode()
    assert PublicKey.from_b64(text) == key.public_key


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo", "not valid base64"),  # no padding
        ("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "not valid base64"),  # URL alphabet
        ("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcH", "expected 32 bytes, found 30"),
        ("", "expected 32 bytes, found 0"),
        ("é", "not valid base64"),
    ],
)
def test_public_key_from_b64_rejects(text: str, match: str) -> None:
    with pytest.raises(EncodingError, match=match):
        PublicKey.from_b64(text)


@pytest.mark.parametrize("raw", [b"", bytes(31), bytes(33)])
def test_public_key_rejects_wrong_size(raw: bytes) -> None:
    with pytest.raises(EncodingError, match=f"expected 32 bytes, found {len(raw)}"):
        PublicKey(raw)


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(64)])
def test_from_seed_rejects_wrong_size(seed: bytes) -> None:
    with pytest.raises(EncodingError, match=f"seed: expected 32 bytes, found {len(seed)}"):
        PrivateKey.from_seed(seed)


def test_repr_hides_seed(key: PrivateKey) -> None:
    for text in (repr(key), str(key), f"{key}"):
        assert key.key_id in text
        assert RFC8032_SEED.hex() not in text
        assert base64.b64encode(RFC8032_SEED).decode() not in text
        assert repr(RFC8032_SEED) not in text


# --- key files: round trips ----------------------------------------------------------------------


def test_encrypted_key_file_round_trip(key: PrivateKey, tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    write_key_file(path, key, passphrase=PASSPHRASE, label="Alice Ltd. 主管部门")
    assert read_key_file(path, passphrase=PASSPHRASE).seed == key.seed
    document = _load(path.read_bytes())
    assert document["format"] == "cdcer-key/v1"
    assert document["label"] == "Alice Ltd. 主管部门"
    assert document["encryption"] == "argon2id+xsalsa20poly1305"
    assert document["key_id"] == key.key_id
    assert PublicKey.from_b64(document["public_key"]) == key.public_key
    assert "seed" not in document
    assert RFC8032_SEED.hex() not in path.read_text()
    assert base64.b64encode(RFC8032_SEED).decode() not in path.read_text()


def test_plain_key_file_round_trip(key: PrivateKey, tmp_path: Path) -> None:
    path = tmp_path / "dev.key"
    write_key_file(path, key, passphrase=None, label="dev")
    assert read_key_file(path, passphrase=None).seed == key.seed
    document = _load(path.read_bytes())
    assert document["encryption"] == "none"
    assert base64.b64decode(document["seed"]) == RFC8032_SEED


def test_pure_encode_decode_round_trip(key: PrivateKey) -> None:
    data = encode_key_file(key, passphrase=PASSPHRASE)
    assert decode_key_file(data, passphrase=PASSPHRASE).seed == key.seed
    # Same key, fresh salt and nonce every time.
    assert encode_key_file(key, passphrase=PASSPHRASE) != data


def test_passphrase_is_unicode_normalised(key: PrivateKey) -> None:
    data = encode_key_file(key, passphrase="caf\u00e9")
    assert decode_key_file(data, passphrase="cafe\u0301").seed == key.seed


@pytest.mark.parametrize("passphrase", [PASSPHRASE, None])
def test_read_public_key_without_passphrase(key: PrivateKey, passphrase: str | None) -> None:
    assert read_public_key(encode_key_file(key, passphrase=passphrase)) == key.public_key


def test_file_mode_is_0600(key: PrivateKey, tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    write_key_file(path, key, passphrase=PASSPHRASE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_existing_file_is_not_overwritten(key: PrivateKey, tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    write_key_file(path, key, passphrase=None)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists; pass overwrite=True"):
        write_key_file(path, PrivateKey.generate(), passphrase=None)
    assert path.read_bytes() == before


def test_overwrite_replaces_file_with_mode_0600(key: PrivateKey, tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    path.write_text("old")
    path.chmod(0o644)
    write_key_file(path, key, passphrase=PASSPHRASE, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path, passphrase=PASSPHRASE).seed == key.seed
    assert [entry.name for entry in tmp_path.iterdir()] == ["alice.key"]  # no temporary left behind


def test_write_into_missing_directory(key: PrivateKey, tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot write key file .*missing"):
        write_key_file(tmp_path / "missing" / "alice.key", key, passphrase=None)


# --- KDF profiles ----------------------------------------------------------------------------------


def test_kdf_limits_come_from_environment(key: PrivateKey) -> None:
    kdf = _load(encode_key_file(key, passphrase=PASSPHRASE))["kdf"]
    assert (kdf["opslimit"], kdf["memlimit"]) == (
        argon2id.OPSLIMIT_INTERACTIVE,
        argon2id.MEMLIMIT_INTERACTIVE,
    )


def test_default_kdf_profile_is_moderate(key: PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDCER_KDF_PROFILE")
    calls: list[tuple[int, int]] = []

    def fake_kdf(size: int, password: bytes, salt: bytes, *, opslimit: int, memlimit: int) -> bytes:
        calls.append((opslimit, memlimit))
        return bytes(size)

    monkeypatch.setattr(argon2id, "kdf", fake_kdf)  # a real moderate KDF needs 256 MiB
    kdf = _load(encode_key_file(key, passphrase=PASSPHRASE))["kdf"]
    assert calls == [(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)]
    assert (kdf["opslimit"], kdf["memlimit"]) == calls[0]


def test_decoding_uses_limits_recorded_in_file(key: PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode_key_file(key, passphrase=PASSPHRASE, kdf_profile="interactive")
    monkeypatch.setenv("CDCER_KDF_PROFILE", "sensitive")  # must not matter when reading
    assert decode_key_file(data, passphrase=PASSPHRASE).seed == key.seed


def test_unknown_kdf_profile(key: PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDCER_KDF_PROFILE", "fast")
    with pytest.raises(KeyFileError, match="unknown KDF profile 'fast'"):
        encode_key_file(key, passphrase=PASSPHRASE)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("memlimit", 2**40),
        ("memlimit", 2 * argon2id.MEMLIMIT_SENSITIVE),
        ("memlimit", 0),
        ("opslimit", 10**9),
        ("opslimit", 0),
    ],
)
def test_hostile_kdf_limits_refused_before_kdf(
    key: PrivateKey, monkeypatch: pytest.MonkeyPatch, field: str, value: int
) -> None:
    document = _load(encode_key_file(key, passphrase=PASSPHRASE))
    document["kdf"][field] = value

    def forbidden(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("KDF must not run")

    monkeypatch.setattr(argon2id, "kdf", forbidden)
    with pytest.raises(KeyFileError, match=f"kdf {field} {value} is outside .*refusing to run the KDF"):
        decode_key_file(_dump(document), passphrase=PASSPHRASE)


# --- key files: every malformed input --------------------------------------------------------------

Mutation = Callable[[dict[str, Any], bytes], bytes]


def _set(field: str, value: Any) -> Mutation:
    def mutate(document: dict[str, Any], data: bytes) -> bytes:
        document[field] = value
        return _dump(document)

    return mutate


def _drop(field: str) -> Mutation:
    def mutate(document: dict[str, Any], data: bytes) -> bytes:
        del document[field]
        return _dump(document)

    return mutate


def _set_kdf(field: str, value: Any) -> Mutation:
    def mutate(document: dict[str, Any], data: bytes) -> bytes:
        document["kdf"][field] = value
        return _dump(document)

    return mutate


def _unchanged(document: dict[str, Any], data: bytes) -> bytes:
    return data


def _tamper_ciphertext(document: dict[str, Any], data: bytes) -> bytes:
    ciphertext = base64.b64decode(document["ciphertext"])
    document["ciphertext"] = base64.b64encode(_flip_bit(ciphertext, 5)).decode()
    return _dump(document)


_OTHER = PrivateKey.from_seed(bytes(range(32)))


def _swap_public_key_only(document: dict[str, Any], data: bytes) -> bytes:
    document["public_key"] = _OTHER.public_key.b64()
    return _dump(document)


def _swap_public_key_and_id(document: dict[str, Any], data: bytes) -> bytes:
    document["public_key"] = _OTHER.public_key.b64()
    document["key_id"] = _OTHER.key_id
    return _dump(document)


ENCRYPTED_CASES: list[tuple[str, Mutation, str | None, str]] = [
    ("truncated JSON", lambda document, data: data[: len(data) // 2], PASSPHRASE, "not valid JSON"),
    ("empty file", lambda document, data: b"", PASSPHRASE, "not valid JSON"),
    ("non-UTF-8 bytes", lambda document, data: b"\xff" + data, PASSPHRASE, "not UTF-8"),
    ("JSON array", lambda document, data: b"[]", PASSPHRASE, "expected a JSON object, found array"),
    ("duplicate field", lambda document, data: data[:-2] + b', "label": "x"}', PASSPHRASE, "duplicate field"),
    ("NaN", _set_kdf("opslimit", float("nan")), PASSPHRASE, "NaN is not JSON"),
    ("too large", lambda document, data: b" " * 70_000 + data, PASSPHRASE, "larger than 65536 bytes"),
    ("no format", _drop("format"), PASSPHRASE, "missing field 'format'"),
    ("wrong format", _set("format", "cdcer-key/v2"), PASSPHRASE, "unknown format 'cdcer-key/v2'"),
    ("wrong encryption", _set("encryption", "aes"), PASSPHRASE, "unknown encryption 'aes'"),
    ("missing nonce", _drop("nonce"), PASSPHRASE, "missing field 'nonce'"),
    ("missing public key", _drop("public_key"), PASSPHRASE, "missing field 'public_key'"),
    ("extra field", _set("seed", "AAAA"), PASSPHRASE, "unexpected field 'seed'"),
    ("label not a string", _set("label", 7), PASSPHRASE, "field 'label' must be a string, found number"),
    ("kdf not an object", _set("kdf", "argon2id"), PASSPHRASE, "field 'kdf' must be an object"),
    ("memlimit a string", _set_kdf("memlimit", "64M"), PASSPHRASE, "kdf memlimit must be an integer"),
    ("opslimit a boolean", _set_kdf("opslimit", True), PASSPHRASE, "kdf opslimit must be an integer"),
    ("huge memlimit", _set_kdf("memlimit", 2**42), PASSPHRASE, "memlimit 4398046511104 is outside"),
    ("missing salt", _set("kdf", {"opslimit": 2, "memlimit": 2**26}), PASSPHRASE, "missing field 'salt'"),
    ("bad base64", _set("nonce", "not*base64"), PASSPHRASE, "field 'nonce': not valid base64"),
    ("bad salt", _set_kdf("salt", "AAAA"), PASSPHRASE, "field 'salt': expected 16 bytes, found 3"),
    ("short ciphertext", _set("ciphertext", "AAAA"), PASSPHRASE, "field 'ciphertext': expected 80 bytes"),
    ("tampered ciphertext", _tamper_ciphertext, PASSPHRASE, "wrong passphrase or corrupted key file"),
    ("tampered nonce", _set("nonce", base64.b64encode(bytes(24)).decode()), PASSPHRASE, "wrong passphrase"),
    ("tampered salt", _set_kdf("salt", base64.b64encode(bytes(16)).decode()), PASSPHRASE, "wrong passphrase"),
    ("tampered opslimit", _set_kdf("opslimit", 3), PASSPHRASE, "wrong passphrase or corrupted"),
    ("tampered public key", _swap_public_key_only, PASSPHRASE, "public key mismatch: key_id"),
    (
        "swapped public key and id",
        _swap_public_key_and_id,
        PASSPHRASE,
        "public key mismatch: the file states",
    ),
    ("tampered key id", _set("key_id", "0000000000000000"), PASSPHRASE, "public key mismatch"),
    ("tampered label", _set("label", "Mallory"), PASSPHRASE, "header does not match its encrypted contents"),
    (
        "wrong passphrase",
        _unchanged,
        "Tr0ub4dor&3",
        "wrong passphrase or corrupted key file",
    ),
    ("missing passphrase", _unchanged, None, "is encrypted; a passphrase is required"),
    ("empty passphrase", _unchanged, "", "passphrase must not be empty"),
]


@pytest.mark.parametrize(
    ("mutate", "passphrase", "match"),
    [pytest.param(mutate, passphrase, match, id=name) for name, mutate, passphrase, match in ENCRYPTED_CASES],
)
def test_malformed_encrypted_key_file(
    key: PrivateKey, tmp_path: Path, mutate: Mutation, passphrase: str | None, match: str
) -> None:
    data = encode_key_file(key, passphrase=PASSPHRASE, label="alice")
    path = tmp_path / "alice.key"
    path.write_bytes(mutate(_load(data), data))
    with pytest.raises(KeyFileError, match=match):
        decode_key_file(path.read_bytes(), passphrase=passphrase)
    with pytest.raises(KeyFileError, match=match):
        read_key_file(path, passphrase=passphrase)


def test_wrong_passphrase_message_names_path(key: PrivateKey, tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    write_key_file(path, key, passphrase=PASSPHRASE)
    with pytest.raises(KeyFileError) as caught:
        read_key_file(path, passphrase="nope")
    assert str(caught.value) == f"wrong passphrase or corrupted key file {path}"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


PLAIN_CASES: list[tuple[str, Mutation, str | None, str]] = [
    (
        "passphrase given",
        _unchanged,
        PASSPHRASE,
        "not encrypted; read it with passphrase=None",
    ),
    ("missing seed", _drop("seed"), None, "missing field 'seed'"),
    ("bad seed base64", _set("seed", "%%%%"), None, "field 'seed': not valid base64"),
    ("short seed", _set("seed", "AAAA"), None, "field 'seed': expected 32 bytes, found 3"),
    ("swapped public key and id", _swap_public_key_and_id, None, "public key mismatch"),
    ("seed a number", _set("seed", 1), None, "field 'seed' must be a string"),
]


@pytest.mark.parametrize(
    ("mutate", "passphrase", "match"),
    [pytest.param(mutate, passphrase, match, id=name) for name, mutate, passphrase, match in PLAIN_CASES],
)
def test_malformed_plain_key_file(key: PrivateKey, mutate: Mutation, passphrase: str | None, match: str) -> None:
    data = encode_key_file(key, passphrase=None)
    with pytest.raises(KeyFileError, match=match):
        decode_key_file(mutate(_load(data), data), passphrase=passphrase)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"{", "not valid JSON"),
        (b"\x80", "not UTF-8"),
        (b'{"format": "cdcer-key/v1"}', "missing field"),
        (b'{"format": "pgp"}', "unknown format 'pgp'"),
    ],
)
def test_read_public_key_rejects(data: bytes, match: str) -> None:
    with pytest.raises(KeyFileError, match=match):
        read_public_key(data)


def test_read_public_key_detects_key_id_mismatch(key: PrivateKey) -> None:
    document = _load(encode_key_file(key, passphrase=PASSPHRASE))
    document["key_id"] = _OTHER.key_id
    with pytest.raises(KeyFileError, match="public key mismatch"):
        read_public_key(_dump(document))


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nobody.key"
    with pytest.raises(KeyFileError, match=f"key file {path} not found"):
        read_key_file(path, passphrase=None)


def test_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read key file"):
        read_key_file(tmp_path, passphrase=None)  # a directory


@pytest.mark.parametrize(
    ("label", "match"),
    [("x" * 257, "at most 256"), ("a\nb", "control characters"), ("\ud800", "lone surrogates")],
)
def test_bad_label_refused_on_write(key: PrivateKey, label: str, match: str) -> None:
    with pytest.raises(KeyFileError, match=match):
        encode_key_file(key, passphrase=None, label=label)


def test_empty_passphrase_refused_on_write(key: PrivateKey) -> None:
    with pytest.raises(KeyFileError, match="passphrase must not be empty"):
        encode_key_file(key, passphrase="")
