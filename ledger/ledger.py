"""The append path: signed transactions in, entries, a signed checkpoint and receipts out.

`Ledger.submit` takes a batch of signed transactions and, in ONE database transaction holding the
log's write lock: catches its in-memory `State` up with entries other processes appended; for each
transaction checks replay, authorisation (invariant 5), the signature and every rule; appends the
accepted ones as entries with their Merkle nodes, unit movements and projection rows; checks that the new tree
extends the last signed checkpoint; signs and stores one checkpoint for the batch (compare-and-swap
on its size); and commits. Receipts are returned only after the commit, so every receipt's
checkpoint is durable. A transaction refused by a rule yields a `RuleViolation` in its slot and
appends nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.errors import ConflictError, EncodingError, IntegrityError, RuleViolation, SignatureError
from ledger.heap import HeapSettler
from ledger.history import Movement, movements
from ledger.invariants import check_blocks_around, check_claims
from ledger.keys import PrivateKey
from ledger.log import GENESIS_CHAIN, Entry, StoredEntry, decode_entry, seal
from ledger.merkle import Frontier, Hash, MemoryNodeStore, NodeId, NodeReader, inclusion_proofs, root_at
from ledger.note import NoteSigner
from ledger.points_batch import PointRecord
from ledger.serials import parse_block
from ledger.state import Outcome, State, UnitsMoved
from ledger.state.outcomes import Claimed
from ledger.storage import store
from ledger.storage.engine import read_transaction, write_transaction
from ledger.transactions import (
    PointsAttest,
    RegistryGenesis,
    SignedTransaction,
    TransactionBody,
    TransactionSigner,
    format_utc,
)


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof that a transaction is in the log: its entry, the covering checkpoint and the inclusion proof."""

    index: int
    leaf_hash: bytes
    checkpoint: bytes
    tree_size: int
    inclusion_proof: tuple[bytes, ...]
    outcome: Outcome | None
    duplicate: bool = False


def tx_hash(tx: SignedTransaction) -> bytes:
    """Identity of a signed transaction: what 're-sent identical' means."""
    return hashlib.sha256(tx.body_bytes + b"\x00" + tx.signature).digest()


