"""Participants, their keys and roles, and the witnesses: the registry's founding and its membership.

The genesis (entry 0) founds the registry with its first authority; the authority registers participants
with their public keys and roles, suspends and reinstates them, adds, revokes and rotates keys (a
participant may also revoke its own), and registers the witnesses that cosign checkpoints. The registry
always keeps at least one active authority with a live key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from pydantic import BaseModel

from ledger.checkpoint import CosignatureVerifier
from ledger.errors import EncodingError, NoteError
from ledger.keys import PublicKey
from ledger.note import NoteVerifier
from ledger.state.context import Context, fail, participant
from ledger.state.outcomes import (
    KeyAdded,
    KeyRevoked,
    KeyRotated,
    Outcome,
    ParticipantChanged,
    ParticipantRegistered,
    RolesSet,
    WitnessChanged,
)
from ledger.state.records import Key, Participant, Witness
from ledger.state.spec import KindSpec
from ledger.transactions import (
    KeyAdd,
    KeyRevoke,
    KeyRotate,
    ParticipantRegister,
    ParticipantReinstate,
    ParticipantSetRoles,
    ParticipantSuspend,
    RegistryGenesis,
    Role,
    WitnessRegister,
    WitnessRemove,
)

AUTHORITY = frozenset({Role.AUTHORITY})


def _public_key(text: str) -> PublicKey:
    try:
        return PublicKey.from_b64(text)
    except EncodingError as exc:
        raise fail("invalid_key", f"public key: {exc}") from None


def _new_key(ctx: Context, pid: str, text: str, seen: set[str]) -> Key:
    key = _public_key(text)
    if key.key_id in ctx.state.keys or key.key_id in seen:
        raise fail("duplicate_key", f"key {key.key_id} is already registered")
    seen.add(key.key_id)
    return Key(key.key_id, pid, key.b64(), ctx.index, None)


def _genesis(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, RegistryGenesis)
    _check_vkey(p.registry_vkey)
    ctx.put(Participant(ctx.actor, p.authority_name, (Role.AUTHORITY.value,), "active", False, ctx.index))
    ctx.put(_new_key(ctx, ctx.actor, p.authority_public_key, set()))
    return ParticipantChanged(p.kind, ctx.actor)


def _check_vkey(vkey: str, *, witness: bool = False) -> str:
    """Parse a verifier key (the log's Ed25519 key, or a witness's cosignature key); return its name."""
    try:
        verifier = CosignatureVerifier.from_vkey(vkey) if witness else NoteVerifier.from_vkey(vkey)
    except NoteError as exc:
        raise fail("invalid_key", str(exc)) from None
    return verifier.name


def _participant_register(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ParticipantRegister)
    if p.participant_id in ctx.state.participants:
        raise fail("conflict", f"participant {p.participant_id} is already registered")
    roles = tuple(sorted({r.value for r in p.roles}))
    ctx.put(Participant(p.participant_id, p.name, roles, "active", False, ctx.index))
    seen: set[str] = set()
    key_ids = []
    for text in p.public_keys:
        key = _new_key(ctx, p.participant_id, text, seen)
        key_ids.append(key.key_id)
        ctx.put(key)
    return ParticipantRegistered(p.kind, p.participant_id, tuple(key_ids))


def _participant_set_roles(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ParticipantSetRoles)
    part = participant(ctx, p.participant_id)
    roles = tuple(sorted({r.value for r in p.roles}))
    if Role.AUTHORITY.value in part.roles and Role.AUTHORITY.value not in roles:
        _require_other_authority(ctx, p.participant_id)
    ctx.put(replace(part, roles=roles))
    return RolesSet(p.kind, p.participant_id, tuple(roles))


def _require_other_authority(ctx: Context, pid: str) -> None:
    others = [
        q
        for q in ctx.state.participants.values()
        if q.id != pid and Role.AUTHORITY.value in q.roles and q.status == "active"
    ]
    if not others:
        raise fail("last_authority", f"{pid} is the last active authority; register another first")


def _participant_status(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ParticipantSuspend | ParticipantReinstate)
    part = participant(ctx, p.participant_id)
    suspend = isinstance(p, ParticipantSuspend)
    if suspend and part.status == "suspended":
        raise fail("invalid_state", f"participant {part.id} is already suspended")
    if not suspend and part.status == "active":
        raise fail("invalid_state", f"participant {part.id} is not suspended")
    if suspend and Role.AUTHORITY.value in part.roles:
        _require_other_authority(ctx, part.id)
    ctx.put(replace(part, status="suspended" if suspend else "active"))
    return ParticipantChanged(p.kind, part.id)


def _key_add(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, KeyAdd)
    participant(ctx, p.participant_id)
    key = _new_key(ctx, p.participant_id, p.public_key, set())
    ctx.put(key)
    return KeyAdded(p.kind, p.participant_id, key.key_id)


def _live_key(ctx: Context, pid: str, key_id: str) -> Key:
    participant(ctx, pid)
    key = ctx.state.keys.get(key_id)
    if key is None or key.participant_id != pid:
        raise fail("not_found", f"key {key_id} is not registered to {pid}")
    if key.revoked_at is not None:
        raise fail("invalid_state", f"key {key_id} was already revoked at entry {key.revoked_at}")
    return key


def _key_revoke(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, KeyRevoke)
    key = _live_key(ctx, p.participant_id, p.key_id)
    _require_other_live_key_if_authority(ctx, p.participant_id, p.key_id)
    ctx.put(replace(key, revoked_at=ctx.index))
    return KeyRevoked(p.kind, p.participant_id, key.key_id, ctx.index)


def _require_other_live_key_if_authority(ctx: Context, pid: str, key_id: str) -> None:
    part = ctx.state.participants[pid]
    if Role.AUTHORITY.value not in part.roles:
        return
    live = [k for k in ctx.state.keys.values() if k.revoked_at is None and k.key_id != key_id]
    authorities = {q.id for q in ctx.state.participants.values() if Role.AUTHORITY.value in q.roles}
    if not any(k.participant_id in authorities for k in live):
        raise fail("last_authority", f"key {key_id} is the authority's last valid key; add another first")


def _key_rotate(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, KeyRotate)
    old = _live_key(ctx, p.participant_id, p.old_key_id)
    new = _new_key(ctx, p.participant_id, p.new_public_key, set())
    ctx.put(new)
    ctx.put(replace(old, revoked_at=ctx.index))
    return KeyRotated(p.kind, p.participant_id, new.key_id, old.key_id)


def _witness_register(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, WitnessRegister)
    name = _check_vkey(p.vkey, witness=True)
    existing = ctx.state.witnesses.get(name)
    if existing is not None and existing.removed_at is None:
        raise fail("conflict", f"witness {name} is already registered")
    ctx.put(Witness(name, p.vkey, ctx.index, None))
    return WitnessChanged(p.kind, name)


def _witness_remove(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, WitnessRemove)
    existing = ctx.state.witnesses.get(p.name)
    if existing is None or existing.removed_at is not None:
        raise fail("not_found", f"no registered witness {p.name!r}")
    ctx.put(replace(existing, removed_at=ctx.index))
    return WitnessChanged(p.kind, p.name)


def _spec(
    payload: type[BaseModel], handler: Callable[[Context], Outcome], codes: str, role: str | None = None
) -> KindSpec:
    return KindSpec(payload, AUTHORITY, handler, frozenset(codes.split()), certificate_role=role)


SPECS = (
    _spec(RegistryGenesis, _genesis, "duplicate_key invalid_key", "genesis"),
    _spec(ParticipantRegister, _participant_register, "conflict duplicate_key invalid_key", "key"),
    _spec(ParticipantSetRoles, _participant_set_roles, "last_authority not_found", "role"),
    _spec(ParticipantSuspend, _participant_status, "invalid_state last_authority not_found"),
    _spec(ParticipantReinstate, _participant_status, "invalid_state last_authority not_found"),
    _spec(KeyAdd, _key_add, "duplicate_key invalid_key not_found", "key"),
    _spec(KeyRevoke, _key_revoke, "invalid_state last_authority not_found"),
    _spec(KeyRotate, _key_rotate, "duplicate_key invalid_key invalid_state not_found", "key"),
    _spec(WitnessRegister, _witness_register, "conflict invalid_key"),
    _spec(WitnessRemove, _witness_remove, "not_found"),
)
"""Every kind is the authority's to sign; a participant may also revoke its own key (`State.authorise`)."""
