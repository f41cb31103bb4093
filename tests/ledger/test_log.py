"""ledger.log: entry bytes, their strict decoding, and the leaf and chain hashes.

The hashes are recomputed here with hashlib from the definitions (leaf = SHA-256(0x00 || bytes),
chain = SHA-256(prev || leaf)), not with the module's helpers.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.encoding import b64encode, canonical_json
from ledger.errors import EncodingError
from ledger.log import ENTRY_VERSION, GENESIS_CHAIN, Entry, chain_hash, decode_entry, seal
from ledger.transactions import (
    Issue,
    Retire,
    RetirementPurpose,
    Selection,
    SignedTransaction,
    TransactionSigner,
    Transfer,
)
from tests.ledger.scenario import ORIGIN, seeded_key

ALICE = seeded_key("alice")
AT = datetime(2025, 3, 1, 8, 0, 0, 250000, tzinfo=UTC)
PREV = bytes(range(32))
FIELDS = ("accepted_at", "index", "prev", "public_key", "signature", "transaction", "v")


def _tx(payload: Any = None, *, nonce: str = "nonce-0123456789abcdef") -> SignedTransaction:
    signer = TransactionSigner(ORIGIN, "alice", ALICE)
    return signer.sign(payload if payload is not None else Issue(report_id="MR0003"), at=AT, nonce=nonce)


def _entry(index: int = 3, tx: SignedTransaction | None = None, prev: bytes = PREV) -> Entry:
    tx = tx if tx is not None else _tx()
    return Entry(index, AT, prev, ALICE.public_key.raw, tx.signature, tx.body_bytes)


ENTRY = _entry()
DATA = ENTRY.encode()
DATA_BODY = ENTRY.body_bytes


def _document(entry: Entry) -> dict[str, Any]:
    """The entry as a JSON value, built from the format's description rather than the encoder."""
    t = entry.accepted_at
    return {
        "accepted_at": f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f".{t.microsecond:06d}Z",
        "index": entry.index,
        "prev": b64encode(entry.prev_chain),
        "public_key": b64encode(entry.public_key),
        "signature": b64encode(entry.signature),
        "transaction": json.loads(entry.body_bytes),
        "v": 1,
    }


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


# --- round trip ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        Issue(report_id="MR0003"),
        Transfer(to="bob", selection=Selection(quantity=5), memo='quote " backslash \\ tab \t 成都 \U0001f600'),
        Retire(
            selection=Selection(blocks=("CDCER-P0007-2023-001-000001-000500",)),
            beneficiary="Tianfu Green Forum 天府绿色论坛",
            purpose=RetirementPurpose.ORGANISATION,
            year=2024,
            reason="annual footprint",
        ),
    ],
)
def test_entry_round_trips(payload: Any) -> None:
    tx = _tx(payload)
    entry = _entry(7, tx)
    data = entry.encode()
    assert decode_entry(data) == entry
    assert decode_entry(data, index=7) == entry
    assert decode_entry(data).encode() == data
    # The hand-built encoder writes exactly the RFC 8785 form of the entry document.
    assert data == canonical_json(_document(entry))
    # The transaction sits verbatim in the entry; its signature still verifies.
    assert entry.body() == tx.body
    assert entry.signing_message() == b"cdcer/transaction/v1\n" + tx.body_bytes
    ALICE.public_key.verify(decode_entry(data).signing_message(), decode_entry(data).signature)


@settings(max_examples=150, deadline=None)
@given(
    index=st.integers(0, 2**53 - 1),
    accepted_at=st.datetimes(timezones=st.just(UTC)),
    prev=st.binary(min_size=32, max_size=32),
    public_key=st.binary(min_size=32, max_size=32),
    signature=st.binary(min_size=64, max_size=64),
)
def test_any_entry_round_trips(
    index: int, accepted_at: datetime, prev: bytes, public_key: bytes, signature: bytes
) -> None:
    entry = Entry(index, accepted_at, prev, public_key, signature, DATA_BODY)
    data = entry.encode()
    assert data == canonical_json(_document(entry))
    assert decode_entry(data, index=index) == entry