class Ledger:
    """One registry's log over one database; safe to run in several processes at once."""

    def __init__(self, engine: Engine, signer: NoteSigner) -> None:
        self.engine = engine
        self.signer = signer
        self._state: State | None = None
        self._tip: _Tip | None = None
        self._heap = HeapSettler()

    # --- state ---------------------------------------------------------------------------------------

    def _caught_up(self, conn: Connection) -> State:
        """The in-memory state, replaying entries appended since we last looked (by any process)."""
        if self._state is None:
            self._state = State()
        state = self._state
        before = state.size
        # The tip of this process's last append follows the entries others appended after it (its
        # checkpoint is then unknown until a batch compares it with the latest stored one).
        tip = self._tip if self._tip is not None and self._tip.size == before else None
        last_chain: bytes | None = None
        for stored in store.iter_entries(conn, state.size):
            if tip is not None:
                tip.frontier.append(Hash(stored.leaf_hash))
            last_chain = stored.chain_hash
            # A stored entry that does not replay is damage to the log, not the caller's rule violation.
            try:
                entry = decode_stored(stored)
                body = entry.body()
                state.authorise(body, index=entry.index, accepted_at=entry.accepted_at)
                attachment = attachment_of(conn, body)
                state.apply(body, index=entry.index, accepted_at=entry.accepted_at, attachment=attachment)
            except (EncodingError, RuleViolation, IntegrityError) as exc:
                self._state = None
                self._tip = None
                reason = f"{exc.code}: {exc.message}" if isinstance(exc, RuleViolation) else str(exc)
                reason = reason.removeprefix(f"entry {stored.index}: ")
                raise IntegrityError(f"the stored log does not replay: {reason}", index=stored.index) from None
        state.dirty.clear()  # those rows were written by whoever appended the entries
        self._heap.grew(state.size - before)
        if last_chain is not None:
            self._tip = (
                None
                if tip is None
                else dataclasses.replace(tip, size=state.size, chain_hash=last_chain, checkpoint=None)
            )
        return state

    def state(self) -> State:
        """The current state (caught up with the database)."""
        with read_transaction(self.engine) as conn:
            return self._caught_up(conn)

    # --- appending -----------------------------------------------------------------------------------

    def submit(
        self,
        txs: Sequence[SignedTransaction],
        *,
        now: datetime | None = None,
        verified_keys: Sequence[bytes | None] | None = None,
    ) -> list[Receipt | RuleViolation]:
        """Append what passes, refuse what does not; one durable checkpoint covers the whole batch.

        `verified_keys`, when given, holds for each transaction the raw public key its signature was
        already verified with in this process (None where it was not): a transaction whose authorised
        key is that one is not verified a second time. Every other is verified here.
        """
        if verified_keys is not None and len(verified_keys) != len(txs):
            raise ValueError("verified_keys must hold one entry per transaction")
        try:
            with write_transaction(self.engine) as conn:
                batch = self._append(conn, txs, now or datetime.now(UTC), verified_keys or [None] * len(txs))
        except BaseException:
            # Memory may be ahead of the rolled-back database: rebuild on next use.
            self._state = None
            self._tip = None
            raise
        self._tip = batch.tip  # committed: the next batch may start from it
        return self._with_proofs(batch)

    def _append(
        self, conn: Connection, txs: Sequence[SignedTransaction], now: datetime, verified_keys: Sequence[bytes | None]
    ) -> _Batch:
        state = self._caught_up(conn)
        size = state.size
        last_checkpoint = store.latest_checkpoint(conn)
        tip = self._tip
        self._tip = None  # until this batch commits
        if (
            tip is not None
            and tip.checkpoint is None
            and last_checkpoint is not None
            and (last_checkpoint.size, last_checkpoint.root_hash) == (tip.size, tip.frontier.root())
        ):
            tip = dataclasses.replace(tip, checkpoint=last_checkpoint)  # caught up to another's checkpoint
        if tip is None or tip.checkpoint != last_checkpoint or tip.size != size:
            # Another process appended, or this is the first batch: start from what the database holds.
            tip = self._tip_from(conn, size, last_checkpoint)
        origin, registry_vkey, frontier, prev = tip.origin, tip.vkey, tip.frontier, tip.chain_hash
        if registry_vkey is not None and registry_vkey != self.signer.verifier_key():
            # Checkpoints signed with any other key would not verify for anyone: refuse up front.
            raise ConflictError(
                f"this process signs with {self.signer.name}+{self.signer.key_id.hex()}, but the registry's "
                f"checkpoint key is {'+'.join(registry_vkey.split('+')[:2])}"
            )
        # The new entries' proofs need only the old frontier's nodes and the nodes this batch makes.
        memory = MemoryNodeStore()
        memory.put_nodes(zip(frontier_node_ids(size), frontier.hashes, strict=True))
        used = store.find_nonces(conn, ((tx.body.actor, tx.body.nonce) for tx in txs))
        results: list[Any] = []
        sealed: list[tuple[StoredEntry, store.EntryMeta]] = []
        nodes = []
        moves: list[Movement] = []
        seen: dict[tuple[str, str], tuple[bytes, int]] = {}
        last = state.last_time
        for tx, verified_key in zip(txs, verified_keys, strict=True):
            accepted_at = max(now, last) if last is not None else now
            identity = tx_hash(tx)
            key = (tx.body.actor, tx.body.nonce)
            earlier = seen.get(key) or _as_pair(used.get(key))
            if earlier is not None:
                if earlier[0] == identity:
                    results.append(("duplicate", earlier[1]))
                else:
                    results.append(
                        RuleViolation(
                            "nonce_reused",
                            f"nonce {tx.body.nonce} of {tx.body.actor} was already used by entry {earlier[1]} "
                            "for a different transaction",
                        )
                    )
                continue
            if origin is not None and tx.body.origin != origin:
                results.append(
                    RuleViolation("wrong_origin", f"transaction is for registry {tx.body.origin!r}, this is {origin!r}")
                )
                continue
            index = state.size
            try:
                signer_key = state.authorise(tx.body, index=index, accepted_at=accepted_at)
                if verified_key != signer_key.raw:
                    tx.verify(signer_key)
                attachment = attachment_of(conn, tx.body)
                outcome = state.apply(tx.body, index=index, accepted_at=accepted_at, attachment=attachment)
            except SignatureError as exc:
                results.append(RuleViolation("bad_signature", str(exc)))
                continue
            except RuleViolation as exc:
                results.append(exc)
                continue
            self._check_invariants(state, outcome)
            moves.extend(movements(index, tx.body.actor, outcome))
            entry = Entry(index, accepted_at, prev, signer_key.raw, tx.signature, tx.body_bytes)
            sealed_entry = seal(entry)
            prev = sealed_entry.chain_hash
            nodes.extend(frontier.append(Hash(sealed_entry.leaf_hash)))
            meta = store.EntryMeta(format_utc(accepted_at), tx.body.actor, tx.body.nonce, tx.body.kind, identity)
            sealed.append((sealed_entry, meta))
            seen[key] = (identity, index)
            if isinstance(tx.body.payload, PointsAttest):
                store.mark_attested(conn, tx.body.payload.batch_id)
            results.append(("new", index, outcome))
            last = accepted_at
        if not sealed:
            return _Batch(results, None, memory, tip)
        self._heap.grew(len(sealed))
        store.insert_entries(conn, sealed)
        store.insert_nodes(conn, nodes)
        store.insert_movements(conn, moves)
        memory.put_nodes(nodes)
        store.write_projections(conn, state)
        if origin is None and state.origin is not None:
            store.set_meta(conn, "origin", state.origin)
            if state.registry_vkey is not None:
                store.set_meta(conn, "vkey", state.registry_vkey)
        checkpoint = self._sign_checkpoint(conn, state.origin or "", state.size, frontier.root(), tip.checkpoint)
        origin = store.get_meta(conn, "origin") if origin is None else origin
        vkey = store.get_meta(conn, "vkey") if registry_vkey is None else registry_vkey
        return _Batch(results, checkpoint, memory, _Tip(state.size, frontier, prev, checkpoint, origin, vkey))

    def _tip_from(self, conn: Connection, size: int, last: store.StoredCheckpoint | None) -> _Tip:
        """Where the log ends, read from the database, after checking its tree still matches `last`."""
        reader = store.DbNodeReader(conn)
        if last is not None:
            if last.size > size:
                raise ConflictError(f"a checkpoint of size {last.size} exists beyond this log of size {size}")
            # Never sign a checkpoint that does not extend the last one (invariant 7).
            if root_at(reader, last.size) != last.root_hash:
                raise IntegrityError(f"the stored tree no longer matches checkpoint {last.size}; refusing to sign")
        return _Tip(
            size,
            Frontier.load(reader, size) if size else Frontier.empty(),
            store.read_entries(conn, size - 1, size)[0].chain_hash if size else GENESIS_CHAIN,
            last,
            store.get_meta(conn, "origin"),
            store.get_meta(conn, "vkey"),
        )

    def _check_invariants(self, state: State, outcome: Outcome) -> None:
        """The write path raises at the first violation of an invariant around what the entry touched."""
        blocks = outcome.blocks if isinstance(outcome, UnitsMoved) else ()
        findings = check_blocks_around(state, [parse_block(text) for text in blocks])
        if isinstance(outcome, Claimed):
            findings += check_claims(state, [outcome.event_id])
        if findings:
            raise IntegrityError(f"invariant broken by the write path: {findings[0]}", index=state.size - 1)

    def _sign_checkpoint(
        self, conn: Connection, origin: str, size: int, root: bytes, last: store.StoredCheckpoint | None
    ) -> store.StoredCheckpoint:
        """Sign and store the checkpoint of `size` entries; `last` is the latest one, which the tree this
        batch grew from was checked against (by `_tip_from`, or by signing it in this process)."""
        if last is not None and last.size == size:
            return last
        note = sign_checkpoint(Checkpoint(origin, size, root), self.signer)
        stored = store.StoredCheckpoint(size, root, note, format_utc(datetime.now(UTC)))
        store.insert_checkpoint(conn, stored)
        return stored

    def _with_proofs(self, batch: _Batch) -> list[Receipt | RuleViolation]:
        results = batch.results
        if all(isinstance(r, RuleViolation) for r in results):
            return list(results)
        if batch.checkpoint is not None and all(isinstance(r, RuleViolation) or r[0] == "new" for r in results):
            return self._receipts(results, batch.checkpoint, batch.memory)
        # Some are re-sent transactions whose entries are older: read what they need from the database.
        with read_transaction(self.engine) as conn:
            checkpoint = store.latest_checkpoint(conn)
            assert checkpoint is not None
            return self._receipts(results, checkpoint, _Overlay(batch.memory, store.DbNodeReader(conn)))

    @staticmethod
    def _receipts(
        results: list[Any], checkpoint: store.StoredCheckpoint, reader: NodeReader
    ) -> list[Receipt | RuleViolation]:
        indexes = [r[1] for r in results if not isinstance(r, RuleViolation)]
        leaves = reader.get_nodes([NodeId(0, i) for i in indexes])
        proofs = iter(inclusion_proofs(reader, indexes, checkpoint.size))
        receipts: list[Receipt | RuleViolation] = []
        for result in results:
            if isinstance(result, RuleViolation):
                receipts.append(result)
                continue
            index = result[1]
            receipts.append(
                Receipt(
                    index,
                    leaves[NodeId(0, index)],
                    checkpoint.note,
                    checkpoint.size,
                    tuple(next(proofs)),
                    result[2] if result[0] == "new" else None,
                    duplicate=result[0] == "duplicate",
                )
            )
        return receipts

    # --- reading -------------------------------------------------------------------------------------

    def latest_checkpoint(self) -> store.StoredCheckpoint | None:
        """The newest signed checkpoint."""
        with read_transaction(self.engine) as conn:
            return store.latest_checkpoint(conn)

    def size(self) -> int:
        """Entries in the log."""
        with read_transaction(self.engine) as conn:
            return store.log_size(conn)


