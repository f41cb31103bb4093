"""The log's read rules: which checkpoint, which entries and which proofs a client may ask for."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from ledger.log import StoredEntry
from ledger.merkle import Hash, NodeId, consistency_proof, inclusion_proof
from ledger.note import add_signatures, parse_signature_line
from ledger.storage import store
from registry.errors import BadRequest, NotFound


@dataclass(frozen=True, slots=True)
class EntriesPage:
    entries: list[StoredEntry]
    next: int | None


def log_size(conn: Connection) -> int:
    """Entries in the log."""
    return store.log_size(conn)


def signed_checkpoint(conn: Connection) -> bytes:
    """The latest signed checkpoint, byte for byte, with the witness cosignatures stored for it."""
    latest = store.latest_checkpoint(conn)
    if latest is None:
        raise NotFound("the registry has not signed a checkpoint yet (its log is empty)", "no-checkpoint")
    lines = store.cosignature_lines(conn, latest.size)
    if not lines:
        return latest.note
    return add_signatures(latest.note, *(parse_signature_line(line, what="stored cosignature") for line in lines))


def verifier_key(conn: Connection) -> str:
    """The verifier key of the registry's checkpoint signer, as recorded by the genesis entry."""
    vkey = store.get_meta(conn, "vkey")
    if vkey is None:
        raise NotFound("the registry has no verifier key yet (it has not been founded)", "no-verifier-key")
    return vkey


def entries(conn: Connection, *, start: int, limit: int) -> EntriesPage:
    """Up to `limit` entries from index `start`, and where the next page starts (None at the end)."""
    size = store.log_size(conn)
    found = store.read_entries(conn, start, min(start + limit, size)) if start < size else []
    stop = start + len(found)
    return EntriesPage(found, stop if found and stop < size else None)


def _check_tree_size(conn: Connection, size: int, *, what: str) -> int:
    """The log size, after checking that `size` names a tree a client can verify against."""
    log = store.log_size(conn)
    if size > log:
        raise BadRequest(f"{what} {size} is beyond the log, which has {log} entries", "size-beyond-log")
    if size != log and store.checkpoint_at(conn, size) is None:
        raise NotFound(
            f"no checkpoint was signed at {what} {size}; use the size of a signed checkpoint "
            f"or the current log size {log}",
            "no-checkpoint-at-size",
        )
    return log


def inclusion(conn: Connection, *, index: int, size: int) -> tuple[Hash, list[Hash]]:
    """The leaf hash of entry `index` and its inclusion proof in the tree of `size` entries."""
    if size == 0:
        raise BadRequest("size must be at least 1: the empty tree includes no entry", "invalid-range")
    if index >= size:
        raise BadRequest(
            f"leaf index {index} is not in a tree of {size} entries; use an index below {size}", "index-beyond-size"
        )
    _check_tree_size(conn, size, what="size")
    reader = store.DbNodeReader(conn)
    leaf = reader.get_nodes([_leaf_id(index)])[_leaf_id(index)]
    return leaf, inclusion_proof(reader, index, size)


def consistency(conn: Connection, *, old: int, new: int) -> list[Hash]:
    """The consistency proof between the trees of `old` and `new` entries (0 < old <= new <= log size)."""
    if old == 0:
        raise BadRequest("old must be at least 1: every tree extends the empty tree", "invalid-range")
    if old > new:
        raise BadRequest(f"old size {old} is larger than new size {new}; ask for old <= new", "invalid-range")
    log = store.log_size(conn)
    if new > log:
        raise BadRequest(f"new size {new} is beyond the log, which has {log} entries", "size-beyond-log")
    return consistency_proof(store.DbNodeReader(conn), old, new)


def _leaf_id(index: int) -> NodeId:
    return NodeId(0, index)
