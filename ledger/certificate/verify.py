"""Verifying a certificate offline, with nothing but the registry's verifier key (steps (1)-(6) of
`ledger.certificate`). No database, no network, no SQLAlchemy.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ledger.certificate.format import (
    AUTHORITY_KINDS,
    ENTRY_ROLES,
    BatchStatement,
    CertificateEntry,
    CertificateKind,
    ClaimStatement,
    RetirementFacts,
    RetirementStatement,
    clip,
    parse_certificate,
)
from ledger.checkpoint import open_checkpoint
from ledger.encoding import b64decode
from ledger.errors import (
    CertificateError,
    EncodingError,
    NoteError,
    ProofError,
    SignatureError,
)
from ledger.keys import PublicKey
from ledger.log import Entry, decode_entry
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.note import NoteVerifier
from ledger.serials import SerialRange, parse_block
from ledger.transactions import (
    UNITS_PER_CDCER_KG,
    ClaimIssue,
    EventFootprint,
    EventRegister,
    FootprintStage,
    Issue,
    KeyAdd,
    KeyRotate,
    ParticipantRegister,
    ParticipantSetRoles,
    RegistryGenesis,
    ReportSubmit,
    ReportVerify,
    Retire,
    Role,
    TransactionBody,
    format_utc,
)

LIMIT_IDS = (
    "record ids (retirement, claim, event, report and batch numbers) are assigned by counting in the full log; "
    "the certificate shows which entry each id names"
)
LIMIT_LATER = (
    "that no signer's key was revoked, and no signer suspended or stripped of its role, between the entries "
    "shown is proven by the full audit"
)
LIMIT_DOUBLE = (
    "that the holder held every listed serial when it retired it, and that no listed serial was also retired, "
    "cancelled or claimed elsewhere, are proven by the full audit"
)
LIMIT_FOOTPRINT = (
    "that the footprint entry is the event's last final declaration before the claim, and that the claim "
    "lists every retirement made for the event, are proven by the full audit"
)
LIMIT_CHECKPOINT = "that later checkpoints extend this one is checked with consistency proofs, not here"


def _limit_by_quantity(retirement_id: str) -> str:
    return (
        f"retirement {retirement_id} was by quantity: which serials it took (the oldest held first) is decided "
        "by replaying the whole log; the blocks shown are the registry's answer, checked by the full audit"
    )


# --- verifying -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedCertificate:
    """What a certificate proved: its subject, the checkpoint it rests on, and what it could not prove."""

    kind: CertificateKind
    id: str
    origin: str
    checkpoint_size: int
    root_hash: bytes
    key_id: str
    """The registry's checkpoint key, ``<name>+<8 hex key id>``."""
    statement: RetirementStatement | ClaimStatement
    entries: tuple[int, ...]
    """The indexes of the entries checked, in order."""
    limits: tuple[str, ...]
    """What an offline check cannot prove; the full audit covers each of these."""
    proven: tuple[str, ...] = ()
    """Which statement fields the signed entries prove, each with the entries it rests on."""


@dataclass(frozen=True, slots=True)
class _Item:
    index: int
    role: str
    entry: Entry
    body: TransactionBody


@dataclass(slots=True)
class _Log:
    """The verified entries of a certificate, and which of them the statement has used so far."""

    items: dict[int, _Item]
    used: set[int] = field(default_factory=set)

    def take(self, index: int, kind: str, what: str) -> _Item:
        item = self.items.get(index)
        if item is None:
            raise CertificateError(
                f"statement: names entry {index} as the {what}, but the certificate does not include entry {index}"
            )
        if item.body.kind != kind:
            raise CertificateError(
                f"statement: names entry {index} as the {what}, which should be a transaction of kind {kind}; "
                f"entry {index} is of kind {item.body.kind}"
            )
        self.used.add(index)
        return item