def test_entry_format_is_stable() -> None:
    assert DATA.startswith(b'{"accepted_at":"2025-03-01T08:00:00.250000Z","index":3,"prev":"AAECAwQF')
    assert DATA.endswith(b'"transaction":' + ENTRY.body_bytes + b',"v":1}')
    assert ENTRY_VERSION == 1
    assert list(json.loads(DATA)) == list(FIELDS)


# --- hashes -------------------------------------------------------------------------------------


def test_seal_computes_leaf_and_chain_hashes() -> None:
    stored = seal(ENTRY)
    assert stored.index == 3
    assert stored.data == DATA
    assert stored.leaf_hash == hashlib.sha256(b"\x00" + DATA).digest()
    assert stored.chain_hash == hashlib.sha256(PREV + hashlib.sha256(b"\x00" + DATA).digest()).digest()


def test_chain_of_entries_links_each_to_the_previous() -> None:
    assert GENESIS_CHAIN == bytes(32)
    previous: bytes = GENESIS_CHAIN
    expected_chain = bytes(32)
    for index in range(5):
        tx = _tx(Transfer(to="bob", selection=Selection(quantity=index + 1)), nonce=f"nonce-{index:016d}")
        stored = seal(_entry(index, tx, prev=previous))
        leaf = hashlib.sha256(b"\x00" + stored.data).digest()
        expected_chain = hashlib.sha256(expected_chain + leaf).digest()
        assert stored.leaf_hash == leaf
        assert stored.chain_hash == expected_chain
        assert decode_entry(stored.data, index=index).prev_chain == previous
        previous = stored.chain_hash


def test_chain_hash_definition() -> None:
    leaf = _leaf(b"x")
    assert chain_hash(PREV, leaf) == hashlib.sha256(PREV + leaf).digest()
    assert chain_hash(leaf, PREV) != chain_hash(PREV, leaf)


# --- decode_entry: malformed entries ------------------------------------------------------------


def _encoded(**changes: Any) -> bytes:
    document = _document(ENTRY)
    document.update(changes)
    return canonical_json(document)


@pytest.mark.parametrize("field", FIELDS)
def test_decode_entry_refuses_a_missing_field(field: str) -> None:
    document = _document(ENTRY)
    del document[field]
    with pytest.raises(EncodingError, match="^entry: not an entry object \\(fields accepted_at, index, prev"):
        decode_entry(canonical_json(document))


@pytest.mark.parametrize("extra", ["extra", "body", "leaf_hash", "V", ""])
def test_decode_entry_refuses_an_extra_field(extra: str) -> None:
    with pytest.raises(EncodingError, match="^entry: not an entry object"):
        decode_entry(_encoded(**{extra: 1}))


@pytest.mark.parametrize("document", [[], "entry", 3, None, {}])
def test_decode_entry_refuses_non_objects(document: Any) -> None:
    with pytest.raises(EncodingError, match="^entry: not an entry object"):
        decode_entry(canonical_json(document))


