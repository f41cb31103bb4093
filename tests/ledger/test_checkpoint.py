"""C2SP tlog checkpoints and cosignature/v1 witness cosignatures."""

from __future__ import annotations

import base64
import hashlib

import pytest

from ledger.checkpoint import (
    MAX_TIMESTAMP,
    MAX_TREE_SIZE,
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    SignedCheckpoint,
    add_cosignature,
    check_witnesses,
    cosignature_message,
    cosignature_timestamp,
    open_checkpoint,
    parse_checkpoint_body,
    sign_checkpoint,
    verify_cosignatures,
)
from ledger.errors import NoteError
from ledger.note import (
    KeyId,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    add_signatures,
    open_note,
    parse_note,
    sign_note,
)

EM = "\u2014"
ORIGIN = "registry.cdcer.example/log"

# The published example of https://c2sp.org/tlog-checkpoint and https://c2sp.org/tlog-cosignature.
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_COSIGNED = (
    SPEC_BODY
    + "\n"
    + f"{EM} example.com/behind-the-sofa "
    + "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    + f"{EM} witness.example.com/w1 "
    + "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZ"
    + "qhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
).encode()
# A published Ed25519 cosignature/v1 witness key (transparency-dev/formats note tests).
REMORA_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"


def root(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(8, "big")).digest()


def registry() -> NoteSigner:
    return NoteSigner(ORIGIN, bytes([1]) * 32)


def witness(name: str = "witness.example/w1", seed: int = 9) -> CosignatureSigner:
    return CosignatureSigner(name, bytes([seed]) * 32)


# --- checkpoint bodies ---------------------------------------------------------------------------


def test_spec_example_body_round_trips() -> None:
    cp = parse_checkpoint_body(SPEC_BODY)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.extensions == ()
    assert cp.body() == SPEC_BODY


def test_body_with_extensions_and_empty_tree() -> None:
    cp = Checkpoint(origin=ORIGIN, size=0, root_hash=hashlib.sha256(b"").digest(), extensions=("a b", "\u78b3"))
    body = cp.body()
    assert body == f"{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\na b\n\u78b3\n"
    assert parse_checkpoint_body(body) == cp


GOOD_ROOT = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "must end with a newline"),
        (f"o\n1\n{GOOD_ROOT}", "must end with a newline"),
        ("o\n1\n", "has 2 line\\(s\\), expected at least 3"),
        (f"\n1\n{GOOD_ROOT}\n", "origin \\(line 1\\) is empty"),
        (f"o\n007\n{GOOD_ROOT}\n", "'007' has leading zeros"),
        (f"o\n00\n{GOOD_ROOT}\n", "leading zeros"),
        (f"o\n\n{GOOD_ROOT}\n", "'' is not a decimal number"),
        (f"o\n-1\n{GOOD_ROOT}\n", "'-1' is not a decimal number"),
        (f"o\n+1\n{GOOD_ROOT}\n", "not a decimal number"),
        (f"o\n1.0\n{GOOD_ROOT}\n", "not a decimal number"),
        (f"o\n 1\n{GOOD_ROOT}\n", "not a decimal number"),
        (f"o\n1_000\n{GOOD_ROOT}\n", "not a decimal number"),
        (f"o\n\u0665\n{GOOD_ROOT}\n", "not a decimal number"),  # ARABIC-INDIC DIGIT FIVE
        (f"o\n0x10\n{GOOD_ROOT}\n", "not a decimal number"),
        (f"o\n{2**63}\n{GOOD_ROOT}\n", "larger than 9223372036854775807"),
        ("o\n1\n\n", "root hash \\(line 3\\): expected 32 bytes, found 0"),
        (f"o\n1\n{base64.b64encode(bytes(31)).decode()}\n", "expected 32 bytes, found 31"),
        (f"o\n1\n{GOOD_ROOT.rstrip('=')}\n", "root hash \\(line 3\\): not valid base64"),
        (f"o\n1\n{GOOD_ROOT.replace('A', '-')}\n", "not valid base64"),
        (f"o\n1\n{GOOD_ROOT}\n\n", "extension line \\(line 4\\) is empty"),
        (f"o\n1\n{GOOD_ROOT}\next\n\n", "extension line \\(line 5\\) is empty"),
        (f"o\tx\n1\n{GOOD_ROOT}\n", "origin contains control character U\\+0009"),
        (f"o\n1\n{GOOD_ROOT}\nx\ry\n", "extension line 1 contains control character U\\+000D"),
    ],
)
def test_malformed_checkpoint_body(text: str, match: str) -> None:
    with pytest.raises(NoteError, match=match):
        parse_checkpoint_body(text)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"origin": ""}, "origin must be a non-empty string"),
        ({"origin": "a\nb"}, "origin contains control character U\\+000A"),
        ({"size": -1}, "between 0 and"),
        ({"size": MAX_TREE_SIZE + 1}, "between 0 and"),
        ({"size": True}, "size must be an int, found bool"),
        ({"root_hash": bytes(31)}, "root hash must be 32 bytes, found 31"),
        ({"root_hash": "00" * 32}, "root hash must be 32 bytes, found str"),
        ({"extensions": ("",)}, "extension line 1 must be a non-empty string"),
        ({"extensions": ("ok", "a\nb")}, "extension line 2 contains control character U\\+000A"),
    ],
)
def test_checkpoint_validates_fields(kwargs: dict[str, object], match: str) -> None:
    fields: dict[str, object] = {"origin": ORIGIN, "size": 3, "root_hash": root(3), **kwargs}
    with pytest.raises(NoteError, match=match):
        Checkpoint(**fields)  # type: ignore[arg-type]  # fields are deliberately of the wrong type