def verify_certificate(data: bytes, vkey: str) -> VerifiedCertificate:
    """Verify a certificate offline with the registry's verifier key; raise `CertificateError` if it fails.

    Runs steps (1)-(6) of the module docstring in order and stops at the first failure, whose
    message names the entry or statement field and says what was expected and what was found.
    Nothing but `data` and `vkey` is read. The result lists in `limits` what an offline check
    cannot prove (e.g. which serials a retirement by quantity took); the full audit covers those.
    """
    # (1) shape
    certificate = parse_certificate(data)
    leaves, proofs = _decode_entries(certificate.entries)
    # (2) checkpoint, with the given key
    vkey = vkey.strip()  # as read from a file, with its final newline
    try:
        verifier = NoteVerifier.from_vkey(vkey)
    except NoteError as exc:
        raise CertificateError(f"the verifier key given: {exc}") from None
    if certificate.vkey != vkey:
        raise CertificateError(
            f"certificate: names the registry verifier key {clip(certificate.vkey)!r}, but it is being verified "
            f"with {vkey!r}: it comes from another registry, or the key given is wrong"
        )
    try:
        signed = open_checkpoint(_utf8(certificate.checkpoint, "checkpoint"), verifier, origin=certificate.origin)
    except NoteError as exc:
        raise CertificateError(f"checkpoint: {exc}") from None
    size, root = signed.checkpoint.size, signed.checkpoint.root_hash
    # (3) inclusion
    for item, leaf, proof in zip(certificate.entries, leaves, proofs, strict=True):
        try:
            verify_inclusion(leaf=leaf_hash(leaf), index=item.index, size=size, proof=proof, root=root)
        except ProofError as exc:
            raise CertificateError(f"entry {item.index} ({item.role}): not in the checkpoint's tree: {exc}") from None
    # (4) entries and signatures
    log = _Log(
        {
            item.index: _check_entry(item, leaf, certificate.origin)
            for item, leaf in zip(certificate.entries, leaves, strict=True)
        }
    )
    # (5) key provenance, from the genesis
    needs = _check_provenance(log, vkey)
    # (6) the statement
    limits = [LIMIT_IDS, LIMIT_LATER, LIMIT_DOUBLE]
    statement = certificate.statement
    if isinstance(statement, RetirementStatement):
        _check_retirement_statement(log, statement, limits)
    else:
        _check_claim_statement(log, statement, limits)
    _check_all_needed(log, needs)
    limits.append(LIMIT_CHECKPOINT)
    return VerifiedCertificate(
        kind=certificate.kind,
        id=certificate.id,
        origin=certificate.origin,
        checkpoint_size=size,
        root_hash=root,
        key_id=f"{verifier.name}+{verifier.key_id.hex()}",
        statement=statement,
        entries=tuple(item.index for item in certificate.entries),
        limits=tuple(limits),
        proven=_proven(statement, size, f"{verifier.name}+{verifier.key_id.hex()}"),
    )


def _proven(statement: RetirementStatement | ClaimStatement, size: int, key: str) -> tuple[str, ...]:
    """What a verified statement proves, field by field, in words (after step 6 passed)."""
    lines = [f"every entry named below is in the tree of size {size} signed by {key}, by its inclusion proof"]
    if isinstance(statement, ClaimStatement):
        event = statement.event
        lines += [
            f"claim {statement.id}: its event {event.id}, organiser {event.organiser} and time, from entry "
            f"{statement.entry}, signed by the organiser",
            f"event {event.id}: name, kind, venue, start and end dates, expected attendees and organiser, from its "
            f"registration at entry {event.entry}, which the claim's signed event_entry names",
            f"footprint: {statement.footprint_kg} kgCO2e and its sources, from the final declaration at entry "
            f"{statement.footprint_entry}, signed by the organiser",
            f"coverage: {statement.units} units in blocks {clip(', '.join(statement.blocks))}, retired by the "
            f"organiser for event {event.id} before the claim, cover ceil({statement.footprint_kg} / "
            f"{UNITS_PER_CDCER_KG}) units",
        ]
        retirements: Sequence[RetirementFacts] = statement.retirements
    else:
        retirements = (statement,)
    for r in retirements:
        lines.append(
            f"retirement {r.id}: holder {r.holder}, quantity, beneficiary, purpose, event, year, reason and time, "
            f"from entry {r.entry}, signed by the holder"
        )
    for b in statement.batches:
        lines.append(
            f"batch {b.id}: project {b.project}, vintage {b.vintage} and {b.quantity} units, from its report (entry "
            f"{b.report_entry}), its verification by the engaged verifier (entry {b.verification_entry}) and its "
            f"issuance by an authority (entry {b.issuance_entry})"
        )
    return tuple(lines)