@dataclass(frozen=True, slots=True)
class _Tip:
    """Where the log ends, as a batch starts from it: its size, frontier and last chain hash, the latest
    signed checkpoint (whose root the frontier's tree was checked to match) and the registry's meta.

    A committed batch leaves its tip to the next one, which uses it only if the database's latest
    checkpoint is still that one (no other process appended since), or if the entries others appended
    since, added to its frontier by the catch-up, give exactly the root of the latest checkpoint they
    signed: the tree, the last entry and the meta then need not be read again.
    """

    size: int
    frontier: Frontier
    chain_hash: bytes
    checkpoint: store.StoredCheckpoint | None
    origin: str | None
    vkey: str | None


@dataclass(frozen=True, slots=True)
class _Batch:
    """What one append transaction did: per-transaction results, its checkpoint, the nodes it knows,
    and where it left the log (`_Tip`)."""

    results: list[Any]
    checkpoint: store.StoredCheckpoint | None
    memory: MemoryNodeStore
    tip: _Tip


class _Overlay:
    """Nodes from memory where present, else from the database."""

    def __init__(self, memory: MemoryNodeStore, fallback: NodeReader) -> None:
        self._memory = memory
        self._fallback = fallback

    def get_nodes(self, ids: Sequence[NodeId]) -> Mapping[NodeId, Hash]:
        found = dict(self._memory.get_known(ids))
        missing = [n for n in ids if n not in found]
        if missing:
            found.update(self._fallback.get_nodes(missing))
        return found