# --- signed checkpoints --------------------------------------------------------------------------


def test_sign_and_open_checkpoint() -> None:
    cp = Checkpoint(origin=ORIGIN, size=42, root_hash=root(42))
    data = sign_checkpoint(cp, registry())
    assert data.startswith(cp.body().encode() + b"\n" + f"{EM} {ORIGIN} ".encode())
    verifier = NoteVerifier.from_vkey(registry().verifier_key())
    signed = open_checkpoint(data, verifier, origin=ORIGIN)
    assert signed.checkpoint == cp
    assert signed.to_bytes() == data
    assert open_checkpoint(data, verifier).checkpoint == cp


def test_open_checkpoint_refuses_another_origin() -> None:
    data = sign_checkpoint(Checkpoint(origin=ORIGIN, size=1, root_hash=root(1)), registry())
    with pytest.raises(NoteError, match="checkpoint origin is 'registry.cdcer.example/log', expected 'other/log'"):
        open_checkpoint(data, registry().verifier(), origin="other/log")


def test_open_checkpoint_refuses_another_key() -> None:
    data = sign_checkpoint(Checkpoint(origin=ORIGIN, size=1, root_hash=root(1)), registry())
    impostor = NoteSigner(ORIGIN, bytes([2]) * 32)
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_checkpoint(data, impostor.verifier())


def test_open_checkpoint_refuses_a_tampered_size() -> None:
    data = sign_checkpoint(Checkpoint(origin=ORIGIN, size=10, root_hash=root(10)), registry())
    with pytest.raises(NoteError, match="invalid signature from known key"):
        open_checkpoint(data.replace(b"\n10\n", b"\n11\n", 1), registry().verifier())


def test_open_checkpoint_refuses_a_signed_note_that_is_no_checkpoint() -> None:
    data = sign_note("hello\nworld\n", registry())
    with pytest.raises(NoteError, match="at least 3"):
        open_checkpoint(data, registry().verifier())


def test_open_checkpoint_refuses_garbage() -> None:
    with pytest.raises(NoteError, match="control character U\\+0000"):
        open_checkpoint(b"\x00\x01", registry().verifier())
    with pytest.raises(NoteError, match="no blank line"):
        open_checkpoint(b"o\n1\n", registry().verifier())


# --- cosignatures --------------------------------------------------------------------------------


def test_spec_cosignature_message() -> None:
    assert cosignature_message(SPEC_BODY, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\n"
        b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )


def test_spec_cosigned_example_parses_and_carries_its_timestamp() -> None:
    note = parse_note(SPEC_COSIGNED)
    assert parse_checkpoint_body(note.text).size == 20852163
    log_sig, witness_sig = note.signatures
    assert log_sig.key_label() == "example.com/behind-the-sofa+033de0ae"
    assert witness_sig.key_label() == "witness.example.com/w1+8d66cf3f"
    # The spec's cosigned message shows "time 1679315147" for this very signature.
    assert cosignature_timestamp(witness_sig) == 1679315147
    with pytest.raises(NoteError, match="signature is 64 bytes, expected 72"):
        cosignature_timestamp(log_sig)


