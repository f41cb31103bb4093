"""Unit tests for ledger.merkle: known answers, the frontier, node reads and every refusal message."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

import pytest

from ledger.errors import IntegrityError, ProofError
from ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Frontier,
    Hash,
    MemoryNodeStore,
    NodeId,
    NodeReader,
    consistency_proof,
    frontier_from_last_leaf,
    inclusion_proof,
    inclusion_proofs,
    leaf_hash,
    node_hash,
    root_at,
    root_from_inclusion_proof,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

# The RFC 6962 reference test data (certificate-transparency merkle_tree_test): 8 leaves, the root
# of every prefix, and a few inclusion and consistency proofs.
RFC_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
RFC_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
H1 = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
H23 = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
H4567 = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"
RFC_INCLUSION = [
    (0, 8, [H1, H23, H4567]),
    (5, 8, [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        RFC_ROOTS[4],
    ]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        H23,
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ]),
]  # fmt: skip
RFC_CONSISTENCY = [
    (1, 1, []),
    (1, 8, [H1, H23, H4567]),
    (6, 8, [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        RFC_ROOTS[4],
    ]),
    (2, 5, [H23, "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip


def _h(hex_digest: str) -> Hash:
    return Hash(bytes.fromhex(hex_digest))


def _rfc_leaf_hashes() -> list[Hash]:
    return [leaf_hash(data) for data in RFC_LEAVES]


def _build(leaves: Sequence[Hash]) -> tuple[MemoryNodeStore, Frontier]:
    store, frontier = MemoryNodeStore(), Frontier.empty()
    for leaf in leaves:
        store.put_nodes(frontier.append(leaf))
    return store, frontier


def _leaves(n: int) -> list[Hash]:
    return [leaf_hash(f"entry {i}".encode()) for i in range(n)]


class CountingReader:
    """Wraps a store and records every get_nodes call, to check 'one read of O(log n) nodes'."""

    def __init__(self, inner: MemoryNodeStore) -> None:
        self.inner = inner
        self.calls: list[list[NodeId]] = []

    def get_nodes(self, ids: Sequence[NodeId]) -> Mapping[NodeId, Hash]:
        self.calls.append(list(ids))
        return self.inner.get_nodes(ids)


class FixedReader:
    """A misbehaving store that returns whatever it was given, whatever was asked."""

    def __init__(self, nodes: Mapping[NodeId, Hash]) -> None:
        self.nodes = nodes

    def get_nodes(self, ids: Sequence[NodeId]) -> Mapping[NodeId, Hash]:
        return self.nodes


# --- hashing and known-answer roots -----------------------------------------------------------------


def test_hash_functions_use_rfc6962_domain_separation() -> None:
    assert HASH_SIZE == 32
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    assert leaf_hash(b"") == _h(RFC_ROOTS[1])


@pytest.mark.parametrize("size", range(len(RFC_ROOTS)))
def test_rfc6962_roots(size: int) -> None:
    leaves = _rfc_leaf_hashes()[:size]
    store, frontier = _build(leaves)
    expected = _h(RFC_ROOTS[size])
    assert root_from_leaves(leaves) == expected
    assert frontier.root() == expected
    assert root_at(store, size) == expected
    assert Frontier.load(store, size).root() == expected


def test_root_at_past_sizes_of_a_larger_tree() -> None:
    store, _ = _build(_rfc_leaf_hashes())
    assert [root_at(store, size) for size in range(9)] == [_h(root) for root in RFC_ROOTS]


@pytest.mark.parametrize(("index", "size", "expected"), RFC_INCLUSION)
def test_rfc6962_inclusion_proofs(index: int, size: int, expected: list[str]) -> None:
    leaves = _rfc_leaf_hashes()
    store, _ = _build(leaves)
    proof = inclusion_proof(store, index, size)
    assert proof == [_h(h) for h in expected]
    root = _h(RFC_ROOTS[size])
    verify_inclusion(leaf=leaves[index], index=index, size=size, proof=proof, root=root)
    assert root_from_inclusion_proof(leaf=leaves[index], index=index, size=size, proof=proof) == root


@pytest.mark.parametrize(("old", "new", "expected"), RFC_CONSISTENCY)
def test_rfc6962_consistency_proofs(old: int, new: int, expected: list[str]) -> None:
    store, _ = _build(_rfc_leaf_hashes())
    proof = consistency_proof(store, old, new)
    assert proof == [_h(h) for h in expected]
    verify_consistency(
        old_size=old, new_size=new, old_root=_h(RFC_ROOTS[old]), new_root=_h(RFC_ROOTS[new]), proof=proof
    )


def test_single_leaf_tree_has_empty_proof_and_leaf_root() -> None:
    leaf = leaf_hash(b"only")
    store, frontier = _build([leaf])
    assert frontier.root() == leaf
    assert inclusion_proof(store, 0, 1) == []
    verify_inclusion(leaf=leaf, index=0, size=1, proof=[], root=leaf)


def test_consistency_from_the_empty_tree_needs_empty_proof_and_empty_root() -> None:
    verify_consistency(old_size=0, new_size=5, old_root=EMPTY_ROOT, new_root=_h(RFC_ROOTS[5]), proof=[])
    with pytest.raises(ProofError, match="expected 0 hashes from size 0 to 5, found 1"):
        verify_consistency(old_size=0, new_size=5, old_root=EMPTY_ROOT, new_root=_h(RFC_ROOTS[5]), proof=[EMPTY_ROOT])
    with pytest.raises(ProofError, match="expected the empty-tree root"):
        verify_consistency(old_size=0, new_size=5, old_root=_h(H1), new_root=_h(RFC_ROOTS[5]), proof=[])


# --- the frontier -----------------------------------------------------------------------------------


def test_append_returns_leaf_first_then_every_completed_node() -> None:
    store, frontier = _build(_leaves(7))
    new_leaf = leaf_hash(b"entry 7")
    nodes = frontier.append(new_leaf)
    assert [node_id for node_id, _ in nodes] == [NodeId(0, 7), NodeId(1, 3), NodeId(2, 1), NodeId(3, 0)]
    assert nodes[0][1] == new_leaf
    assert nodes[-1][1] == frontier.root() == root_from_leaves([*_leaves(7), new_leaf])
    assert frontier.size == 8
    assert len(frontier.hashes) == 1


@pytest.mark.parametrize("size", [1, 2, 3, 100, 1023, 1024, 4095])
def test_append_is_logarithmic(size: int) -> None:
    frontier = Frontier.empty()
    counts = [len(frontier.append(leaf)) for leaf in _leaves(size)]
    # appending leaf i completes one node per trailing 1-bit of i, plus the leaf itself
    assert counts == [1 + (i ^ (i + 1)).bit_length() - 1 for i in range(size)]
    assert max(counts) <= (size - 1).bit_length() + 1
    assert sum(counts) < 2 * size
    assert len(frontier.hashes) == size.bit_count()


def test_frontier_load_round_trip() -> None:
    leaves = _leaves(37)
    store, _ = _build(leaves)
    for size in range(len(leaves) + 1):
        reader = CountingReader(store)
        loaded = Frontier.load(reader, size)
        reference = Frontier.empty()
        for leaf in leaves[:size]:
            reference.append(leaf)
        assert loaded == reference
        assert len(reader.calls) == (1 if size else 0)
        assert len(reader.calls[0] if reader.calls else []) == size.bit_count()
    # a loaded frontier carries on exactly like the one that never stopped
    loaded = Frontier.load(store, 20)
    continued = MemoryNodeStore()
    for leaf in leaves[20:]:
        continued.put_nodes(loaded.append(leaf))
    assert loaded.root() == root_from_leaves(leaves)
    later = [NodeId(0, 36), NodeId(5, 0)]
    assert continued.get_nodes(later) == store.get_nodes(later)


def test_frontier_refuses_inconsistent_state() -> None:
    with pytest.raises(ProofError, match="frontier: wrong size: expected 2 hashes for a tree of 5, found 1"):
        Frontier(5, [EMPTY_ROOT])
    with pytest.raises(ProofError, match="frontier hash 0: expected 32 bytes, found 3"):
        Frontier(1, [Hash(b"abc")])
    with pytest.raises(ProofError, match="frontier size: expected 0..2\\*\\*64-1, found -1"):
        Frontier(-1, [])
    with pytest.raises(ProofError, match="leaf: expected 32 bytes, found 5"):
        Frontier.empty().append(Hash(b"entry"))


# --- node reads ---------------------------------------------------------------------------------------


def test_every_read_is_one_get_nodes_call_of_logarithmic_size() -> None:
    size = 1000
    store, _ = _build(_leaves(size))
    bound = 2 * size.bit_length() + 2
    cases: dict[str, Callable[[NodeReader], object]] = {
        "root_at": lambda r: root_at(r, 777),
        "load": lambda r: Frontier.load(r, 999),
        "inclusion": lambda r: inclusion_proof(r, 517, 999),
        "consistency": lambda r: consistency_proof(r, 517, 999),
    }
    for name, build in cases.items():
        reader = CountingReader(store)
        build(reader)
        assert len(reader.calls) == 1, name
        assert len(reader.calls[0]) <= bound, name
        assert len(set(reader.calls[0])) == len(reader.calls[0]), name


def test_missing_nodes_are_a_proof_error() -> None:
    store, _ = _build(_leaves(4))
    with pytest.raises(ProofError, match=r"missing 1 stored node\(s\): node \(level 0, index 4\)"):
        inclusion_proof(store, 3, 5)
    with pytest.raises(ProofError, match="missing"):
        root_at(store, 6)


def test_a_reader_that_drops_or_corrupts_nodes_is_caught() -> None:
    with pytest.raises(ProofError, match=r"node \(level 1, index 0\): not returned by the node store"):
        root_at(FixedReader({}), 2)
    with pytest.raises(ProofError, match=r"node \(level 1, index 0\): expected 32 bytes, found 4"):
        root_at(FixedReader({NodeId(1, 0): Hash(b"oops")}), 2)


def test_memory_store_refuses_to_rewrite_a_node() -> None:
    store = MemoryNodeStore()
    store.put_nodes([(NodeId(0, 0), EMPTY_ROOT)])
    store.put_nodes([(NodeId(0, 0), EMPTY_ROOT)])  # idempotent
    assert len(store) == 1
    with pytest.raises(IntegrityError, match=r"node \(level 0, index 0\): already stored as"):
        store.put_nodes([(NodeId(0, 0), leaf_hash(b"other"))])


def test_root_from_leaves_takes_leaf_hashes() -> None:
    assert root_from_leaves([]) == EMPTY_ROOT
    with pytest.raises(ProofError, match="leaf 1: expected 32 bytes, found 7"):
        root_from_leaves([leaf_hash(b"a"), b"entry 1"])


# --- building proofs: refusals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "size", "message"),
    [
        (5, 5, "inclusion proof: leaf index 5 is not in a tree of 5 leaves"),
        (0, 0, "inclusion proof: leaf index 0 is not in a tree of 0 leaves"),
        (-1, 5, r"leaf index: expected 0..2\*\*64-1, found -1"),
        (0, -3, r"tree size: expected 0..2\*\*64-1, found -3"),
    ],
)
def test_inclusion_proof_refuses(index: int, size: int, message: str) -> None:
    store, _ = _build(_leaves(8))
    with pytest.raises(ProofError, match=message):
        inclusion_proof(store, index, size)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (6, 5, "consistency proof: old size 6 is larger than new size 5"),
        (0, 5, "consistency proof: old size is 0"),
        (0, 0, "consistency proof: old size is 0"),
        (-1, 5, r"old size: expected 0..2\*\*64-1, found -1"),
    ],
)
def test_consistency_proof_refuses(old: int, new: int, message: str) -> None:
    store, _ = _build(_leaves(8))
    with pytest.raises(ProofError, match=message):
        consistency_proof(store, old, new)


def test_consistency_proof_for_equal_sizes_is_empty() -> None:
    store, frontier = _build(_leaves(8))
    assert consistency_proof(store, 5, 5) == []
    root = root_at(store, 5)
    verify_consistency(old_size=5, new_size=5, old_root=root, new_root=root, proof=[])


# --- verification: refusals ------------------------------------------------------------------------


def _inclusion_case() -> tuple[Hash, list[Hash], Hash]:
    leaves = _rfc_leaf_hashes()
    store, _ = _build(leaves)
    return leaves[5], inclusion_proof(store, 5, 8), _h(RFC_ROOTS[8])


def test_verify_inclusion_wrong_size_message() -> None:
    leaf, proof, root = _inclusion_case()
    with pytest.raises(
        ProofError, match="inclusion proof: wrong size: expected 3 hashes for index 5 in a tree of 8, found 4"
    ):
        verify_inclusion(leaf=leaf, index=5, size=8, proof=[*proof, proof[0]], root=root)
    with pytest.raises(ProofError, match="expected 3 hashes for index 5 in a tree of 8, found 2"):
        verify_inclusion(leaf=leaf, index=5, size=8, proof=proof[:2], root=root)


def test_verify_inclusion_root_mismatch_message() -> None:
    leaf, proof, root = _inclusion_case()
    with pytest.raises(ProofError, match="inclusion proof: root mismatch: expected XcnaeacG.*, proof leads to"):
        verify_inclusion(leaf=leaf, index=5, size=8, proof=[proof[1], proof[0], proof[2]], root=root)
    with pytest.raises(ProofError, match="root mismatch"):
        verify_inclusion(leaf=leaf_hash(b"forged"), index=5, size=8, proof=proof, root=root)
    with pytest.raises(ProofError, match="root mismatch"):
        verify_inclusion(leaf=leaf, index=4, size=8, proof=proof, root=root)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"index": 8}, "inclusion proof: leaf index 8 is not in a tree of 8 leaves"),
        ({"index": -1}, r"leaf index: expected 0..2\*\*64-1, found -1"),
        ({"size": 2**64}, r"tree size: expected 0..2\*\*64-1, found 18446744073709551616"),
        ({"index": True}, "leaf index: expected an integer, found bool"),
        ({"leaf": b""}, "leaf hash: expected 32 bytes, found 0"),
        ({"root": b""}, "root: expected 32 bytes, found 0"),
        ({"root": b"x" * 33}, "root: expected 32 bytes, found 33"),
        ({"proof": [b"x" * 32, b"x" * 31, b"x" * 32]}, "inclusion proof hash 1: expected 32 bytes, found 31"),
        ({"proof": ["x" * 32, b"x" * 32, b"x" * 32]}, "inclusion proof hash 0: expected 32 bytes, found str"),
    ],
)
def test_verify_inclusion_refuses_malformed_input(change: dict[str, object], message: str) -> None:
    leaf, proof, root = _inclusion_case()
    args: dict[str, object] = {"leaf": leaf, "index": 5, "size": 8, "proof": proof, "root": root, **change}
    with pytest.raises(ProofError, match=message):
        verify_inclusion(**args)  # type: ignore[arg-type]  # deliberately ill-typed input


def test_verify_consistency_messages() -> None:
    store, _ = _build(_rfc_leaf_hashes())
    proof = consistency_proof(store, 6, 8)
    old, new = _h(RFC_ROOTS[6]), _h(RFC_ROOTS[8])
    verify_consistency(old_size=6, new_size=8, old_root=old, new_root=new, proof=proof)
    with pytest.raises(ProofError, match="wrong size: expected 3 hashes from size 6 to 8, found 2"):
        verify_consistency(old_size=6, new_size=8, old_root=old, new_root=new, proof=proof[1:])
    with pytest.raises(ProofError, match="old root mismatch: expected"):
        verify_consistency(old_size=6, new_size=8, old_root=new, new_root=new, proof=proof)
    with pytest.raises(ProofError, match="new root mismatch: expected"):
        verify_consistency(old_size=6, new_size=8, old_root=old, new_root=old, proof=proof)
    with pytest.raises(ProofError, match="old size 8 is larger than new size 6"):
        verify_consistency(old_size=8, new_size=6, old_root=old, new_root=new, proof=proof)
    with pytest.raises(ProofError, match="roots differ for the same size 6"):
        verify_consistency(old_size=6, new_size=6, old_root=old, new_root=new, proof=[])
    with pytest.raises(ProofError, match="expected 0 hashes from size 6 to 6, found 3"):
        verify_consistency(old_size=6, new_size=6, old_root=old, new_root=old, proof=proof)
    with pytest.raises(ProofError, match="new root: expected 32 bytes, found 0"):
        verify_consistency(old_size=6, new_size=8, old_root=old, new_root=b"", proof=proof)
    with pytest.raises(ProofError, match=r"new size: expected 0..2\*\*64-1, found 18446744073709551616"):
        verify_consistency(old_size=6, new_size=2**64, old_root=old, new_root=new, proof=proof)
    with pytest.raises(ProofError, match="consistency proof hash 2: expected 32 bytes, found 1"):
        verify_consistency(old_size=6, new_size=8, old_root=old, new_root=new, proof=[*proof[:2], b"x"])


def test_verify_consistency_power_of_two_old_size_omits_old_root() -> None:
    store, _ = _build(_rfc_leaf_hashes())
    proof = consistency_proof(store, 4, 8)
    assert proof == [_h(H4567)]
    verify_consistency(old_size=4, new_size=8, old_root=_h(RFC_ROOTS[4]), new_root=_h(RFC_ROOTS[8]), proof=proof)
    with pytest.raises(ProofError, match="wrong size: expected 1 hashes from size 4 to 8, found 2"):
        verify_consistency(
            old_size=4,
            new_size=8,
            old_root=_h(RFC_ROOTS[4]),
            new_root=_h(RFC_ROOTS[8]),
            proof=[_h(RFC_ROOTS[4]), *proof],
        )


def test_batched_inclusion_proofs_equal_single_ones() -> None:
    store = MemoryNodeStore()
    frontier = Frontier.empty()
    for i in range(137):
        store.put_nodes(frontier.append(leaf_hash(i.to_bytes(4, "big"))))
    for size in (1, 2, 64, 100, 137):
        indexes = list(range(size))[::3] + [size - 1]
        batched = inclusion_proofs(store, indexes, size)
        assert batched == [inclusion_proof(store, i, size) for i in indexes]
    with pytest.raises(ProofError, match="leaf index 137 is not in a tree of 137 leaves"):
        inclusion_proofs(store, [3, 137], 137)


def test_frontier_from_last_leaf_is_the_frontier_for_every_size() -> None:
    store = MemoryNodeStore()
    built = Frontier.empty()
    leaves = [leaf_hash(str(i).encode()) for i in range(300)]
    for size, leaf in enumerate(leaves, start=1):
        store.put_nodes(built.append(leaf))
        proof = inclusion_proof(store, size - 1, size)
        rebuilt = frontier_from_last_leaf(leaf=leaf, size=size, proof=proof, root=built.root())
        assert rebuilt == built
        # Extending the rebuilt frontier gives the same roots as the real tree.
        if size % 37 == 0:
            ahead, real = Frontier(rebuilt.size, list(rebuilt.hashes)), Frontier(built.size, list(built.hashes))
            for extra in leaves[:5]:
                ahead.append(extra)
                real.append(extra)
            assert ahead.root() == real.root()


def test_frontier_from_last_leaf_refuses_a_wrong_proof() -> None:
    store = MemoryNodeStore()
    built = Frontier.empty()
    for i in range(13):
        store.put_nodes(built.append(leaf_hash(bytes([i]))))
    proof = inclusion_proof(store, 12, 13)
    bad = [proof[0], bytes(32), *proof[2:]]
    with pytest.raises(ProofError, match="root mismatch"):
        frontier_from_last_leaf(leaf=leaf_hash(bytes([12])), size=13, proof=bad, root=built.root())
    with pytest.raises(ProofError, match="root mismatch"):
        frontier_from_last_leaf(leaf=leaf_hash(b"other"), size=13, proof=proof, root=built.root())