def _decode_entries(entries: Sequence[CertificateEntry]) -> tuple[list[bytes], list[list[bytes]]]:
    """(1) the base64 of every leaf and proof hash, and the order of the entries."""
    leaves: list[bytes] = []
    proofs: list[list[bytes]] = []
    previous = -1
    for position, item in enumerate(entries):
        if item.index <= previous:
            raise CertificateError(
                f"certificate: entries[{position}] is entry {item.index}, after entry {previous}: "
                "entries must be in increasing index order, each once"
            )
        previous = item.index
        try:
            leaves.append(b64decode(item.leaf, what=f"certificate: entries[{position}].leaf"))
            proofs.append(
                [
                    b64decode(h, what=f"certificate: entries[{position}].inclusion_proof[{n}]", size=32)
                    for n, h in enumerate(item.inclusion_proof)
                ]
            )
        except EncodingError as exc:
            raise CertificateError(str(exc)) from None
    return leaves, proofs


def _check_entry(item: CertificateEntry, leaf: bytes, origin: str) -> _Item:
    """(4) one entry: it decodes, is for this origin, is signed by the key it carries, and has its role."""
    what = f"entry {item.index} ({item.role})"
    try:
        entry = decode_entry(leaf, index=item.index)
        body = entry.body()
    except EncodingError as exc:
        raise CertificateError(f"{what}: {str(exc).removeprefix(f'entry {item.index}: ')}") from None
    if body.origin != origin:
        raise CertificateError(f"{what}: transaction is for registry {clip(body.origin)!r}, expected {origin!r}")
    expected_role = ENTRY_ROLES.get(body.kind)
    if expected_role is None:
        raise CertificateError(f"{what}: transactions of kind {body.kind} have no place in a certificate")
    if expected_role != item.role:
        raise CertificateError(f"{what}: is a transaction of kind {body.kind}, whose role is {expected_role!r}")
    key = PublicKey(entry.public_key)
    if key.key_id != body.key_id:
        raise CertificateError(f"{what}: transaction names key {body.key_id}, but the entry carries key {key.key_id}")
    try:
        key.verify(entry.signing_message(), entry.signature)
    except SignatureError as exc:
        raise CertificateError(f"{what}: {exc}") from None
    return _Item(item.index, item.role, entry, body)


def _introduced_keys(body: TransactionBody) -> tuple[str, list[bytes]] | None:
    """The participant and the public keys an entry introduces, if it introduces any."""
    p = body.payload
    if isinstance(p, RegistryGenesis):
        texts, participant = [p.authority_public_key], body.actor
    elif isinstance(p, ParticipantRegister):
        texts, participant = list(p.public_keys), p.participant_id
    elif isinstance(p, KeyAdd):
        texts, participant = [p.public_key], p.participant_id
    elif isinstance(p, KeyRotate):
        texts, participant = [p.new_public_key], p.participant_id
    else:
        return None
    # Compare raw keys: a base64 text may spell one key in more than one way (its padding bits).
    keys = []
    for text in texts:
        try:
            keys.append(b64decode(text, what="public key", size=32))
        except EncodingError:
            continue
    return participant, keys


def _roles_set(body: TransactionBody) -> tuple[str, tuple[str, ...]] | None:
    """The participant and the roles an entry gives it, if it sets anyone's roles."""
    p = body.payload
    if isinstance(p, ParticipantRegister | ParticipantSetRoles):
        return p.participant_id, tuple(role.value for role in p.roles)
    return None


