"""Small, strict encoders shared by the trust core: base64, hex and canonical JSON (RFC 8785)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import rfc8785

from ledger.errors import EncodingError

# RFC 8785 serialises numbers as IEEE 754 doubles: integers beyond 2**53 - 1 cannot round-trip.
MAX_SAFE_INTEGER = 2**53 - 1


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
    """The RFC 8785 (JCS) canonical bytes of a JSON value.

    Values made only of strings, safe integers, booleans, null, lists and objects whose keys sort
    the same in UTF-16 and code-point order (all of this project's documents) take a fast path
    through the C encoder, whose output is then byte-identical to JCS; anything else goes through
    the reference implementation.
    """
    if _fast_path_ok(value):
        try:
            return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise EncodingError("cannot canonicalize JSON: string holds a lone surrogate") from None
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise EncodingError(f"cannot canonicalize JSON: {exc}") from None
    except RecursionError:
        # The reference encoder recurses once per level: a deep (or circular) value exhausts the stack.
        raise EncodingError("cannot canonicalize JSON: nested too deeply (or circular)") from None


def parse_canonical_json(data: bytes, *, what: str = "document") -> Any:
    """Parse JSON bytes and require that they are exactly their own canonical form.

    Requiring canonical bytes means one value has one encoding, so a signature or hash over the
    bytes is a signature or hash over the value. Floats, NaN and integers outside the safe range
    are refused.
    """
    try:
        value = json.loads(
            data.decode("utf-8"),
            parse_constant=_refuse_constant,
            parse_float=_refuse_float,
            parse_int=_safe_int,
        )
    except UnicodeDecodeError as exc:
        raise EncodingError(f"{what}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise EncodingError(f"{what}: JSON nested too deeply") from None
    except (json.JSONDecodeError, ValueError) as exc:
        raise EncodingError(f"{what}: not valid JSON ({exc})") from None
    if canonical_json(value) != data:
        raise EncodingError(f"{what}: JSON is not in RFC 8785 canonical form")
    return value


def loads_strict(data: bytes, *, what: str = "document") -> Any:
    """Parse JSON bytes, refusing invalid UTF-8, floats, NaN and integers outside the safe range."""
    try:
        return json.loads(
            data.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_refuse_float, parse_int=_safe_int
        )
    except UnicodeDecodeError as exc:
        raise EncodingError(f"{what}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise EncodingError(f"{what}: JSON nested too deeply") from None
    except (json.JSONDecodeError, ValueError) as exc:
        raise EncodingError(f"{what}: not valid JSON ({exc})") from None


def is_canonical(value: Any, data: bytes) -> bool:
    """Whether ``data`` is the canonical encoding of ``value``, a value parsed by `loads_strict`.

    Cheaper than `canonical_json` for parsed input: integers are already known to be safe, so only
    object keys outside the ASCII range need the careful path.
    """
    try:
        fast = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    if fast != data:
        return False
    return data.isascii() or _keys_sort_alike(value)


def _keys_sort_alike(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not key.isascii() and max(key) > "\ud7ff":
                    return False
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _fast_path_ok(value: Any, depth: int = 0) -> bool:
    if depth > 64:
        return False
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    if isinstance(value, list):
        return all(_fast_path_ok(item, depth + 1) for item in value)
    if isinstance(value, dict):
        # Code-point order equals UTF-16 order while no key holds a character above U+D7FF.
        return all(
            isinstance(key, str) and (key.isascii() or max(key) <= "\ud7ff") and _fast_path_ok(item, depth + 1)
            for key, item in value.items()
        )
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _refuse_float(text: str) -> Any:
    raise ValueError(f"non-integer number {text} is not allowed")


def _safe_int(text: str) -> int:
    number = int(text)
    if not -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
        raise ValueError(f"integer {text} is outside the safe range ±(2**53 - 1)")
    return number