def test_published_cosignature_timestamp() -> None:
    # transparency-dev/formats TestCosignatureTimestamp: this signature carries 1727964367.
    raw = base64.b64decode(
        "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA=="
    )
    sig = NoteSignature(name="w", key_id=KeyId(raw[:4]), signature=raw[4:])
    assert cosignature_timestamp(sig) == 1727964367


def test_published_witness_verifier_key() -> None:
    verifier = CosignatureVerifier.from_vkey(REMORA_VKEY)
    assert (verifier.name, verifier.key_id.hex()) == ("remora.n621.de", "da77ade7")
    assert verifier.verifier_key() == REMORA_VKEY


def test_cosigner_keys() -> None:
    w = witness()
    name, key_id, key = w.verifier_key().split("+", 2)
    raw = base64.b64decode(key)
    assert name == w.name
    assert raw == b"\x04" + w.public_key
    assert bytes.fromhex(key_id) == hashlib.sha256(w.name.encode() + b"\n\x04" + w.public_key).digest()[:4]
    assert CosignatureVerifier.from_vkey(w.verifier_key()) == w.verifier()
    # The same Ed25519 key as a plain note key has another key id: the type byte separates them.
    assert NoteSigner(w.name, bytes([9]) * 32).key_id != w.key_id


def test_cosign_and_verify() -> None:
    cp = Checkpoint(origin=ORIGIN, size=7, root_hash=root(7))
    data = sign_checkpoint(cp, registry())
    w1, w2, absent = witness("w1.example", 1), witness("w2.example", 2), witness("w3.example", 3)
    sig1 = w1.cosign(cp.body(), 1_700_000_000)
    assert len(sig1.signature) == 72
    assert sig1.signature[:8] == (1_700_000_000).to_bytes(8, "big")
    assert cosignature_timestamp(sig1) == 1_700_000_000
    data = add_cosignature(data, sig1, w1.verifier())
    data = add_cosignature(data, w2.cosign(cp.body(), 1_700_000_005), w2.verifier())

    signed = open_checkpoint(data, registry().verifier(), origin=ORIGIN)  # witnesses are unknown keys here
    assert [sig.name for sig in signed.note.signatures] == [ORIGIN, "w1.example", "w2.example"]
    found = verify_cosignatures(signed, [absent.verifier(), w2.verifier(), w1.verifier()])
    assert [(c.name, c.timestamp) for c in found] == [
        ("w1.example", 1_700_000_000),
        ("w2.example", 1_700_000_005),
    ]
    assert found[0].key_id == w1.key_id
    # A cosignature verifier fits the note machinery too.
    assert [s.name for s in open_note(data, [w2.verifier()]).verified] == ["w2.example"]


def test_cosignature_covers_extension_lines() -> None:
    cp = Checkpoint(origin=ORIGIN, size=7, root_hash=root(7), extensions=("ext",))
    data = sign_checkpoint(cp, registry())
    w = witness()
    data = add_cosignature(data, w.cosign(cp.body(), 5), w.verifier())
    with pytest.raises(NoteError, match="invalid"):
        open_note(data.replace(b"\next\n", b"\nexu\n"), [w.verifier()])


def test_newer_cosignature_replaces_older_one() -> None:
    cp = Checkpoint(origin=ORIGIN, size=7, root_hash=root(7))
    w = witness()
    data = sign_checkpoint(cp, registry())
    data = add_cosignature(data, w.cosign(cp.body(), 100), w.verifier())
    data = add_cosignature(data, w.cosign(cp.body(), 200), w.verifier())
    signed = open_checkpoint(data, registry().verifier())
    assert len(signed.note.signatures) == 2
    assert [c.timestamp for c in verify_cosignatures(signed, [w.verifier()])] == [200]


def test_cosignature_with_tampered_timestamp_does_not_verify() -> None:
    cp = Checkpoint(origin=ORIGIN, size=7, root_hash=root(7))
    w = witness()
    good = w.cosign(cp.body(), 1000)
    tampered = NoteSignature(name=w.name, key_id=w.key_id, signature=(1001).to_bytes(8, "big") + good.signature[8:])
    data = sign_checkpoint(cp, registry())
    with pytest.raises(NoteError, match="does not verify for this checkpoint"):
        add_cosignature(data, tampered, w.verifier())
    # Served anyway (e.g. by a dishonest registry): a client that knows the witness rejects it.
    served = open_checkpoint(add_signatures(data, tampered), registry().verifier())
    with pytest.raises(NoteError, match=f"invalid cosignature from known witness {w.name}\\+{w.key_id.hex()}"):
        verify_cosignatures(served, [w.verifier()])