def _check_provenance(log: _Log, vkey: str) -> dict[int, list[int]]:
    """(5) every signer's key and authority, proven by earlier included entries; returns what each entry needs."""
    genesis = log.items.get(0)
    if genesis is None:
        raise CertificateError(
            "certificate: does not include entry 0, the registry's genesis, where trust in every key starts"
        )
    payload = genesis.body.payload
    if not isinstance(payload, RegistryGenesis):
        raise CertificateError(f"entry 0 ({genesis.role}): is of kind {genesis.body.kind}, expected registry.genesis")
    if payload.registry_vkey != vkey:
        raise CertificateError(
            f"entry 0 (genesis): founds the registry with verifier key {clip(payload.registry_vkey)!r}, "
            f"expected the given {vkey!r}"
        )
    genesis_actor = genesis.body.actor
    introductions: dict[tuple[str, bytes], list[int]] = {}
    grants: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
    for index in sorted(log.items):
        body = log.items[index].body
        introduced = _introduced_keys(body)
        if introduced is not None:
            for key in introduced[1]:
                introductions.setdefault((introduced[0], key), []).append(index)
        roles = _roles_set(body)
        if roles is not None:
            grants.setdefault(roles[0], []).append((index, roles[1]))
    if 0 not in introductions.get((genesis_actor, genesis.entry.public_key), []):
        raise CertificateError("entry 0 (genesis): is not signed by the authority key it introduces")
    needs: dict[int, list[int]] = {0: []}
    for index in sorted(log.items):
        if index == 0:
            continue
        item = log.items[index]
        actor = item.body.actor
        what = f"entry {index} ({item.role})"
        if isinstance(item.body.payload, RegistryGenesis):
            raise CertificateError(f"{what}: a registry.genesis is only valid as entry 0")
        earlier = introductions.get((actor, item.entry.public_key), [])
        position = bisect.bisect_left(earlier, index)
        if position == 0:
            raise CertificateError(
                f"{what}: signed with key {item.body.key_id} of {actor}, which no earlier entry in the certificate "
                "introduces (participant.register, key.add or key.rotate)"
            )
        needs[index] = [earlier[position - 1]]
        if item.body.kind in AUTHORITY_KINDS and actor != genesis_actor:
            history = grants.get(actor, [])
            position = bisect.bisect_left(history, (index,))
            if position == 0:
                raise CertificateError(
                    f"{what}: {item.body.kind} must be signed by an authority, but no earlier entry in the "
                    f"certificate gives {actor} any role"
                )
            grant, granted = history[position - 1]
            if Role.AUTHORITY.value not in granted:
                raise CertificateError(
                    f"{what}: {item.body.kind} must be signed by an authority, but {actor} is not one: "
                    f"entry {grant} gives it the roles {', '.join(granted)}"
                )
            needs[index].append(grant)
    return needs


def _check_all_needed(log: _Log, needs: Mapping[int, list[int]]) -> None:
    """(6) every included entry is used by the statement or by the provenance of one that is."""
    reached = {0} | log.used
    pending = list(reached)
    while pending:
        for dependency in needs.get(pending.pop(), []):
            if dependency not in reached:
                reached.add(dependency)
                pending.append(dependency)
    for index in sorted(log.items):
        if index not in reached:
            raise CertificateError(
                f"entry {index} ({log.items[index].role}): is in the certificate, but neither the statement nor "
                "any signer's key provenance rests on it"
            )


def _agree(what: str, stated: object, signed: object, index: int) -> None:
    if stated != signed:
        raise CertificateError(
            f"statement: {what} is {clip(repr(stated))}, but entry {index} signed {clip(repr(signed))}"
        )


def _block(text: str, what: str) -> SerialRange:
    try:
        return parse_block(text)
    except EncodingError as exc:
        raise CertificateError(f"statement: {what}: {exc}") from None


def _check_retirement_statement(log: _Log, statement: RetirementStatement, limits: list[str]) -> None:
    batches = _check_batches(log, statement.batches)
    used = _check_retirement(log, statement, batches, limits)
    _check_batches_used(statement.batches, used)


def _check_retirement(
    log: _Log, facts: RetirementFacts, batches: Mapping[str, BatchStatement], limits: list[str]
) -> set[str]:
    """One retirement against its signed units.retire entry; returns the batch ids its blocks use."""
    what = f"retirement {facts.id}"
    item = log.take(facts.entry, "units.retire", what)
    p = item.body.payload
    assert isinstance(p, Retire)
    index = facts.entry
    _agree(f"{what}: holder", facts.holder, item.body.actor, index)
    _agree(f"{what}: beneficiary", facts.beneficiary, p.beneficiary, index)
    _agree(f"{what}: purpose", facts.purpose, p.purpose.value, index)
    _agree(f"{what}: event_id", facts.event_id, p.event_id, index)
    _agree(f"{what}: year", facts.year, p.year, index)
    _agree(f"{what}: reason", facts.reason, p.reason, index)
    _agree(f"{what}: time", facts.time, format_utc(item.entry.accepted_at), index)
    ranges = sorted(_block(text, f"{what}: block") for text in facts.blocks)
    if not ranges:
        raise CertificateError(f"statement: {what} lists no serial blocks")
    for before, after in itertools.pairwise(ranges):
        if before.overlaps(after):
            raise CertificateError(f"statement: {what}: blocks {before} and {after} overlap")
    total = sum(rng.quantity for rng in ranges)
    if total != facts.quantity:
        raise CertificateError(
            f"statement: {what}: its blocks hold {total} units, but its quantity is {facts.quantity}"
        )
    if p.selection.quantity is not None:
        _agree(f"{what}: quantity", facts.quantity, p.selection.quantity, index)
        limits.append(_limit_by_quantity(facts.id))
    else:
        assert p.selection.blocks is not None
        try:
            signed = sorted(parse_block(text) for text in p.selection.blocks)
        except EncodingError as exc:
            raise CertificateError(f"entry {index} (retirement): {exc}") from None
        if signed != ranges:
            _agree(f"{what}: blocks", [str(r) for r in ranges], [str(r) for r in signed], index)
    used = set()
    for rng in ranges:
        batch = batches.get(rng.batch_id)
        if batch is None:
            raise CertificateError(
                f"statement: {what}: block {rng} comes from batch {rng.batch_id}, which the statement's batches "
                "do not list"
            )
        if rng.last > batch.quantity:
            raise CertificateError(
                f"statement: {what}: block {rng} ends at serial {rng.last}, but batch {batch.id} issued only "
                f"{batch.quantity} units"
            )
        if batch.issuance_entry >= index:
            raise CertificateError(
                f"statement: {what} (entry {index}) retires units of batch {batch.id}, issued later at entry "
                f"{batch.issuance_entry}"
            )
        used.add(batch.id)
    return used