_NOT_CANONICAL_TIME = (
    r"^entry: (accepted_at .* is not YYYY-MM-DDTHH:MM:SS\.ffffffZ|bytes are not the entry's canonical encoding)$"
)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        # version
        ({"v": 2}, "^entry: unknown entry version 2$"),
        ({"v": 0}, "^entry: unknown entry version 0$"),
        ({"v": "1"}, "^entry: unknown entry version '1'$"),
        ({"v": None}, "^entry: unknown entry version None$"),
        ({"v": True}, "^entry: bytes are not the entry's canonical encoding$"),
        # index
        ({"index": -1}, "^entry: index must be a non-negative integer$"),
        ({"index": "3"}, "^entry: index must be a non-negative integer$"),
        ({"index": True}, "^entry: index must be a non-negative integer$"),
        ({"index": None}, "^entry: index must be a non-negative integer$"),
        ({"index": [3]}, "^entry: index must be a non-negative integer$"),
        # string fields of the wrong type
        ({"accepted_at": 1740816000}, "^entry: accepted_at must be a string$"),
        ({"prev": None}, "^entry: prev must be a string$"),
        ({"public_key": [1]}, "^entry: public_key must be a string$"),
        ({"signature": 0}, "^entry: signature must be a string$"),
        # time format
        ({"accepted_at": "2025-03-01T08:00:00Z"}, "^entry: accepted_at '2025-03-01T08:00:00Z' is not YYYY-MM-DDTHH"),
        ({"accepted_at": "2025-03-01T08:00:00.250000"}, "is not YYYY-MM-DDTHH:MM:SS.ffffffZ$"),
        ({"accepted_at": "2025-03-01T08:00:00.250000+00:00"}, "is not YYYY-MM-DDTHH:MM:SS.ffffffZ$"),
        ({"accepted_at": "2025-03-01 08:00:00.250000Z"}, "is not YYYY-MM-DDTHH:MM:SS.ffffffZ$"),
        ({"accepted_at": "2025-13-01T08:00:00.250000Z"}, "is not YYYY-MM-DDTHH:MM:SS.ffffffZ$"),
        ({"accepted_at": "2025-02-30T08:00:00.250000Z"}, "is not YYYY-MM-DDTHH:MM:SS.ffffffZ$"),
        ({"accepted_at": "2025-03-01"}, "is not YYYY-MM-DDTHH:MM:SS.ffffffZ$"),
        ({"accepted_at": ""}, "^entry: accepted_at '' is not YYYY-MM-DDTHH:MM:SS.ffffffZ$"),
        # not the one textual form (refused by the format check or by the re-encoding check)
        ({"accepted_at": "2025-03-01T08:00:00.250000z"}, _NOT_CANONICAL_TIME),
        ({"accepted_at": "2025-03-01T08:00:00.25Z"}, _NOT_CANONICAL_TIME),
        ({"accepted_at": "2025-3-1T8:00:00.250000Z"}, _NOT_CANONICAL_TIME),
        ({"accepted_at": "\u0662\u0660\u0662\u0665-03-01T08:00:00.250000Z"}, _NOT_CANONICAL_TIME),
        # base64 fields
        ({"prev": "not base64!"}, "^entry: prev: not valid base64"),
        ({"prev": b64encode(PREV).rstrip("=")}, "^entry: prev: not valid base64 .*padding"),
        ({"public_key": b64encode(bytes(32)).replace("A", "-", 1)}, "^entry: public_key: not valid base64"),
        ({"signature": " " + b64encode(bytes(64))}, "^entry: signature: not valid base64"),
        # Non-zero padding bits decode to the same bytes; the re-encoding check refuses them.
        ({"prev": b64encode(PREV)[:-2] + "9="}, "^entry: bytes are not the entry's canonical encoding$"),
        # sizes
        ({"prev": b64encode(bytes(31))}, "^entry: prev: expected 32 bytes, found 31$"),
        ({"prev": b64encode(bytes(33))}, "^entry: prev: expected 32 bytes, found 33$"),
        ({"prev": ""}, "^entry: prev: expected 32 bytes, found 0$"),
        ({"public_key": b64encode(bytes(31))}, "^entry: public_key: expected 32 bytes, found 31$"),
        ({"public_key": b64encode(bytes(64))}, "^entry: public_key: expected 32 bytes, found 64$"),
        ({"signature": b64encode(bytes(63))}, "^entry: signature: expected 64 bytes, found 63$"),
        ({"signature": b64encode(bytes(32))}, "^entry: signature: expected 64 bytes, found 32$"),
        # transaction
        ({"transaction": "eyJ9"}, "^entry: transaction must be an object$"),
        ({"transaction": [1]}, "^entry: transaction must be an object$"),
        ({"transaction": None}, "^entry: transaction must be an object$"),
    ],
)
def test_decode_entry_refuses(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(EncodingError, match=match):
        decode_entry(_encoded(**changes))


@pytest.mark.parametrize("index", [0, 2, 4, 2**40])
def test_decode_entry_refuses_the_wrong_index(index: int) -> None:
    with pytest.raises(EncodingError, match=f"^entry {index}: says it is entry 3$"):
        decode_entry(DATA, index=index)


def test_decode_entry_refuses_an_unsafe_index() -> None:
    with pytest.raises(EncodingError, match="^entry: not valid JSON .*integer 9007199254740992 is outside the safe"):
        decode_entry(DATA.replace(b'"index":3', b'"index":9007199254740992'))


def test_messages_name_the_expected_index() -> None:
    with pytest.raises(EncodingError, match="^entry 3: prev: expected 32 bytes, found 31$"):
        decode_entry(_encoded(prev=b64encode(bytes(31))), index=3)


@pytest.mark.parametrize(
    ("before", "after", "match"),
    [
        (b'"index":3', b'"index": 3', "^entry: bytes are not the entry's canonical encoding$"),
        (b'{"accepted_at"', b' {"accepted_at"', "not the entry's canonical encoding"),
        (b',"v":1}', b',"v":1}\n', "not the entry's canonical encoding"),
        (b'"index":3', b'"index":3.0', "^entry: not valid JSON \\(non-integer number 3.0 is not allowed\\)"),
        (b'"index":3', b'"index":3e0', "non-integer number 3e0 is not allowed"),
        (b'"index":3', b'"index":03', "^entry: not valid JSON"),
        (b'"index":3,', b"", "^entry: not an entry object"),
        (  # keys out of order
            b'"accepted_at":"2025-03-01T08:00:00.250000Z","index":3',
            b'"index":3,"accepted_at":"2025-03-01T08:00:00.250000Z"',
            "not the entry's canonical encoding",
        ),
        (b'"index":3', b'"index":3,"index":3', "not the entry's canonical encoding"),  # duplicate key
        (b'"report_id":"MR0003"', b'"report_id":"MR0003" ', "not the entry's canonical encoding"),  # in the transaction
        (b'"report_id":"MR0003"', b'"report_id":"\\u004dR0003"', "not the entry's canonical encoding"),
        (b'"report_id":"MR0003"', b'"report_id":"MR\xff0003"', "^entry: not UTF-8"),
        (b"MR0003", b"MR\xed\xa0\x80", "^entry: not UTF-8"),
        (b',"v":1}', b',"v":1', "^entry: not valid JSON"),
        # A key spelled with escapes parses to the same name but is not canonical (was a raw ValueError).
        (b'"transaction":', b'"\\u0074ransaction":', "^entry: bytes are not the entry's canonical encoding$"),
    ],
)
def test_decode_entry_refuses_damaged_bytes(before: bytes, after: bytes, match: str) -> None:
    assert before in DATA
    with pytest.raises(EncodingError, match=match):
        decode_entry(DATA.replace(before, after, 1))


def test_decode_entry_refuses_every_truncation() -> None:
    for end in range(len(DATA)):
        with pytest.raises(EncodingError):
            decode_entry(DATA[:end])


@settings(max_examples=400, deadline=None)
@given(position=st.integers(0, len(DATA) - 1), mask=st.integers(1, 255))
def test_flipping_any_byte_never_yields_the_same_entry(position: int, mask: int) -> None:
    damaged = bytearray(DATA)
    damaged[position] ^= mask
    try:
        entry = decode_entry(bytes(damaged))
    except EncodingError:
        return
    # It decoded: then it is a different entry, with different bytes and a different leaf hash.
    assert entry != ENTRY
    assert entry.encode() == bytes(damaged)
    assert seal(entry).leaf_hash != seal(ENTRY).leaf_hash
    assert seal(entry).leaf_hash == _leaf(bytes(damaged))


def test_flipping_each_byte_never_yields_the_same_entry() -> None:
    original_leaf = _leaf(DATA)
    for position in range(len(DATA)):
        for mask in (0x01, 0x20, 0x80):
            damaged = bytearray(DATA)
            damaged[position] ^= mask
            try:
                entry = decode_entry(bytes(damaged))
            except EncodingError:
                continue
            assert entry != ENTRY
            assert seal(entry).leaf_hash != original_leaf