def test_cosignature_of_another_checkpoint_does_not_verify() -> None:
    cp7 = Checkpoint(origin=ORIGIN, size=7, root_hash=root(7))
    cp8 = Checkpoint(origin=ORIGIN, size=8, root_hash=root(8))
    w = witness()
    with pytest.raises(NoteError, match="does not verify"):
        add_cosignature(sign_checkpoint(cp8, registry()), w.cosign(cp7.body(), 1), w.verifier())


def test_cosignature_from_another_witness_is_refused() -> None:
    cp = Checkpoint(origin=ORIGIN, size=7, root_hash=root(7))
    w1, w2 = witness("w1.example", 1), witness("w2.example", 2)
    with pytest.raises(NoteError, match="cosignature is by w1.example\\+.*expected witness w2.example\\+"):
        add_cosignature(sign_checkpoint(cp, registry()), w1.cosign(cp.body(), 1), w2.verifier())


def test_plain_note_signature_is_no_cosignature() -> None:
    cp = Checkpoint(origin=ORIGIN, size=7, root_hash=root(7))
    w = witness()
    plain = NoteSignature(name=w.name, key_id=w.key_id, signature=bytes(64))
    with pytest.raises(NoteError, match="signature is 64 bytes, expected 72"):
        add_cosignature(sign_checkpoint(cp, registry()), plain, w.verifier())
    assert not w.verifier().verify(cp.body().encode(), bytes(64))


def test_cosignature_is_not_a_registry_signature() -> None:
    # A witness key with the registry's name cannot pass for the registry.
    cp = Checkpoint(origin=ORIGIN, size=7, root_hash=root(7))
    w = CosignatureSigner(ORIGIN, bytes([1]) * 32)  # same seed and name as the registry key
    data = sign_checkpoint(cp, NoteSigner("someone.else", bytes([5]) * 32))
    data = add_cosignature(data, w.cosign(cp.body(), 1), w.verifier())
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_checkpoint(data, registry().verifier())


def test_witness_timestamps_out_of_range() -> None:
    body = Checkpoint(origin=ORIGIN, size=7, root_hash=root(7)).body()
    w = witness()
    assert cosignature_timestamp(w.cosign(body, MAX_TIMESTAMP)) == MAX_TIMESTAMP
    with pytest.raises(NoteError, match="between 0 and 2\\^63 - 1, found -1"):
        w.cosign(body, -1)
    with pytest.raises(NoteError, match="found 9223372036854775808"):
        w.cosign(body, MAX_TIMESTAMP + 1)
    with pytest.raises(NoteError, match="timestamp must be an int, found bool"):
        w.cosign(body, True)
    too_late = NoteSignature(name=w.name, key_id=w.key_id, signature=b"\xff" * 72)
    with pytest.raises(NoteError, match="exceeds 2\\^63 - 1"):
        cosignature_timestamp(too_late)
    assert not w.verifier().verify(body.encode(), too_late.signature)


def test_cosigner_only_signs_checkpoints() -> None:
    with pytest.raises(NoteError, match="at least 3"):
        witness().cosign("hello\n", 1)


@pytest.mark.parametrize(
    ("vkey", "match"),
    [
        ("w+00000000", "must have the form"),
        (registry().verifier_key(), "0x01 is a plain note key"),
        (
            "w+"
            + hashlib.sha256(b"w\n\x04" + bytes(31)).digest()[:4].hex()
            + "+"
            + base64.b64encode(b"\x04" + bytes(31)).decode(),
            "public key must be 32 bytes, found 31",
        ),
        (REMORA_VKEY.replace("da77ade7", "da77ade8"), "does not match the key"),
        (REMORA_VKEY[:-1], "not valid base64"),
    ],
)
def test_malformed_witness_key(vkey: str, match: str) -> None:
    with pytest.raises(NoteError, match=match):
        CosignatureVerifier.from_vkey(vkey)


def test_malformed_cosigner() -> None:
    with pytest.raises(NoteError, match="witness name"):
        CosignatureSigner("bad name", bytes(32))
    with pytest.raises(NoteError, match="witness key must be a nacl SigningKey or a 32-byte seed"):
        CosignatureSigner("w", bytes(16))
    with pytest.raises(NoteError, match="key id 00000000 should be"):
        CosignatureVerifier(name="w", key_id=KeyId(bytes(4)), public_key=bytes(32))


# --- a witness policy: at least N of these witnesses cosigned this checkpoint ------------------------