def _check_batches(log: _Log, batches: Sequence[BatchStatement]) -> dict[str, BatchStatement]:
    """Each batch against its report, verification and issuance entries."""
    found: dict[str, BatchStatement] = {}
    for batch in batches:
        what = f"batch {batch.id}"
        if batch.id in found:
            raise CertificateError(f"statement: {what} is listed twice")
        prefix = f"{batch.project}-{batch.vintage:04d}-"
        if not batch.id.startswith(prefix) or not batch.id[len(prefix) :].isdigit():
            raise CertificateError(
                f"statement: {what}: a batch of project {batch.project}, vintage {batch.vintage} is named "
                f"{prefix}<number>"
            )
        issued = log.take(batch.issuance_entry, "issuance.issue", f"issuance of {what}").body.payload
        assert isinstance(issued, Issue)
        _agree(f"{what}: report", batch.report, issued.report_id, batch.issuance_entry)
        verification = log.take(batch.verification_entry, "report.verify", f"verification of {what}")
        verified = verification.body.payload
        assert isinstance(verified, ReportVerify)
        _agree(f"{what}: report", batch.report, verified.report_id, batch.verification_entry)
        _agree(f"{what}: quantity", batch.quantity, verified.verified, batch.verification_entry)
        report = log.take(batch.report_entry, "report.submit", f"report of {what}")
        submitted = report.body.payload
        assert isinstance(submitted, ReportSubmit)
        _agree(f"{what}: project", batch.project, submitted.project_id, batch.report_entry)
        _agree(f"{what}: vintage", batch.vintage, submitted.period_end.year, batch.report_entry)
        if verification.body.actor != submitted.verifier:
            raise CertificateError(
                f"entry {batch.verification_entry} (verification): {what}'s report was verified by "
                f"{verification.body.actor}, but its report (entry {batch.report_entry}) engaged {submitted.verifier}"
            )
        if submitted.period_end >= report.entry.accepted_at.date():
            raise CertificateError(
                f"entry {batch.report_entry} (report): {what}'s monitoring period ends {submitted.period_end}, "
                f"not before the report was accepted on {report.entry.accepted_at.date()}"
            )
        if not batch.report_entry < batch.verification_entry < batch.issuance_entry:
            raise CertificateError(
                f"statement: {what}: report (entry {batch.report_entry}), verification (entry "
                f"{batch.verification_entry}) and issuance (entry {batch.issuance_entry}) are out of order"
            )
        found[batch.id] = batch
    return found


def _check_batches_used(batches: Sequence[BatchStatement], used: set[str]) -> None:
    for batch in batches:
        if batch.id not in used:
            raise CertificateError(f"statement: batch {batch.id} is listed, but none of the retired blocks is from it")


