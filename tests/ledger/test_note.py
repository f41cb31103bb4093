"""C2SP signed notes: known answers from Go's x/mod/sumdb/note, round trips and every malformation."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import nacl.signing
import pytest

from ledger.errors import NoteError
from ledger.note import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    KeyId,
    Note,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    add_signatures,
    compute_key_id,
    open_note,
    parse_note,
    parse_signature_line,
    parse_verifier_key,
    sign_note,
)

EM = "\u2014"

# Published example from golang.org/x/mod/sumdb/note (package documentation and note_test.go).
PETER_SKEY_B64 = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"  # 0x01 || 32-byte Ed25519 seed
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG_LINE = (
    f"{EM} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
PETER_NOTE = (PETER_TEXT + "\n" + PETER_SIG_LINE).encode()
ENOCH_SIG_LINE = (
    f"{EM} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
DOUBLE_NOTE = (PETER_TEXT + "\n" + PETER_SIG_LINE + ENOCH_SIG_LINE).encode()
# A published witness key of type 0x04 (transparency-dev/formats note tests); not a note key.
REMORA_COSIG_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"


def peter() -> NoteSigner:
    return NoteSigner("PeterNeumann", base64.b64decode(PETER_SKEY_B64)[1:])


def signer(name: str, seed_byte: int) -> NoteSigner:
    return NoteSigner(name, bytes([seed_byte]) * 32)


# --- known answers -------------------------------------------------------------------------------


def test_signer_reproduces_go_verifier_key() -> None:
    assert peter().verifier_key() == PETER_VKEY
    assert peter().key_id == bytes.fromhex("c74f20a3")


def test_sign_note_reproduces_go_example_byte_for_byte() -> None:
    assert sign_note(PETER_TEXT, peter()) == PETER_NOTE


def test_open_go_example() -> None:
    note = open_note(PETER_NOTE, [NoteVerifier.from_vkey(PETER_VKEY)])
    assert note.text == PETER_TEXT
    assert [(sig.name, sig.key_id.hex()) for sig in note.verified] == [("PeterNeumann", "c74f20a3")]


def test_open_go_double_signed_example_ignores_unknown_enoch_root() -> None:
    note = open_note(DOUBLE_NOTE, [NoteVerifier.from_vkey(PETER_VKEY)])
    assert [sig.name for sig in note.signatures] == ["PeterNeumann", "EnochRoot"]
    assert [sig.name for sig in note.verified] == ["PeterNeumann"]
    assert note.to_bytes() == DOUBLE_NOTE


def test_key_id_definition() -> None:
    public = bytes(peter().public_key)
    expected = hashlib.sha256(b"PeterNeumann\n\x01" + public).digest()[:4]
    assert compute_key_id("PeterNeumann", 0x01, public) == expected == peter().key_id


# --- verifier keys -------------------------------------------------------------------------------


def test_verifier_round_trip() -> None:
    s = signer("registry.example/log", 7)
    verifier = NoteVerifier.from_vkey(s.verifier_key())
    assert verifier == s.verifier()
    assert verifier.verifier_key() == s.verifier_key()
    assert (verifier.name, verifier.key_id) == (s.name, s.key_id)
    signature = s.sign("hello\n")
    assert len(signature) == 64
    assert verifier.verify(b"hello\n", signature)
    assert not verifier.verify(b"hello!\n", signature)
    assert not verifier.verify(b"hello\n", signature[:-1])
    assert not verifier.verify(b"hello\n", bytes(64))


def test_verifier_key_accepts_upper_case_key_id_like_go() -> None:
    assert NoteVerifier.from_vkey(PETER_VKEY.replace("c74f20a3", "C74F20A3")).key_id.hex() == "c74f20a3"


def test_signer_accepts_nacl_signing_key() -> None:
    key = nacl.signing.SigningKey(bytes(32))
    assert NoteSigner("a", key).verifier_key() == NoteSigner("a", bytes(32)).verifier_key()


@pytest.mark.parametrize(
    ("vkey", "match"),
    [
        ("", "must have the form"),
        ("PeterNeumann", "must have the form"),
        ("PeterNeumann+c74f20a3", "must have the form"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "non-empty"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "space character"),
        (
            "Peter\u00a0Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            r"space character \(U\+00A0\)",
        ),
        ("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hex digits"),
        ("PeterNeumann+c74f20a3a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hex digits"),
        ("PeterNeumann+0xf20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hex digits"),
        ("PeterNeumann+c74f20a3+", "key data is empty"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T", "not valid base64"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq_LDE4izWy10TW", "not valid base64"),
        ("PeterNeumann+c74f20a3+AQ==", "key data is 1 bytes"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match the key"),
        ("Peterneumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match the key"),
        # From Go's note_test.go: wrong key length and unknown algorithm, each with an adjusted key id.
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "public key must be 32 bytes, found 36",
        ),
        (
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "key type 0x65 is not Ed25519",
        ),
        (REMORA_COSIG_VKEY, "0x04 is a witness cosignature key"),
    ],
)
def test_malformed_verifier_key(vkey: str, match: str) -> None:
    with pytest.raises(NoteError, match=match):
        NoteVerifier.from_vkey(vkey)


def test_every_mangling_of_a_verifier_key_is_refused() -> None:
    # As in Go's TestNewVerifier: every proper substring and every single-character bump fails,
    # always with NoteError, never with a raw exception.
    for i in range(len(PETER_VKEY) + 1):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(NoteError):
                    NoteVerifier.from_vkey(PETER_VKEY[i:j])
    for i in range(len(PETER_VKEY)):
        bumped = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
        with pytest.raises(NoteError):
            NoteVerifier.from_vkey(bumped)


def test_parse_verifier_key_reads_any_type() -> None:
    parsed = parse_verifier_key(REMORA_COSIG_VKEY)
    assert (parsed.name, parsed.key_id.hex(), parsed.sig_type) == ("remora.n621.de", "da77ade7", 0x04)


@pytest.mark.parametrize(
    ("name", "key", "match"),
    [
        ("", bytes(32), "non-empty"),
        ("a b", bytes(32), "space character"),
        ("a+b", bytes(32), "contains '\\+'"),
        ("a\x00b", bytes(32), "control character U\\+0000"),
        ("a\ud800", bytes(32), "not encodable as UTF-8"),
        ("a", bytes(31), "32-byte seed, found 31 bytes"),
        ("a", "seed", "32-byte seed, found str"),
    ],
)
def test_malformed_signer(name: str, key: bytes, match: str) -> None:
    with pytest.raises(NoteError, match=match):
        NoteSigner(name, key)


def test_verifier_construction_checks_key_id() -> None:
    with pytest.raises(NoteError, match="key id 00000000 should be c74f20a3"):
        NoteVerifier(name="PeterNeumann", key_id=KeyId(bytes(4)), public_key=peter().public_key)
    with pytest.raises(NoteError, match="must be 32 bytes, found 3"):
        NoteVerifier(name="PeterNeumann", key_id=KeyId(bytes(4)), public_key=b"abc")


# --- signing and parsing -------------------------------------------------------------------------


def test_sign_parse_round_trip_with_blank_lines_in_text() -> None:
    text = "line one\n\nline three after a blank line\n\n"
    a, b = signer("a.example", 1), signer("b.example", 2)
    data = sign_note(text, a, b)
    note = parse_note(data)
    assert note.text == text
    assert [sig.name for sig in note.signatures] == ["a.example", "b.example"]
    assert note.signatures[0].signature == a.sign(text)
    assert note.to_bytes() == data
    assert note.verified == ()
    assert data.startswith(text.encode() + b"\n" + f"{EM} a.example ".encode())


def test_unicode_text_and_names() -> None:
    s = signer("\u6210\u90fd.example/log", 3)
    text = "\u78b3\u4fe1\u7528 \u2014 CDCER\n"
    data = sign_note(text, s)
    assert open_note(data, [NoteVerifier.from_vkey(s.verifier_key())]).text == text


def test_single_newline_text() -> None:
    s = signer("a", 1)
    assert open_note(sign_note("\n", s), [s.verifier()]).text == "\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "must end with a newline"),
        ("no newline", "must end with a newline"),
        ("tab\there\n", "control character U\\+0009 at character 3"),
        ("cr\r\n", "control character U\\+000D"),
        ("lone \ud800 surrogate\n", "not encodable as UTF-8"),
    ],
)
def test_sign_note_refuses_bad_text(text: str, match: str) -> None:
    with pytest.raises(NoteError, match=match):
        sign_note(text, signer("a", 1))


def test_sign_note_needs_a_signer() -> None:
    with pytest.raises(NoteError, match="at least one signer"):
        sign_note("text\n")


def test_signature_line_round_trip() -> None:
    sig = parse_signature_line(PETER_SIG_LINE)
    assert sig.key_label() == "PeterNeumann+c74f20a3"
    assert sig.line() == PETER_SIG_LINE
    assert parse_signature_line(PETER_SIG_LINE.rstrip("\n")) == sig


def _line(name: str, raw: bytes) -> str:
    return f"{EM} {name} {base64.b64encode(raw).decode()}\n"


GOOD_LINE = _line("a", bytes(68))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"text\n" + GOOD_LINE.encode(), "no blank line"),
        (b"text\n\n", "no signature lines"),
        (b"text\n\n" + GOOD_LINE.encode().rstrip(b"\n"), "does not end with a newline"),
        (b"caf\xe9\n\n" + GOOD_LINE.encode(), "not valid UTF-8 .* at byte 3"),
        (b"\xed\xa0\x80\n\n" + GOOD_LINE.encode(), "not valid UTF-8"),  # encoded surrogate
        (b"tab\t\n\n" + GOOD_LINE.encode(), "control character U\\+0009"),
        (b"text\r\n\n" + GOOD_LINE.encode(), "control character U\\+000D"),
        (
            b"text\n\n" + GOOD_LINE.replace(EM, "--").encode(),
            "signature line 1 does not start with an em dash",
        ),
        (b"text\n\n" + GOOD_LINE.replace(EM, "\u2013").encode(), "does not start with an em dash"),
        (b"text\n\n" + GOOD_LINE.replace(f"{EM} ", EM).encode(), "does not start with an em dash"),
        (b"text\n\n" + GOOD_LINE.encode() + f"{EM} a\n".encode(), "signature line 2 has no space"),
        (b"text\n\n" + _line("", bytes(68)).encode(), "key name must be a non-empty"),
        (b"text\n\n" + _line("a+b", bytes(68)).encode(), "contains '\\+'"),
        (b"text\n\n" + _line("a\u3000b", bytes(68)).encode(), "space character \\(U\\+3000\\)"),
        (b"text\n\n" + f"{EM} a \n".encode(), "signature is empty"),
        (b"text\n\n" + f"{EM} a  {base64.b64encode(bytes(68)).decode()}\n".encode(), "not valid base64"),
        (b"text\n\n" + f"{EM} a AAAA\n".encode(), "signature is 3 bytes"),
        (b"text\n\n" + _line("a", bytes(4)).encode(), "signature is 4 bytes, expected a 4-byte key id"),
        (b"text\n\n" + f"{EM} a AAAAAAA\n".encode(), "not valid base64"),
        (b"text\n\n" + f"{EM} a AAAA AAA=\n".encode(), "not valid base64"),
        (
            b"text\n\n" + GOOD_LINE.encode() * (MAX_SIGNATURES + 1),
            "101 signature lines, more than the limit of 100",
        ),
        (b"x" * MAX_NOTE_SIZE + b"\n\n" + GOOD_LINE.encode(), "more than the limit of 1048576"),
    ],
)
def test_malformed_note(data: bytes, match: str) -> None:
    with pytest.raises(NoteError, match=match):
        parse_note(data)


def test_parse_note_refuses_non_bytes() -> None:
    with pytest.raises(NoteError, match="note must be bytes, found str"):
        parse_note("text\n\n" + GOOD_LINE)  # type: ignore[arg-type]  # the wrong type is the point


def test_exactly_max_signatures_is_accepted() -> None:
    note = parse_note(b"text\n\n" + GOOD_LINE.encode() * MAX_SIGNATURES)
    assert len(note.signatures) == MAX_SIGNATURES


def test_note_signature_validates_fields() -> None:
    with pytest.raises(NoteError, match="key id must be 4 bytes, found 3"):
        NoteSignature(name="a", key_id=KeyId(b"abc"), signature=b"s")
    with pytest.raises(NoteError, match="signature is empty"):
        NoteSignature(name="a", key_id=KeyId(b"abcd"), signature=b"")


def test_note_to_bytes_needs_signatures() -> None:
    with pytest.raises(NoteError, match="needs at least one signature"):
        Note(text="t\n", signatures=()).to_bytes()


# --- opening -------------------------------------------------------------------------------------


def test_unknown_signers_are_ignored() -> None:
    known, stranger = signer("registry", 1), signer("stranger", 2)
    same_name_other_key = signer("registry", 3)
    data = sign_note("text\n", stranger, same_name_other_key, known)
    note = open_note(data, [known.verifier()])
    assert [sig.name for sig in note.signatures] == ["stranger", "registry", "registry"]
    assert [sig.key_id for sig in note.verified] == [known.key_id]


def test_known_key_with_bad_signature_rejects_the_whole_note() -> None:
    good, other = signer("good", 1), signer("other", 2)
    data = sign_note("text\n", good, other)
    forged = NoteSignature(name=other.name, key_id=other.key_id, signature=other.sign("different\n"))
    tampered = add_signatures(data, forged)
    open_note(tampered, [good.verifier()])  # other's key unknown: its bad signature is ignored
    with pytest.raises(NoteError, match="invalid signature from known key other\\+" + other.key_id.hex()):
        open_note(tampered, [good.verifier(), other.verifier()])


def test_tampered_text_is_rejected() -> None:
    s = signer("registry", 1)
    data = sign_note("size 5\n", s).replace(b"size 5", b"size 6")
    with pytest.raises(NoteError, match="invalid signature from known key registry"):
        open_note(data, [s.verifier()])


def test_no_signature_from_a_known_key() -> None:
    data = sign_note("text\n", signer("a", 1))
    with pytest.raises(NoteError, match="no signature from a known key: note is signed by a\\+.*known keys: b\\+"):
        open_note(data, [signer("b", 2).verifier()])
    with pytest.raises(NoteError, match="no signature from a known key.*known keys: none given"):
        open_note(data, [])


def test_ambiguous_verifiers() -> None:
    s = signer("a", 1)
    with pytest.raises(NoteError, match="ambiguous verifiers"):
        open_note(sign_note("t\n", s), [s.verifier(), s.verifier()])


def test_duplicate_signature_lines_are_listed_once_as_verified() -> None:
    s = signer("a", 1)
    data = sign_note("t\n", s, s)
    note = open_note(data, [s.verifier()])
    assert len(note.signatures) == 2
    assert len(note.verified) == 1


def test_add_signatures_replaces_the_same_key() -> None:
    a, b = signer("a", 1), signer("b", 2)
    data = sign_note("t\n", a, b)
    fresh = NoteSignature(name=a.name, key_id=a.key_id, signature=a.sign("t\n"))
    note = parse_note(add_signatures(data, fresh))
    assert [sig.name for sig in note.signatures] == ["b", "a"]


@dataclass(frozen=True)
class AcceptAll:
    """A test verifier that fits the Verifier protocol without being a NoteVerifier."""

    name: str
    key_id: KeyId

    def verify(self, msg: bytes, sig: bytes) -> bool:
        return True


def test_any_verifier_fits_the_protocol() -> None:
    s = signer("custom", 1)
    note = open_note(sign_note("t\n", s), [AcceptAll(name="custom", key_id=s.key_id)])
    assert note.verified[0].name == "custom"
