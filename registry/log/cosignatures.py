"""Witness cosignatures: which a registry accepts and keeps, to serve them with its checkpoints (SPEC 5).

A witness (https://c2sp.org/tlog-cosignature) that checked a checkpoint's consistency with the last one
it saw sends its ``cosignature/v1`` signature line. The registry keeps it only if

1. the line is a well-formed note signature line;
2. its key name is a witness the authority registered (``witness.register``) and has not removed, and
   its key id is that registration's key;
3. a checkpoint of the stated size was signed;
4. the signature verifies over that checkpoint's text;
5. that witness has not cosigned that size before (the first cosignature stays).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from ledger.checkpoint import CosignatureVerifier, add_cosignature, cosignature_timestamp
from ledger.errors import ConflictError, NoteError
from ledger.note import parse_signature_line
from ledger.state import Witness
from ledger.storage import store
from registry.errors import BadRequest, Forbidden, NotFound, RegistryError


class CosignatureConflict(RegistryError):
    def __init__(self, detail: str) -> None:
        super().__init__(409, "Conflict", detail, "already-cosigned")


@dataclass(frozen=True, slots=True)
class AcceptedCosignature:
    """A cosignature the registry stored: the checkpoint size, the witness and its timestamp."""

    size: int
    witness: str
    timestamp: int


def accept_cosignature(conn: Connection, *, size: int, line: str) -> AcceptedCosignature:
    """Check a witness's cosignature line of the checkpoint of `size` and store it (steps in the module doc)."""
    # (1) the line
    try:
        signature = parse_signature_line(line, what="cosignature line")
        timestamp = cosignature_timestamp(signature)
    except NoteError as exc:
        raise BadRequest(f"{exc}; send one line '— <witness name> <base64>'", "malformed-cosignature") from None
    # (2) a registered witness, with that key
    witness = store.get_record(conn, Witness, (signature.name,))
    if witness is None:
        raise Forbidden(
            f"{signature.name!r} is not a registered witness; the authority registers a witness's "
            "verifier key with a witness.register transaction",
            "unknown-witness",
        )
    if witness.removed_at is not None:
        raise Forbidden(
            f"witness {signature.name!r} was removed at entry {witness.removed_at}; it may no longer cosign",
            "unknown-witness",
        )
    verifier = CosignatureVerifier.from_vkey(witness.vkey)
    if signature.key_id != verifier.key_id:
        raise Forbidden(
            f"cosignature by {signature.key_label()}, but witness {verifier.name} is registered with key id "
            f"{verifier.key_id.hex()}",
            "unknown-witness",
        )
    # (3) a signed checkpoint of that size
    checkpoint = store.checkpoint_at(conn, size)
    if checkpoint is None:
        latest = store.latest_checkpoint(conn)
        current = "none yet" if latest is None else str(latest.size)
        raise NotFound(
            f"no checkpoint was signed at size {size}; cosign a signed checkpoint (the latest is {current})",
            "no-checkpoint-at-size",
        )
    # (4) the signature over it
    try:
        add_cosignature(checkpoint.note, signature, verifier)
    except NoteError as exc:
        raise Forbidden(f"{exc} (size {size}); cosign the checkpoint text exactly", "invalid-cosignature") from None
    # (5) once per witness and size
    try:
        store.insert_cosignature(conn, size, witness.name, signature.line(), timestamp)
    except ConflictError as exc:
        raise CosignatureConflict(f"{exc}; its first cosignature stands") from None
    return AcceptedCosignature(size=size, witness=witness.name, timestamp=timestamp)