def _check_claim_statement(log: _Log, statement: ClaimStatement, limits: list[str]) -> None:
    what = f"claim {statement.id}"
    event = statement.event
    organiser = event.organiser
    # The claim itself.
    claim = log.take(statement.entry, "claim.issue", what)
    payload = claim.body.payload
    assert isinstance(payload, ClaimIssue)
    _agree(f"{what}: event", event.id, payload.event_id, statement.entry)
    _agree(f"{what}: event registration entry", event.entry, payload.event_entry, statement.entry)
    _agree(f"{what}: organiser", organiser, claim.body.actor, statement.entry)
    _agree(f"{what}: time", statement.time, format_utc(claim.entry.accepted_at), statement.entry)
    # The event, as registered.
    registered = log.take(event.entry, "event.register", f"registration of event {event.id}")
    reg = registered.body.payload
    assert isinstance(reg, EventRegister)
    for name, signed in (
        ("organiser", registered.body.actor),
        ("name", reg.name),
        ("kind", reg.event_kind.value),
        ("venue", reg.venue),
        ("start_date", reg.start_date.isoformat()),
        ("end_date", reg.end_date.isoformat()),
        ("expected_attendees", reg.expected_attendees),
    ):
        _agree(f"event {event.id}: {name}", getattr(event, name), signed, event.entry)
    # The final footprint, as declared.
    declared = log.take(statement.footprint_entry, "event.footprint", f"final footprint of event {event.id}")
    fp = declared.body.payload
    assert isinstance(fp, EventFootprint)
    where = statement.footprint_entry
    _agree(f"footprint of event {event.id}: event", event.id, fp.event_id, where)
    if fp.stage is not FootprintStage.FINAL:
        raise CertificateError(
            f"statement: entry {where} declares the {fp.stage.value} footprint of event {event.id}; "
            "a claim rests on the final one"
        )
    _agree(f"footprint of event {event.id}: organiser", organiser, declared.body.actor, where)
    sources = {source.value: kg for source, kg in sorted(fp.sources.items())}
    _agree(f"{what}: footprint by source", dict(sorted(statement.footprint.items())), sources, where)
    _agree(f"{what}: footprint_kg", statement.footprint_kg, sum(sources.values()), where)
    if statement.footprint_kg == 0:
        raise CertificateError(f"statement: {what}: a footprint of 0 kgCO2e leaves nothing to neutralise")
    if not event.entry < statement.footprint_entry < statement.entry:
        raise CertificateError(
            f"statement: {what}: event registration (entry {event.entry}), final footprint (entry "
            f"{statement.footprint_entry}) and claim (entry {statement.entry}) are out of order"
        )
    # The retirements that back it.
    batches = _check_batches(log, statement.batches)
    used: set[str] = set()
    seen: set[str | int] = set()
    for facts in statement.retirements:
        if facts.id in seen or facts.entry in seen:
            raise CertificateError(f"statement: {what}: retirement {facts.id} (entry {facts.entry}) is listed twice")
        seen |= {facts.id, facts.entry}
        used |= _check_retirement(log, facts, batches, limits)
        rwhat = f"{what}: retirement {facts.id}"
        if facts.purpose != "event" or facts.event_id != event.id:
            raise CertificateError(
                f"statement: {rwhat} is for purpose {facts.purpose!r} (event {facts.event_id}); a claim rests only "
                f"on retirements for its event ({event.id})"
            )
        if facts.holder != organiser:
            raise CertificateError(
                f"statement: {rwhat} was made by {facts.holder}, not by the event's organiser {organiser}"
            )
        if facts.entry >= statement.entry:
            raise CertificateError(
                f"statement: {rwhat} (entry {facts.entry}) comes after the claim (entry {statement.entry})"
            )
    _check_batches_used(statement.batches, used)
    units = sum(r.quantity for r in statement.retirements)
    if statement.units != units:
        raise CertificateError(f"statement: {what}: units is {statement.units}, but its retirements retire {units}")
    blocks = tuple(block for r in statement.retirements for block in r.blocks)
    if statement.blocks != blocks:
        raise CertificateError(
            f"statement: {what}: blocks {clip(repr(list(statement.blocks)))} are not its retirements' blocks "
            f"{clip(repr(list(blocks)))}"
        )
    needed = -(-statement.footprint_kg // UNITS_PER_CDCER_KG)
    if units < needed:
        raise CertificateError(
            f"statement: {what}: a footprint of {statement.footprint_kg} kgCO2e needs {needed} retired units "
            f"(1 CDCER = {UNITS_PER_CDCER_KG} kgCO2e); its retirements retire {units}"
        )
    limits.append(LIMIT_FOOTPRINT)


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CertificateError(f"{what}: not encodable as UTF-8 ({exc.reason} at {exc.start})") from None
