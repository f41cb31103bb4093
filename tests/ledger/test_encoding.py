"""ledger.encoding: strict base64 and RFC 8785 canonical JSON.

The fast path of `canonical_json` (the C encoder) is checked byte for byte against the reference
`rfc8785` implementation on arbitrary JSON values, including non-ASCII, control and astral
characters in keys and values; every way a document can fail to be canonical is refused with a
message that says so.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.encoding import MAX_SAFE_INTEGER, b64decode, b64encode, canonical_json, parse_canonical_json
from ledger.errors import EncodingError

# --- strategies ---------------------------------------------------------------------------------

# Characters that stress JCS: C0 controls (escaped, some in short form), quote and backslash,
# DEL and U+2028 (not escaped), the last BMP character before the surrogates, private-use and
# other characters above them, and astral characters (UTF-16 surrogate pairs), e.g. emoji.
_TRICKY = '\x00\x01\x08\t\n\x0b\x0c\r\x1f "\\/\x7f\x80\u00e9\u2028\u20ac\ud7ff\ue000\ufb33\uffff'
_ASTRAL = "\U00010000\U0001f600\U0001f9ea\U0010ffff"

_characters = st.one_of(
    st.characters(codec="utf-8"),  # any code point that UTF-8 can hold (no lone surrogates)
    st.characters(max_codepoint=0x1F),
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF, codec="utf-8"),
    st.sampled_from(_TRICKY + _ASTRAL),
)
_texts = st.text(_characters, max_size=12)
_safe_ints = st.one_of(
    st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
    st.sampled_from([0, 1, -1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 2**31, -(2**31), 2**32]),
)
_scalars = st.one_of(st.none(), st.booleans(), _safe_ints, _texts)
json_values: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(_texts, children, max_size=8),
    ),
    max_leaves=40,
)


def _nested_lists(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _nested_objects(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = {"a": value}
    return value


# --- base64 -------------------------------------------------------------------------------------


@given(st.binary(max_size=200))
def test_b64_round_trip(data: bytes) -> None:
    text = b64encode(data)
    assert text == base64.b64encode(data).decode("ascii")
    assert b64decode(text) == data
    assert b64decode(text, size=len(data)) == data


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("AAA", "value: not valid base64 .*padding"),
        ("AA", "value: not valid base64 .*padding"),
        ("A", "value: not valid base64"),
        ("-_-_", "value: not valid base64 .*Only base64 data"),  # URL-safe alphabet
        ("AAAA\n", "value: not valid base64 .*Only base64 data"),
        (" AAAA", "value: not valid base64 .*Only base64 data"),
        ("AA AA", "value: not valid base64 .*Only base64 data"),
        ("AA==AA==", "value: not valid base64 .*Excess data after padding"),
        ("=AAA", "value: not valid base64 .*Leading padding"),
        ("AA\u00e9=", "value: not valid base64 .*'ascii' codec"),
        ("AAAA\x00", "value: not valid base64"),
    ],
)
def test_b64decode_refuses_malformed(text: str, match: str) -> None:
    with pytest.raises(EncodingError, match=match):
        b64decode(text)


@pytest.mark.parametrize(("size", "found"), [(32, 31), (32, 33), (64, 0), (4, 3)])
def test_b64decode_refuses_wrong_size(size: int, found: int) -> None:
    with pytest.raises(EncodingError, match=f"^root: expected {size} bytes, found {found}$"):
        b64decode(b64encode(bytes(found)), what="root", size=size)


def test_b64decode_names_what_it_decodes() -> None:
    with pytest.raises(EncodingError, match="^checkpoint signature: not valid base64"):
        b64decode("@@@@", what="checkpoint signature")


# --- canonical_json: agreement with RFC 8785 ----------------------------------------------------


@settings(max_examples=600, deadline=None)
@given(json_values)
def test_canonical_json_is_byte_identical_to_rfc8785(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_json_round_trips_through_the_strict_parser(value: Any) -> None:
    data = canonical_json(value)
    assert parse_canonical_json(data) == value
    assert canonical_json(parse_canonical_json(data)) == data


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(st.sampled_from("a\u00e9\ud7ff\ue000\ufb33\uffff" + _ASTRAL), max_size=3), _scalars))
def test_keys_sort_by_utf16_code_units_not_code_points(value: dict[str, Any]) -> None:
    data = canonical_json(value)
    assert data == rfc8785.dumps(value)
    keys = list(json.loads(data))
    assert keys == sorted(value, key=lambda k: k.encode("utf-16-be"))


def test_rfc8785_sorting_example() -> None:
    # RFC 8785 section 3.2.3: astral U+1F600 sorts before U+FB33 in UTF-16 (surrogate 0xD83D < 0xFB33),
    # although it is after it in code-point order.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    data = canonical_json(value)
    assert list(json.loads(data)) == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert data == rfc8785.dumps(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [True, False, None]}, b'{"a":[true,false,null],"b":1}'),
        ("\u20ac\x7f\u2028", '"\u20ac\x7f\u2028"'.encode()),  # non-ASCII stays raw UTF-8
        ("\x00\x08\t\n\x0c\r\x1f", b'"\\u0000\\b\\t\\n\\f\\r\\u001f"'),  # short escapes, lowercase hex
        ('"\\/', b'"\\"\\\\/"'),  # the solidus is not escaped
        ("\U0001f600", '"\U0001f600"'.encode()),  # 4-byte UTF-8, not a \\u surrogate pair
        (MAX_SAFE_INTEGER, b"9007199254740991"),
        (-MAX_SAFE_INTEGER, b"-9007199254740991"),
        ([], b"[]"),
        ({}, b"{}"),
        ((1, "x"), b'[1,"x"]'),
        (1.5, b"1.5"),  # floats take the reference path (JCS number form)
        (1.0, b"1"),
        (1e21, b"1e+21"),
    ],
)
def test_canonical_json_known_forms(value: Any, expected: bytes) -> None:
    assert canonical_json(value) == expected


def test_canonical_json_of_deep_values_agrees_with_rfc8785() -> None:
    # Beyond depth 64 the fast path hands over to the reference implementation.
    for depth in (63, 64, 65, 66, 300):
        value = _nested_objects(depth)
        assert canonical_json(value) == rfc8785.dumps(value)
        lists = _nested_lists(depth)
        assert canonical_json(lists) == rfc8785.dumps(lists)


# --- canonical_json: values that have no canonical form -----------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "\ud800",
        "a\udfffb",
        ["ok", "\udc00"],
        {"k": "\ud83d"},  # the high half of an emoji, alone
        {"k": {"deeper": ["\ud800"]}},
        {"\ud800": 1},  # in a key
        {"\U0001f600": "\ud800"},  # in a value, on the reference path (astral key)
        {"a": {"\udfff": None}},
    ],
)
def test_canonical_json_refuses_lone_surrogates(value: Any) -> None:
    with pytest.raises(EncodingError, match="^cannot canonicalize JSON: .*(surrogate|non-UTF-8)"):
        canonical_json(value)


@given(json_values, st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), st.booleans())
def test_canonical_json_refuses_any_value_holding_a_lone_surrogate(value: Any, lone: str, as_key: bool) -> None:
    poisoned = {lone: value} if as_key else [value, {"k": f"x{lone}y"}]
    with pytest.raises(EncodingError, match="^cannot canonicalize JSON"):
        canonical_json(poisoned)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (MAX_SAFE_INTEGER + 1, "9007199254740992 exceeds safe integer domain"),
        (-MAX_SAFE_INTEGER - 1, "-9007199254740992 exceeds safe integer domain"),
        (2**64, "18446744073709551616 exceeds safe integer domain"),
        ({"quantity": 2**63}, "9223372036854775808 exceeds safe integer domain"),
        (float("nan"), "nan is not representable"),
        (float("inf"), "inf is not representable"),
        ([float("-inf")], "-inf is not representable"),
        ({1: "x"}, "object keys must be strings"),
        ({None: "x"}, "object keys must be strings"),
        ({1, 2}, "unsupported type"),
        (b"bytes", "unsupported type"),
        (object(), "unsupported type"),
    ],
)
def test_canonical_json_refuses_values_outside_json(value: Any, match: str) -> None:
    with pytest.raises(EncodingError, match=f"^cannot canonicalize JSON: {match}"):
        canonical_json(value)


@pytest.mark.parametrize("value", [_nested_lists(5000), _nested_objects(5000)])
def test_canonical_json_refuses_too_deep_values(value: Any) -> None:
    with pytest.raises(EncodingError, match="^cannot canonicalize JSON: nested too deeply"):
        canonical_json(value)


def test_canonical_json_refuses_circular_values() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(EncodingError, match="nested too deeply"):
        canonical_json(loop)


# --- parse_canonical_json -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"{}",
        b"[]",
        b"null",
        b"0",
        b"-9007199254740991",
        b'{"a":[1,"\\u001f",true],"b":{"c":null}}',
        '{"\U0001f600":1,"\ufb33":2}'.encode(),
        '"\u00e9\u2028\x7f"'.encode(),
    ],
)
def test_parse_canonical_json_accepts_canonical_bytes(data: bytes) -> None:
    assert canonical_json(parse_canonical_json(data)) == data


@pytest.mark.parametrize(
    ("data", "match"),
    [
        # not UTF-8: a stray byte, a truncated sequence, an overlong form, an encoded surrogate
        (b'"\xff"', "^doc: not UTF-8 \\(invalid start byte at byte 1\\)"),
        (b'"\xe2\x82"', "^doc: not UTF-8"),
        (b'"\xc0\xaf"', "^doc: not UTF-8"),
        (b'"\xed\xa0\x80"', "^doc: not UTF-8"),
        # numbers that are not safe integers
        (b"1.5", "^doc: not valid JSON \\(non-integer number 1.5 is not allowed\\)"),
        (b"1.0", "non-integer number 1.0 is not allowed"),
        (b"-0.0", "non-integer number -0.0 is not allowed"),
        (b"1e2", "non-integer number 1e2 is not allowed"),
        (b'{"q":5E0}', "non-integer number 5E0 is not allowed"),
        (b"NaN", "NaN is not allowed"),
        (b"[Infinity]", "Infinity is not allowed"),
        (b"[-Infinity]", "-Infinity is not allowed"),
        (b"9007199254740992", "integer 9007199254740992 is outside the safe range"),
        (b"-9007199254740992", "integer -9007199254740992 is outside the safe range"),
        (b"18446744073709551616", "outside the safe range"),  # 2**64
        (b"9" * 5000, "^doc: not valid JSON"),
        # not JSON
        (b"", "^doc: not valid JSON"),
        (b"{", "^doc: not valid JSON"),
        (b"{}{}", "^doc: not valid JSON"),
        (b"01", "^doc: not valid JSON"),
        (b"{'a':1}", "^doc: not valid JSON"),
        (b"\xef\xbb\xbf{}", "^doc: not valid JSON .*BOM"),
        (b"[" * 100_000, "^doc: JSON nested too deeply"),
        # JSON, but not in canonical form
        (b" {}", "^doc: JSON is not in RFC 8785 canonical form$"),
        (b"{}\n", "not in RFC 8785 canonical form"),
        (b'{"a": 1}', "not in RFC 8785 canonical form"),
        (b'{"a":1 }', "not in RFC 8785 canonical form"),
        (b"[1, 2]", "not in RFC 8785 canonical form"),
        (b'{"b":1,"a":2}', "not in RFC 8785 canonical form"),
        ('{"\ufb33":1,"\U0001f600":2}'.encode(), "not in RFC 8785 canonical form"),  # code-point order
        (b'{"a":1,"a":1}', "not in RFC 8785 canonical form"),  # duplicate key
        (b'{"a":1,"a":2}', "not in RFC 8785 canonical form"),
        (b"-0", "not in RFC 8785 canonical form"),
        (b'"\\/"', "not in RFC 8785 canonical form"),
        (b'"\\u0041"', "not in RFC 8785 canonical form"),
        (b'"\\u00e9"', "not in RFC 8785 canonical form"),
        (b'"\\u001F"', "not in RFC 8785 canonical form"),  # upper-case hex
        (b'"\\u000a"', "not in RFC 8785 canonical form"),  # \\n has a short form
        (b'"\\ud83d\\ude00"', "not in RFC 8785 canonical form"),  # emoji as an escaped pair
        # JSON whose string has no canonical form at all
        (b'"\\ud800"', "surrogate"),
        (b'{"\\udfff":1}', "surrogate"),
    ],
)
def test_parse_canonical_json_refuses(data: bytes, match: str) -> None:
    with pytest.raises(EncodingError, match=match):
        parse_canonical_json(data, what="doc")


@settings(max_examples=200, deadline=None)
@given(json_values.filter(lambda v: isinstance(v, (list, dict)) and len(v) > 0))
def test_parse_canonical_json_refuses_pretty_printed_documents(value: Any) -> None:
    pretty = json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True).encode()
    with pytest.raises(EncodingError, match="not in RFC 8785 canonical form"):
        parse_canonical_json(pretty)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_parse_canonical_json_refuses_ascii_escaped_documents(value: Any) -> None:
    escaped = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()
    if escaped == canonical_json(value):
        assert parse_canonical_json(escaped) == value
    else:
        with pytest.raises(EncodingError, match="not in RFC 8785 canonical form"):
            parse_canonical_json(escaped)