def cosigned_by(cp: Checkpoint, *signatures: NoteSignature) -> SignedCheckpoint:
    """`cp` signed by the registry with these signature lines added as served (none of them checked)."""
    return open_checkpoint(add_signatures(sign_checkpoint(cp, registry()), *signatures), registry().verifier())


def label(signer: CosignatureSigner) -> str:
    return f"{signer.name}+{signer.key_id.hex()}"


def test_check_witnesses_counts_the_witnesses_that_cosigned_this_checkpoint() -> None:
    cp = Checkpoint(origin=ORIGIN, size=7, root_hash=root(7))
    w1, w2, w3 = witness("w1.example", 1), witness("w2.example", 2), witness("w3.example", 3)
    signed = cosigned_by(cp, w2.cosign(cp.body(), 20), w1.cosign(cp.body(), 10))
    check = check_witnesses(signed, [w1.verifier(), w2.verifier(), w3.verifier()], required=2)
    assert check.satisfied
    assert check.shortfall() is None
    assert [(c.name, c.timestamp) for c in check.cosigned] == [("w1.example", 10), ("w2.example", 20)]
    assert (check.missing, check.invalid) == ((label(w3),), ())

    all_three = check_witnesses(signed, [w1.verifier(), w2.verifier(), w3.verifier()], required=3)
    assert not all_three.satisfied
    assert all_three.shortfall() == f"2 valid witness cosignature(s), 3 required; none from {label(w3)}"
    # None required: a report, never a refusal.
    assert check_witnesses(cosigned_by(cp), [w1.verifier()], required=0).satisfied


def test_check_witnesses_does_not_count_a_cosignature_of_another_checkpoint() -> None:
    cp7 = Checkpoint(origin=ORIGIN, size=7, root_hash=root(7))
    cp8 = Checkpoint(origin=ORIGIN, size=8, root_hash=root(8))
    w1, w2 = witness("w1.example", 1), witness("w2.example", 2)
    # The registry serves checkpoint 8 with w1's cosignature of checkpoint 7 copied onto it.
    signed = cosigned_by(cp8, w1.cosign(cp7.body(), 10), w2.cosign(cp8.body(), 11))
    check = check_witnesses(signed, [w1.verifier(), w2.verifier()], required=2)
    assert not check.satisfied
    assert [c.name for c in check.cosigned] == ["w2.example"]
    assert (check.missing, check.invalid) == ((), (label(w1),))
    assert check.shortfall() == f"1 valid witness cosignature(s), 2 required; an invalid one from {label(w1)}"
    # w2's own cosignature counts: an invalid line by one witness does not reject the checkpoint.
    assert check_witnesses(signed, [w1.verifier(), w2.verifier()], required=1).satisfied


def test_check_witnesses_refuses_malformed_lines_and_other_keys() -> None:
    cp = Checkpoint(origin=ORIGIN, size=7, root_hash=root(7))
    w1 = witness("w1.example", 1)
    impostor = CosignatureSigner("w1.example", bytes([99]) * 32)  # the name, another key: another key id
    plain = NoteSignature(name=w1.name, key_id=w1.key_id, signature=bytes(64))
    too_late = NoteSignature(name=w1.name, key_id=w1.key_id, signature=b"\xff" * 72)
    for lines, missing, invalid in [
        ((plain,), (), (label(w1),)),
        ((too_late,), (), (label(w1),)),
        ((impostor.cosign(cp.body(), 1),), (label(w1),), ()),
    ]:
        check = check_witnesses(cosigned_by(cp, *lines), [w1.verifier()], required=1)
        assert (check.satisfied, check.cosigned, check.missing, check.invalid) == (False, (), missing, invalid)
    # A valid line beside a bad one by the same witness counts.
    check = check_witnesses(cosigned_by(cp, plain, w1.cosign(cp.body(), 5)), [w1.verifier()], required=1)
    assert [c.timestamp for c in check.cosigned] == [5]
    assert check.invalid == ()


def test_check_witnesses_needs_a_reachable_requirement() -> None:
    cp = Checkpoint(origin=ORIGIN, size=7, root_hash=root(7))
    w1 = witness("w1.example", 1)
    signed = cosigned_by(cp, w1.cosign(cp.body(), 1))
    # The same key given twice is one witness.
    assert check_witnesses(signed, [w1.verifier(), w1.verifier()], required=1).satisfied
    for required in (2, -1, True):
        with pytest.raises(NoteError, match="required witness cosignatures must be between 0 and 1"):
            check_witnesses(signed, [w1.verifier(), w1.verifier()], required=required)
