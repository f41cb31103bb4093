"""What an applied transaction did: one frozen type per kind of effect, for receipts and serial histories.

Every outcome names the kind it came from; its other fields are the ids it created and what it moved.
`Outcome.details` is the same as the receipt's JSON object (field names as receipts spell them, tuples as
lists), so HTTP clients see one shape whatever the kind. Outcomes that move units (`UnitsMoved`) also say
which serial blocks moved, from whom, to whom and under which record, which is all a serial's history
(`ledger.history`) needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one applied transaction did. Subclasses carry the kind's fields."""

    kind: str

    @property
    def details(self) -> dict[str, Any]:
        """The outcome's fields as the receipt's JSON object (without ``kind``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "kind":
                continue
            value = getattr(self, f.name)
            out[f.metadata.get("json", f.name)] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, slots=True)
class UnitsMoved(Outcome):
    """An outcome that moved serial blocks: the blocks, and (per subclass) their holders and record."""

    @property
    def blocks(self) -> tuple[str, ...]:
        """The serial blocks the entry moved (every subclass has this field)."""
        raise NotImplementedError(f"{type(self).__name__} must list the blocks it moved")

    def moved(self, actor: str) -> tuple[tuple[str, ...], str | None, str | None, str | None]:
        """(blocks, holder before, holder after, record id) of an entry signed by `actor`."""
        raise NotImplementedError(f"{type(self).__name__} must say what it moved")  # every subclass does


# --- participants, keys, witnesses ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParticipantChanged(Outcome):
    """The genesis founded the first authority, or a participant was suspended or reinstated."""

    participant_id: str


@dataclass(frozen=True, slots=True)
class ParticipantRegistered(Outcome):
    participant_id: str
    key_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RolesSet(Outcome):
    participant_id: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KeyAdded(Outcome):
    participant_id: str
    key_id: str


@dataclass(frozen=True, slots=True)
class KeyRevoked(Outcome):
    participant_id: str
    key_id: str
    revoked_at: int


@dataclass(frozen=True, slots=True)
class KeyRotated(Outcome):
    participant_id: str
    key_id: str
    revoked: str


@dataclass(frozen=True, slots=True)
class WitnessChanged(Outcome):
    witness: str


# --- methodologies, projects, reports -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MethodologyChanged(Outcome):
    code: str
    version: str


@dataclass(frozen=True, slots=True)
class ProjectSubmitted(Outcome):
    project_id: str


@dataclass(frozen=True, slots=True)
class ProjectValidated(Outcome):
    project_id: str
    opinion: str


@dataclass(frozen=True, slots=True)
class ProjectStateSet(Outcome):
    project_id: str
    state: str


@dataclass(frozen=True, slots=True)
class ProjectScoped(Outcome):
    project_id: str
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReportSubmitted(Outcome):
    report_id: str
    project_id: str
    verifier: str


@dataclass(frozen=True, slots=True)
class ReportVerified(Outcome):
    report_id: str
    verified: int


@dataclass(frozen=True, slots=True)
class ReportRejected(Outcome):
    report_id: str


# --- units ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issued(UnitsMoved):
    batch_id: str
    quantity: int
    holder: str
    blocks: tuple[str, ...]

    def moved(self, actor: str) -> tuple[tuple[str, ...], str | None, str | None, str | None]:
        return self.blocks, None, self.holder, self.batch_id


@dataclass(frozen=True, slots=True)
class Transferred(UnitsMoved):
    sender: str = field(metadata={"json": "from"})
    to: str
    quantity: int
    blocks: tuple[str, ...]

    def moved(self, actor: str) -> tuple[tuple[str, ...], str | None, str | None, str | None]:
        return self.blocks, self.sender, self.to, None


@dataclass(frozen=True, slots=True)
class Retired(UnitsMoved):
    retirement_id: str
    quantity: int
    blocks: tuple[str, ...]

    def moved(self, actor: str) -> tuple[tuple[str, ...], str | None, str | None, str | None]:
        return self.blocks, actor, None, self.retirement_id


@dataclass(frozen=True, slots=True)
class Cancelled(UnitsMoved):
    cancellation_id: str
    holder: str
    quantity: int
    blocks: tuple[str, ...]

    def moved(self, actor: str) -> tuple[tuple[str, ...], str | None, str | None, str | None]:
        return self.blocks, self.holder, None, self.cancellation_id


@dataclass(frozen=True, slots=True)
class FreezeSet(Outcome):
    target: str
    target_id: str
    frozen: bool


# --- events and claims ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRegistered(Outcome):
    event_id: str


@dataclass(frozen=True, slots=True)
class FootprintDeclared(Outcome):
    event_id: str
    stage: str
    total_kg: int


@dataclass(frozen=True, slots=True)
class Claimed(UnitsMoved):
    claim_id: str
    event_id: str
    units: int
    blocks: tuple[str, ...]

    def moved(self, actor: str) -> tuple[tuple[str, ...], str | None, str | None, str | None]:
        return self.blocks, actor, None, self.claim_id


# --- the public path: carbon points ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RulePublished(Outcome):
    rule_id: str
    version: int


@dataclass(frozen=True, slots=True)
class ProviderScoped(Outcome):
    provider: str
    rules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PointAccountOpened(Outcome):
    account_id: str


@dataclass(frozen=True, slots=True)
class ConsentSet(Outcome):
    account_id: str
    provider: str
    rule_id: str
    granted: bool
