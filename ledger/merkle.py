"""The RFC 6962 / RFC 9162 Merkle tree over the ledger's entries.

Vocabulary used throughout this module:

- A *leaf* is a leaf hash, ``SHA-256(0x00 || entry bytes)`` (see `leaf_hash`), never the entry itself.
- A *node* is the root of a perfect subtree: `NodeId(level, index)` covers the ``2**level`` leaves
  starting at leaf ``index * 2**level``. Level 0 nodes are the leaf hashes. Only perfect subtrees are
  ever stored: they never change once complete, so the store is append-only like the log.
- Any other range ``D[a:b]`` that a root or a proof needs is split into the perfect subtrees given by
  the binary digits of ``b - a`` (largest first, starting at ``a``); its hash is those nodes folded
  from the right with `node_hash`. Building a root or a proof is therefore: compute the ranges it
  needs (pure arithmetic), fetch every node with *one* `NodeReader.get_nodes` call, then hash.

Proof construction follows RFC 9162 section 2.1.3.1 (PATH) and 2.1.4.1 (PROOF / SUBPROOF); the
verifiers follow sections 2.1.3.2 and 2.1.4.2 step by step. Every malformed or failing input raises
`ProofError`, never another exception.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NewType, Protocol

from ledger.encoding import b64encode
from ledger.errors import IntegrityError, ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "Hash",
    "MemoryNodeStore",
    "NodeId",
    "NodeReader",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_at",
    "root_from_inclusion_proof",
    "root_from_leaves",
    "verify_consistency",
    "verify_inclusion",
]

Hash = NewType("Hash", bytes)
"""A 32-byte SHA-256 digest: a leaf hash, a node hash or a tree root."""

HASH_SIZE = 32

# Sizes and indexes travel as uint64 in checkpoints and in Go's tlog; anything larger is not a tree.
_MAX_UINT64 = 2**64 - 1

EMPTY_ROOT = Hash(hashlib.sha256(b"").digest())
"""MTH({}) = SHA-256() — the root of the empty tree (RFC 9162 section 2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> Hash:
    """The RFC 6962 leaf hash of one entry: ``SHA-256(0x00 || data)``."""
    return Hash(hashlib.sha256(_LEAF_PREFIX + data).digest())


def node_hash(left: bytes, right: bytes) -> Hash:
    """The RFC 6962 interior node hash: ``SHA-256(0x01 || left || right)``."""
    return Hash(hashlib.sha256(_NODE_PREFIX + left + right).digest())


@dataclass(frozen=True, slots=True, order=True)
class NodeId:
    """The perfect subtree of ``2**level`` leaves starting at leaf ``index * 2**level``.

    Level 0 is a single leaf hash; ``NodeId(3, 1)`` is the root of leaves 8..15.
    """

    level: int
    index: int

    def __str__(self) -> str:
        return f"node (level {self.level}, index {self.index})"


class NodeReader(Protocol):
    """Read access to stored perfect-subtree nodes (a database table, a dict...)."""

    def get_nodes(self, ids: Sequence[NodeId]) -> Mapping[NodeId, Hash]:
        """Return the hash of every requested node; may raise `ProofError` if some are missing."""
        ...


class MemoryNodeStore:
    """A dict-backed `NodeReader`, for tests and in-memory trees."""

    def __init__(self) -> None:
        self._nodes: dict[NodeId, Hash] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def put_nodes(self, nodes: Iterable[tuple[NodeId, Hash]]) -> None:
        """Store nodes (e.g. the result of `Frontier.append`).

        Storing a node again with the same hash is a no-op; with a different hash it is refused,
        because a perfect subtree never changes once complete.
        """
        for node_id, digest in nodes:
            stored = self._nodes.setdefault(node_id, digest)
            if stored != digest:
                raise IntegrityError(f"{node_id}: already stored as {b64encode(stored)}, refusing {b64encode(digest)}")

    def get_nodes(self, ids: Sequence[NodeId]) -> Mapping[NodeId, Hash]:
        """Return the requested nodes; raise `ProofError` naming the first missing ones."""
        missing = [node_id for node_id in ids if node_id not in self._nodes]
        if missing:
            listed = ", ".join(str(node_id) for node_id in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ProofError(f"missing {len(missing)} stored node(s): {listed}{more}")
        return {node_id: self._nodes[node_id] for node_id in ids}

    def get_known(self, ids: Sequence[NodeId]) -> Mapping[NodeId, Hash]:
        """Return those of the requested nodes that are stored; never raises."""
        return {node_id: self._nodes[node_id] for node_id in ids if node_id in self._nodes}


@dataclass(slots=True)
class Frontier:
    """The compact range of a tree: roots of the perfect subtrees covering [0, size), largest first.

    There is one hash per set bit of `size`, so appending a leaf and computing the root are
    O(log n) and need no storage reads.
    """

    size: int = 0
    hashes: list[Hash] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_uint64("frontier size", self.size)
        expected = self.size.bit_count()
        if len(self.hashes) != expected:
            raise ProofError(
                f"frontier: wrong size: expected {expected} hashes for a tree of {self.size}, found {len(self.hashes)}"
            )
        for position, digest in enumerate(self.hashes):
            _check_hash(f"frontier hash {position}", digest)

    @classmethod
    def empty(cls) -> Frontier:
        """The frontier of the empty tree."""
        return cls(0, [])

    @classmethod
    def load(cls, reader: NodeReader, size: int) -> Frontier:
        """Rebuild the frontier of the tree of `size` leaves from stored nodes (one `get_nodes` call)."""
        _check_uint64("tree size", size)
        ids = _perfect_nodes(0, size)
        return cls(size, _fetch(reader, ids))

    def append(self, leaf: Hash) -> list[tuple[NodeId, Hash]]:
        """Add one leaf hash; return every node it completes, the level-0 leaf node first.

        The returned nodes are exactly what a store must persist so that roots and proofs for every
        later size can be built from perfect subtrees alone: at most ``log2(size) + 1`` of them.
        """
        _check_hash("leaf", leaf)
        if self.size >= _MAX_UINT64:
            raise ProofError(f"frontier: tree is full at {self.size} leaves")
        level, index, digest = 0, self.size, Hash(bytes(leaf))
        completed = [(NodeId(0, index), digest)]
        # Each trailing 1-bit of the old size is a perfect subtree of equal height to merge with.
        while index & 1:
            digest = node_hash(self.hashes.pop(), digest)
            level, index = level + 1, index >> 1
            completed.append((NodeId(level, index), digest))
        self.hashes.append(digest)
        self.size += 1
        return completed

    def root(self) -> Hash:
        """The Merkle tree hash of the current tree (`EMPTY_ROOT` when empty)."""
        return _fold(self.hashes)


def root_from_leaves(leaves: Sequence[bytes]) -> Hash:
    """The Merkle tree hash of a list of *leaf hashes*, computed from scratch (RFC 6962 MTH).

    This is the slow, obviously-correct reference (recursive split at the largest power of two
    below n) that the tests and the audit compare the incremental tree against. Pass leaf hashes,
    i.e. ``[leaf_hash(entry) for entry in entries]``; anything not 32 bytes is refused.
    """
    for position, leaf in enumerate(leaves):
        _check_hash(f"leaf {position}", leaf)

    def mth(lo: int, hi: int) -> Hash:
        if hi - lo == 1:
            return Hash(bytes(leaves[lo]))
        k = _split(hi - lo)
        return node_hash(mth(lo, lo + k), mth(lo + k, hi))

    return mth(0, len(leaves)) if leaves else EMPTY_ROOT


def root_at(reader: NodeReader, size: int) -> Hash:
    """The root of the tree when it had `size` leaves, from O(log n) stored nodes (one read)."""
    _check_uint64("tree size", size)
    return _fold(_fetch(reader, _perfect_nodes(0, size)))


def inclusion_proof(reader: NodeReader, index: int, size: int) -> list[Hash]:
    """The RFC 9162 inclusion proof PATH(index, D[0:size]) of leaf `index` in the tree of `size`."""
    _check_uint64("tree size", size)
    _check_uint64("leaf index", index)
    if index >= size:
        raise ProofError(f"inclusion proof: leaf index {index} is not in a tree of {size} leaves")
    return _range_hashes(reader, _inclusion_ranges(index, size))


def inclusion_proofs(reader: NodeReader, indexes: Sequence[int], size: int) -> list[list[Hash]]:
    """Inclusion proofs of many leaves into one tree, each shared subtree hashed once (one read).

    The receipts of a batch of appends need proofs for neighbouring leaves, whose paths share most
    of their siblings: this costs O(batch + log n) hashes instead of O(batch * log n).
    """
    _check_uint64("tree size", size)
    all_ranges = []
    for index in indexes:
        _check_uint64("leaf index", index)
        if index >= size:
            raise ProofError(f"inclusion proof: leaf index {index} is not in a tree of {size} leaves")
        all_ranges.append(_inclusion_ranges(index, size))
    unique = sorted({rng for ranges in all_ranges for rng in ranges})
    hashes = dict(zip(unique, _range_hashes(reader, unique), strict=True))
    return [[hashes[rng] for rng in ranges] for ranges in all_ranges]


def consistency_proof(reader: NodeReader, old_size: int, new_size: int) -> list[Hash]:
    """The RFC 9162 consistency proof PROOF(old_size, D[0:new_size]).

    RFC 9162 defines the proof for ``0 < old_size < new_size``. For ``old_size == new_size`` the
    proof is empty (both roots must simply be equal); a proof from the empty tree is refused, as it
    would prove nothing.
    """
    _check_uint64("old size", old_size)
    _check_uint64("new size", new_size)
    if old_size == 0:
        raise ProofError("consistency proof: old size is 0; every tree extends the empty tree")
    if old_size > new_size:
        raise ProofError(f"consistency proof: old size {old_size} is larger than new size {new_size}")
    return _range_hashes(reader, _consistency_ranges(old_size, new_size))


def root_from_inclusion_proof(*, leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> Hash:
    """The root that an inclusion proof leads to (RFC 9162 section 2.1.3.2, steps 1-4).

    Raises `ProofError` if any input is malformed: a hash that is not 32 bytes, an index or size
    outside uint64, ``index >= size``, or a proof of the wrong length.
    """
    _check_uint64("leaf index", index)
    _check_uint64("tree size", size)
    _check_hash("leaf hash", leaf)
    # (1) the leaf must be in the tree.
    if index >= size:
        raise ProofError(f"inclusion proof: leaf index {index} is not in a tree of {size} leaves")
    expected = _inclusion_proof_length(index, size)
    if len(proof) != expected:
        raise ProofError(
            f"inclusion proof: wrong size: expected {expected} hashes for index {index} "
            f"in a tree of {size}, found {len(proof)}"
        )
    for position, digest in enumerate(proof):
        _check_hash(f"inclusion proof hash {position}", digest)
    # (2) fn, sn and (3) r.
    fn, sn, r = index, size - 1, bytes(leaf)
    # (4) climb the tree.
    for p in proof:
        if sn == 0:  # (4a) unreachable after the length check; kept as the RFC's own guard.
            raise ProofError("inclusion proof: proof is longer than the path to the root")
        if fn & 1 or fn == sn:  # (4b)
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1  # (4c)
    if sn != 0:  # (5), first half; unreachable after the length check.
        raise ProofError("inclusion proof: proof is shorter than the path to the root")
    return Hash(r)


def verify_inclusion(*, leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that leaf hash `leaf` is entry `index` of the tree of `size` leaves with `root`.

    RFC 9162 section 2.1.3.2. Returns nothing on success; raises `ProofError` otherwise.
    """
    _check_hash("root", root)
    computed = root_from_inclusion_proof(leaf=leaf, index=index, size=size, proof=proof)
    # (5) compare with the root.
    if computed != root:
        raise ProofError(
            f"inclusion proof: root mismatch: expected {b64encode(root)}, proof leads to {b64encode(computed)}"
        )


def frontier_from_last_leaf(*, leaf: bytes, size: int, proof: Sequence[bytes], root: bytes) -> Frontier:
    """The frontier of the tree of `size` leaves with `root`, from its LAST leaf and that leaf's inclusion proof.

    The last leaf's audit path holds, bottom up, its left siblings inside the smallest perfect subtree
    and then the roots of the larger perfect subtrees: exactly what a frontier is. So whoever trusts
    `root` (a signed checkpoint) can extend the tree with new leaves without holding the old ones.
    Raises `ProofError` when the proof does not lead to `root`.
    """
    verify_inclusion(leaf=leaf, index=size - 1, size=size, proof=proof, root=root)
    inside = (size & -size).bit_length() - 1  # height of the smallest perfect subtree (lowest set bit)
    subtree = bytes(leaf)
    for sibling in proof[:inside]:
        subtree = node_hash(sibling, subtree)
    return Frontier(size, [Hash(bytes(h)) for h in reversed(proof[inside:])] + [Hash(subtree)])


def verify_consistency(
    *, old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of `old_size` with `old_root` is a prefix of the tree with `new_root`.

    RFC 9162 section 2.1.4.2 for ``0 < old_size < new_size``. Outside the RFC's range:
    ``old_size == new_size`` needs an empty proof and equal roots; ``old_size == 0`` needs an empty
    proof and ``old_root == EMPTY_ROOT`` (the empty tree is a prefix of every tree). Both roots must
    be 32 bytes in every case. Raises `ProofError` on any failure.
    """
    _check_uint64("old size", old_size)
    _check_uint64("new size", new_size)
    _check_hash("old root", old_root)
    _check_hash("new root", new_root)
    if old_size > new_size:
        raise ProofError(f"consistency proof: old size {old_size} is larger than new size {new_size}")
    expected = 0 if old_size in (0, new_size) else len(_consistency_ranges(old_size, new_size))
    if len(proof) != expected:
        raise ProofError(
            f"consistency proof: wrong size: expected {expected} hashes from size {old_size} "
            f"to {new_size}, found {len(proof)}"
        )
    for position, digest in enumerate(proof):
        _check_hash(f"consistency proof hash {position}", digest)
    if old_size == 0 and old_root != EMPTY_ROOT:
        raise ProofError(
            f"consistency proof: old root mismatch: expected the empty-tree root "
            f"{b64encode(EMPTY_ROOT)} for size 0, found {b64encode(old_root)}"
        )
    if old_size == new_size and old_root != new_root:
        raise ProofError(
            f"consistency proof: roots differ for the same size {old_size}: "
            f"expected {b64encode(old_root)}, found {b64encode(new_root)}"
        )
    if old_size in (0, new_size):
        return
    # (1) is implied by the length check above: the proof is never empty here.
    path = [bytes(digest) for digest in proof]
    # (2) a power-of-two old tree is itself a node of the new tree: the proof omits it.
    if old_size & (old_size - 1) == 0:
        path.insert(0, bytes(old_root))
    # (3), (4)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    # (5)
    fr = sr = path[0]
    # (6)
    for c in path[1:]:
        if sn == 0:  # (6a) unreachable after the length check; kept as the RFC's own guard.
            raise ProofError("consistency proof: proof is longer than the path to the root")
        if fn & 1 or fn == sn:  # (6b)
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1  # (6c)
    # (7)
    if sn != 0:
        raise ProofError("consistency proof: proof is shorter than the path to the root")
    if fr != old_root:
        raise ProofError(
            f"consistency proof: old root mismatch: expected {b64encode(old_root)}, proof leads to {b64encode(fr)}"
        )
    if sr != new_root:
        raise ProofError(
            f"consistency proof: new root mismatch: expected {b64encode(new_root)}, proof leads to {b64encode(sr)}"
        )


# --- pure range arithmetic ------------------------------------------------------------------------


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2): RFC 9162's k."""
    return 1 << ((n - 1).bit_length() - 1)


def _perfect_nodes(lo: int, hi: int) -> list[NodeId]:
    """The perfect subtrees covering [lo, hi): binary digits of hi - lo, largest first.

    Every range that a root or an RFC 9162 proof needs starts at a multiple of a power of two at
    least as large as its length, so each piece is aligned and is a stored node.
    """
    nodes: list[NodeId] = []
    start, remaining = lo, hi - lo
    while remaining:
        level = remaining.bit_length() - 1
        if start % (1 << level):
            raise ProofError(f"range [{lo}, {hi}) is not made of aligned perfect subtrees")
        nodes.append(NodeId(level, start >> level))
        start += 1 << level
        remaining -= 1 << level
    return nodes


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form PATH(index, D[0:size]), in proof order (leaf first)."""
    siblings: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            siblings.append((lo + k, hi))
            hi = lo + k
        else:
            siblings.append((lo, lo + k))
            lo += k
    siblings.reverse()  # the recursion appends the top-level sibling last
    return siblings


def _inclusion_proof_length(index: int, size: int) -> int:
    """len(PATH(index, D[0:size])) without building it: the levels where index and size-1 part,
    plus one for every left sibling above that (set bits of the index's shared prefix)."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form PROOF(old_size, D[0:new_size]) (RFC 9162 SUBPROOF)."""
    siblings: list[tuple[int, int]] = []
    lo, hi, whole_old_tree = 0, new_size, True
    while old_size != hi:
        k = _split(hi - lo)
        if old_size <= lo + k:
            siblings.append((lo + k, hi))
            hi = lo + k
        else:
            siblings.append((lo, lo + k))
            lo += k
            whole_old_tree = False
    siblings.reverse()
    # SUBPROOF(m, D[m], b) is [] when b (the old root itself, known to the verifier), else MTH(D[m]).
    return siblings if whole_old_tree else [(lo, hi), *siblings]


def _range_hashes(reader: NodeReader, ranges: Sequence[tuple[int, int]]) -> list[Hash]:
    """The Merkle tree hash of each range, from one `get_nodes` call."""
    pieces = [_perfect_nodes(lo, hi) for lo, hi in ranges]
    nodes = _fetch_map(reader, [node_id for piece in pieces for node_id in piece])
    return [_fold([nodes[node_id] for node_id in piece]) for piece in pieces]


def _fetch(reader: NodeReader, ids: Sequence[NodeId]) -> list[Hash]:
    nodes = _fetch_map(reader, ids)
    return [nodes[node_id] for node_id in ids]


def _fetch_map(reader: NodeReader, ids: Sequence[NodeId]) -> Mapping[NodeId, Hash]:
    """One `get_nodes` call for all `ids` (none if empty), checking the reader kept its promise."""
    if not ids:
        return {}
    unique = sorted(set(ids))
    nodes = reader.get_nodes(unique)
    for node_id in unique:
        digest = nodes.get(node_id)
        if digest is None:
            raise ProofError(f"{node_id}: not returned by the node store")
        _check_hash(str(node_id), digest)
    return nodes


def _fold(hashes: Sequence[Hash]) -> Hash:
    """Combine perfect-subtree roots (largest first) into the hash of the range they cover."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for digest in reversed(hashes[:-1]):
        acc = node_hash(digest, acc)
    return acc


# --- input checks -----------------------------------------------------------------------------------


def _check_uint64(what: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProofError(f"{what}: expected an integer, found {type(value).__name__}")
    if not 0 <= value <= _MAX_UINT64:
        raise ProofError(f"{what}: expected 0..2**64-1, found {value}")


def _check_hash(what: str, value: object) -> None:
    if not isinstance(value, bytes | bytearray):
        raise ProofError(f"{what}: expected {HASH_SIZE} bytes, found {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what}: expected {HASH_SIZE} bytes, found {len(value)}")
