"""Retirement and claim certificates: JSON proof bundles that verify offline (SPEC section 4).

A certificate carries the log entries a retirement or a carbon-neutral claim rests on, each entry's
RFC 9162 inclusion proof, the registry's signed checkpoint and a *statement* of the registry's facts.
Anyone holding the registry's verifier key can check it with nothing else: no database, no network.

The bundle (``format`` ``cdcer-certificate/1``; the builder writes RFC 8785 canonical JSON, the
verifier accepts any JSON with exactly these fields)::

    {"format": "cdcer-certificate/1", "kind": "retirement" | "claim", "id": "RT000001",
     "origin": "<log origin>", "vkey": "<registry verifier key, informational>",
     "checkpoint": "<signed checkpoint note, latest at build time, with its cosignatures>",
     "entries": [{"index": i, "role": "retirement", "leaf": "<base64 entry bytes>",
                  "inclusion_proof": ["<base64 hash>", ...]}, ...],
     "statement": {...}}

The entries, in index order, each once: the retirement (or the claim, the event's registration, its
final footprint declaration and every retirement the claim lists); for every batch the retired
serials come from, its report, the report's verification and the issuance; and the provenance of
every signer: the entry that introduced the signing key for its actor (``participant.register``,
``key.add``, ``key.rotate``), and for a transaction only an authority may sign, the entry that gave its
signer the authority role, each in turn proven the same way down to entry 0, the genesis, which names
the registry's verifier key and the first authority key. Nothing else: every entry must be needed.

`verify_certificate` checks, and raises `CertificateError` at the first failure:

1. shape: JSON with exactly the fields above, typed, base64 that decodes, entries in index order;
2. the checkpoint verifies with the *given* verifier key (not the bundle's) and names the bundle's origin;
3. every entry's leaf hash is in the checkpoint's tree by its inclusion proof (RFC 9162);
4. every entry decodes, its transaction is for the origin, carries the key id of the key in the entry,
   the signature verifies with that key, and its role matches its kind;
5. every signing key was introduced for its actor by an earlier included entry, every transaction that
   needs an authority was signed by an actor an earlier included entry made an authority (or by the
   genesis authority), and the genesis names the given verifier key;
6. the statement agrees with the signed transactions (actors; the event, bound to its registration entry
   by the claim's signed ``event_entry``; purposes; beneficiaries; the final footprint by source, never 0;
   retired quantities, each retirement for the event made by its organiser; blocks inside batches issued
   before the retirement, each batch's report verified by the verifier that report engaged, over a
   monitoring period that ended before the report; units covering ``ceil(footprint_kg / 1000)``), and
   every included entry is needed by it.

`VerifiedCertificate.proven` says in words which statement fields that proves, and from which entries.

What an offline check cannot prove, `VerifiedCertificate.limits` says in words: which serials a
retirement *by quantity* took (the oldest held first) is decided by replaying the whole log; so are the
numbering of record ids (their form is checked, their number is not), the absence of a revocation,
suspension or role change between the entries shown, that the holder held the serials it retired and
that no serial was retired twice, and (for a claim) that the footprint entry is the event's last final
declaration. The full audit (``cdcer audit verify``) covers all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ledger.certificate.format import (
    CERTIFICATE_FORMAT,
    ENTRY_ROLES,
    MAX_CERTIFICATE_BYTES,
    BatchStatement,
    Certificate,
    CertificateEntry,
    CertificateKind,
    ClaimCertificate,
    ClaimStatement,
    EventStatement,
    RetirementCertificate,
    RetirementFacts,
    RetirementStatement,
    parse_certificate,
)
from ledger.certificate.verify import (
    LIMIT_CHECKPOINT,
    LIMIT_DOUBLE,
    LIMIT_FOOTPRINT,
    LIMIT_IDS,
    LIMIT_LATER,
    VerifiedCertificate,
    verify_certificate,
)

if TYPE_CHECKING:
    from ledger.certificate.build import build_certificate


def __getattr__(name: str) -> Any:
    # The builder reads the database (SQLAlchemy); it is imported on first use, so a verifier that imports
    # this package (an auditor's offline tool) never loads storage code.
    if name == "build_certificate":
        from ledger.certificate.build import build_certificate

        return build_certificate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CERTIFICATE_FORMAT",
    "ENTRY_ROLES",
    "LIMIT_CHECKPOINT",
    "LIMIT_DOUBLE",
    "LIMIT_FOOTPRINT",
    "LIMIT_IDS",
    "LIMIT_LATER",
    "MAX_CERTIFICATE_BYTES",
    "BatchStatement",
    "Certificate",
    "CertificateEntry",
    "CertificateKind",
    "ClaimCertificate",
    "ClaimStatement",
    "EventStatement",
    "RetirementCertificate",
    "RetirementFacts",
    "RetirementStatement",
    "VerifiedCertificate",
    "build_certificate",
    "parse_certificate",
    "verify_certificate",
]
