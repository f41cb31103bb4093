"""`audit_extension`: verify only what a log gained since a trusted checkpoint."""

from __future__ import annotations

import pytest

from ledger.audit import audit_extension
from ledger.ledger import Ledger
from ledger.log import StoredEntry
from ledger.merkle import inclusion_proof, root_at
from ledger.storage import store
from ledger.storage.engine import read_transaction
from tests.conftest import Story


def extension(ledger: Ledger, old: int, *, alter: int | None = None) -> tuple[int | None, list[StoredEntry]]:
    with read_transaction(ledger.engine) as conn:
        reader = store.DbNodeReader(conn)
        size = store.log_size(conn)
        entries = store.read_entries(conn, 0, size)
        old_root, new_root = root_at(reader, old), root_at(reader, size)
        proof = inclusion_proof(reader, old - 1, old)
    if alter is not None:
        e = entries[alter]
        entries[alter] = StoredEntry(e.index, e.data.replace(b'"v":1}', b'"v":3}'), e.leaf_hash, e.chain_hash)
    report = audit_extension(
        old_size=old,
        old_root=old_root,
        last_old=entries[old - 1],
        last_old_proof=proof,
        new_size=size,
        new_root=new_root,
        entries=iter(entries[old:]),
    )
    return report.first_bad_index if not report.verified else -1, entries


@pytest.mark.parametrize("old", [1, 2, 7, 16])
def test_an_honest_extension_verifies_from_any_saved_size(story: Story, old: int) -> None:
    story.full_story()
    bad, entries = extension(story.ledger, old)
    assert bad == -1
    assert len(entries) > old


@pytest.mark.parametrize("old", [3, 11])
def test_an_altered_new_entry_is_named(story: Story, old: int) -> None:
    story.full_story()
    target = old + 4
    bad, _ = extension(story.ledger, old, alter=target)
    assert bad == target


def test_a_wrong_last_entry_or_proof_is_refused(story: Story) -> None:
    story.full_story()
    with read_transaction(story.ledger.engine) as conn:
        reader = store.DbNodeReader(conn)
        size = store.log_size(conn)
        entries = store.read_entries(conn, 0, size)
        old_root, new_root = root_at(reader, 8), root_at(reader, size)
        proof = inclusion_proof(reader, 7, 8)
    for last, path in ((entries[6], proof), (entries[7], [proof[0], *proof[1:][::-1]])):
        report = audit_extension(
            old_size=8,
            old_root=old_root,
            last_old=last,
            last_old_proof=path,
            new_size=size,
            new_root=new_root,
            entries=iter(entries[8:]),
        )
        assert not report.verified
        finding = report.first_finding()
        assert finding is not None
        assert finding.invariant == "checkpoints"
