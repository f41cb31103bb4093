"""The write path's rules at the HTTP edge: read a signed transaction, append it, report its fate."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from ledger.errors import EncodingError, IntegrityError, RuleViolation, StorageError
from ledger.ledger import Receipt
from ledger.transactions import SignedTransaction
from registry.errors import BadRequest, RegistryError, ServiceUnavailable
from registry.transactions.errors import TransactionRefused
from registry.transactions.sequencer import Sequencer, SequencerClosed


class ContentTooLarge(RegistryError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, "Content too large", f"the request body is over the limit of {limit} bytes", "content-too-large"
        )


class InvalidTransaction(RegistryError):
    def __init__(self, detail: str) -> None:
        super().__init__(422, "Invalid request", detail, "invalid-transaction")


async def read_body(chunks: AsyncIterator[bytes], *, declared_length: str | None, limit: int) -> bytes:
    """The request body, refusing (413) one over `limit` bytes without reading all of it."""
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise ContentTooLarge(limit)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise ContentTooLarge(limit)
    return bytes(body)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"duplicate key {key!r}")
        found[key] = value
    return found


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_signed_transaction(raw: bytes) -> SignedTransaction:
    """The signed transaction in a request body: malformed JSON is a 400, a malformed transaction a 422."""
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        detail = f"the request body is not UTF-8 ({exc.reason} at byte {exc.start})"
        raise BadRequest(detail, "malformed-json") from None
    except RecursionError:
        raise BadRequest("the request body is JSON nested too deeply", "malformed-json") from None
    except ValueError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}", "malformed-json") from None
    try:
        return SignedTransaction.from_json(value)
    except EncodingError as exc:
        raise InvalidTransaction(str(exc)) from None


async def append(sequencer: Sequencer, tx: SignedTransaction) -> Receipt:
    """Append `tx` through the sequencer's next batch: its receipt, or the refusal as a problem."""
    try:
        result = await asyncio.wrap_future(sequencer.submit(tx))
    except SequencerClosed as exc:
        raise ServiceUnavailable(str(exc), "shutting-down") from None
    except StorageError as exc:
        raise ServiceUnavailable(f"the transaction was not appended: {exc}", "storage-unavailable") from None
    except IntegrityError as exc:
        raise ServiceUnavailable(f"the transaction was not appended: {exc}", "integrity-check-failed") from None
    if isinstance(result, RuleViolation):
        raise TransactionRefused(result)
    return result
