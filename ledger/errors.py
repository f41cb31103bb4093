"""One error tree for the trust core.

Every failure that ledger code can raise on bad input is a `LedgerError`; low-level exceptions
(`nacl.exceptions.*`, `binascii.Error`, `ValueError`, `json.JSONDecodeError`) are translated at the
boundary into one of these, with a message that says what was expected and what was found.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error raised by `ledger/` on bad input or a failed check."""


class EncodingError(LedgerError):
    """Bytes or JSON that are not in the expected (canonical) form."""


class SignatureError(LedgerError):
    """A signature that does not verify, or a key that may not sign."""


class KeyFileError(LedgerError):
    """A key file that cannot be read, parsed or decrypted."""


class ProofError(LedgerError):
    """An inclusion or consistency proof that does not verify, or cannot be built."""


class NoteError(LedgerError):
    """A signed note, checkpoint, verifier key or cosignature that is malformed or does not verify."""


class RuleViolation(LedgerError):
    """A transaction refused by the state machine: a business rule or an invariant would break.

    `code` is a stable, machine-readable name of the rule (e.g. ``insufficient_units``) that the
    registry maps to its problem `type` and status.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class IntegrityError(LedgerError):
    """Stored ledger data that fails a check: the log was altered, truncated or forked."""

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message if index is None else f"entry {index}: {message}")
        self.index = index


class StorageError(LedgerError):
    """The database refused an operation or is not in the expected shape."""


class ConflictError(StorageError):
    """Another process changed the log first (e.g. a checkpoint of that size already exists)."""


class UploadOffsetError(ConflictError):
    """A chunk of a points batch's records sent at the wrong offset: `uploaded` records are already held."""

    def __init__(self, message: str, *, uploaded: int) -> None:
        super().__init__(message)
        self.uploaded = uploaded


class CertificateError(LedgerError):
    """A retirement or claim certificate that is malformed or does not verify offline."""