def frontier_node_ids(size: int) -> list[NodeId]:
    """The ids of the perfect subtrees covering [0, size), largest first (the frontier's nodes)."""
    ids = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            ids.append(NodeId(level, start >> level))
            start += 1 << level
    return ids


def _as_pair(found: tuple[int, bytes] | None) -> tuple[bytes, int] | None:
    return None if found is None else (found[1], found[0])


def attachment_of(conn: Connection, body: TransactionBody) -> list[PointRecord] | None:
    """What a transaction commits to without carrying it: a points batch's records, uploaded by its signer."""
    if isinstance(body.payload, PointsAttest):
        return store.read_point_records(conn, body.payload.batch_id, provider=body.actor)
    return None


def decode_stored(stored: StoredEntry) -> Entry:
    """Decode a stored entry, translating encoding failures into integrity findings."""
    try:
        return decode_entry(stored.data, index=stored.index)
    except EncodingError as exc:
        raise IntegrityError(str(exc), index=stored.index) from None


def found_registry(
    ledger: Ledger,
    *,
    authority_id: str,
    authority_name: str,
    authority_key: PrivateKey,
    now: datetime | None = None,
) -> Receipt:
    """Append entry 0: the authority founds the registry with its key and the log's verifier key."""
    when = now or datetime.now(UTC)
    signer = TransactionSigner(ledger.signer.name, authority_id, authority_key)
    genesis = RegistryGenesis(
        registry_vkey=ledger.signer.verifier_key(),
        authority_name=authority_name,
        authority_public_key=authority_key.public_key.b64(),
    )
    (result,) = ledger.submit([signer.sign(genesis, at=when)], now=when)
    if isinstance(result, RuleViolation):
        raise result
    return result
