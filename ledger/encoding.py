"""Small, strict encoders shared by the trust core: base64, hex and canonical JSON (RFC 8785)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import rfc8785

from ledger.errors import EncodingError


def b64encode(data: bytes) -> str:
    """Standard base64 with padding, as used by C2SP notes and the HTTP API."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, *, what: str = "value", size: int | None = None) -> bytes:
    """Decode strict standard base64; refuse other alphabets, missing padding and wrong lengths."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise EncodingError(f"{what}: not valid base64 ({exc})") from None
    if size is not None and len(data) != size:
        raise EncodingError(f"{what}: expected {size} bytes, found {len(data)}")
    return data


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 (JCS) canonical bytes of a JSON value."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise EncodingError(f"cannot canonicalize JSON: {exc}") from None


def parse_canonical_json(data: bytes, *, what: str = "document") -> Any:
    """Parse JSON bytes and require that they are exactly their own canonical form.

    Requiring canonical bytes means one value has one encoding, so a signature or hash over the
    bytes is a signature or hash over the value.
    """
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise EncodingError(f"{what}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except (json.JSONDecodeError, ValueError) as exc:
        raise EncodingError(f"{what}: not valid JSON ({exc})") from None
    if canonical_json(value) != data:
        raise EncodingError(f"{what}: JSON is not in RFC 8785 canonical form")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
