"""Log entries: the exact bytes of each accepted transaction, its leaf hash and its chain hash.

Entry *i* is the canonical JSON object::

    {"accepted_at": "...Z", "index": i, "prev": b64(chain_{i-1}), "public_key": b64(signer key),
     "signature": b64(actor signature), "transaction": <the signed body, verbatim>, "v": 1}

Its leaf hash is SHA-256(0x00 || entry bytes) (RFC 6962) and its chain hash is
SHA-256(chain_{i-1} || leaf_hash_i), with chain_{-1} = 32 zero bytes. The signature covers the
transaction's canonical bytes, which appear verbatim inside the entry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NewType

from ledger.encoding import b64decode, b64encode, is_canonical, loads_strict
from ledger.errors import EncodingError
from ledger.merkle import leaf_hash
from ledger.transactions import TransactionBody, decode_body, format_utc, signing_message

ChainHash = NewType("ChainHash", bytes)
GENESIS_CHAIN = ChainHash(bytes(32))
ENTRY_VERSION = 1
_SUFFIX = b',"v":1}'


def chain_hash(previous: bytes, leaf: bytes) -> ChainHash:
    """chain_i = SHA-256(chain_{i-1} || leaf_hash_i)."""
    return ChainHash(hashlib.sha256(previous + leaf).digest())


@dataclass(frozen=True, slots=True)
class Entry:
    """One accepted transaction as it sits in the log."""

    index: int
    accepted_at: datetime
    prev_chain: bytes
    public_key: bytes
    signature: bytes
    body_bytes: bytes

    def encode(self) -> bytes:
        """The entry's exact bytes (canonical JSON; keys in RFC 8785 order)."""
        head = (
            f'{{"accepted_at":"{format_utc(self.accepted_at)}","index":{self.index},'
            f'"prev":"{b64encode(self.prev_chain)}","public_key":"{b64encode(self.public_key)}",'
            f'"signature":"{b64encode(self.signature)}","transaction":'
        ).encode()
        return head + self.body_bytes + _SUFFIX

    def signing_message(self) -> bytes:
        """What the actor's key signed."""
        return signing_message(self.body_bytes)

    def body(self) -> TransactionBody:
        """The parsed transaction body."""
        return decode_body(self.body_bytes)


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry's bytes with the hashes the store keeps beside them."""

    index: int
    data: bytes
    leaf_hash: bytes
    chain_hash: bytes


def decode_entry(data: bytes, *, index: int | None = None) -> Entry:
    """Parse entry bytes strictly: canonical JSON with exactly the entry fields, in their forms."""
    what = "entry" if index is None else f"entry {index}"
    value = loads_strict(data, what=what)
    if not isinstance(value, dict) or set(value) != {
        "accepted_at",
        "index",
        "prev",
        "public_key",
        "signature",
        "transaction",
        "v",
    }:
        raise EncodingError(f"{what}: not an entry object (fields accepted_at, index, prev, public_key, ...)")
    if value["v"] != ENTRY_VERSION:
        raise EncodingError(f"{what}: unknown entry version {value['v']!r}")
    if not isinstance(value["index"], int) or isinstance(value["index"], bool) or value["index"] < 0:
        raise EncodingError(f"{what}: index must be a non-negative integer")
    if index is not None and value["index"] != index:
        raise EncodingError(f"{what}: says it is entry {value['index']}")
    for name in ("accepted_at", "prev", "public_key", "signature"):
        if not isinstance(value[name], str):
            raise EncodingError(f"{what}: {name} must be a string")
    try:
        text = value["accepted_at"]
        if len(text) != 27 or text[-1] != "Z" or text[10] != "T" or text[19] != ".":
            raise ValueError(text)
        accepted_at = datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    except ValueError:
        raise EncodingError(
            f"{what}: accepted_at {value['accepted_at']!r} is not YYYY-MM-DDTHH:MM:SS.ffffffZ"
        ) from None
    if not isinstance(value["transaction"], dict):
        raise EncodingError(f"{what}: transaction must be an object")
    # The document is canonical, so the transaction's canonical bytes sit verbatim before the suffix.
    key = data.find(b'"transaction":')
    if key < 0:  # the key was spelled with escapes: parseable JSON, but not the canonical form
        raise EncodingError(f"{what}: bytes are not the entry's canonical encoding")
    start = key + len(b'"transaction":')
    body_bytes = data[start : len(data) - len(_SUFFIX)]
    entry = Entry(
        index=value["index"],
        accepted_at=accepted_at,
        prev_chain=b64decode(value["prev"], what=f"{what}: prev", size=32),
        public_key=b64decode(value["public_key"], what=f"{what}: public_key", size=32),
        signature=b64decode(value["signature"], what=f"{what}: signature", size=64),
        body_bytes=body_bytes,
    )
    # The envelope is re-encoded in full; the transaction inside must itself be canonical JSON.
    if entry.encode() != data or not is_canonical(value["transaction"], body_bytes):
        raise EncodingError(f"{what}: bytes are not the entry's canonical encoding")
    return entry


def seal(entry: Entry) -> StoredEntry:
    """Encode an entry and compute its leaf and chain hashes."""
    data = entry.encode()
    leaf = leaf_hash(data)
    return StoredEntry(entry.index, data, leaf, chain_hash(entry.prev_chain, leaf))
