"""Fuzzing the RFC 9421 signature check of private account reads: only `SignatureRefused` comes out.

`verify_request` reads what the client controls: two structured header fields (``Signature-Input`` and
``Signature``, RFC 8941 dictionaries) and the method, authority and target URI the signature covers. It is fed
arbitrary field values and structure-aware mutations of a valid signature made by `sign_request`: parameters
dropped, duplicated, re-ordered and given other types or huge, negative and far-future values; covered
components dropped, added, duplicated and re-typed; labels changed, added and made to disagree; the signature
swapped for other base64 or for another kind of item; unicode and control characters inserted; field lines
duplicated; the target changed. It either names the signer or raises `SignatureRefused`, and a valid signature
still verifies. The same headers then go to the app over SQLite and PostgreSQL: every answer is the read (200)
or a 401 problem telling the client how to sign, never a server error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from ledger.keys import PrivateKey
from registry.accounts.signatures import (
    ACCEPT_SIGNATURE,
    SignatureRefused,
    SignedBy,
    message_of,
    sign_request,
    verify_request,
)
from registry.app import create_app
from registry.settings import Settings
from tests.conftest import Story
from tests.ledger.scenario import ORIGIN, seeded_key
from tests.ledger.test_fuzz import (
    AWKWARD_TEXT,
    RUNS,
    awkward_integers,
    awkward_text,
    fuzz,
    other_base64,
    text_mutations,
)

OWNER = seeded_key("owner")
STRANGER = seeded_key("stranger")  # a valid key the registry does not know
PATH = "/v1/accounts/owner/holdings"
URL = f"http://testserver{PATH}"
KEYS: dict[str, tuple[str, bytes]] = {OWNER.key_id: ("owner", OWNER.public_key.raw)}
APP_RUNS = [pytest.param(100, id="default"), pytest.param(1500, id="long", marks=pytest.mark.slow)]
"""Requests through the app cost milliseconds each: fewer of them, on each database."""

Headers = list[tuple[str, str]]


def lookup(key_id: str) -> tuple[str, bytes] | None:
    return KEYS.get(key_id)


def signed_headers(key: PrivateKey = OWNER, *, url: str = URL, created: datetime | None = None) -> Headers:
    """The ``Signature-Input`` and ``Signature`` field lines `sign_request` writes for a GET of `url`."""
    request = httpx.Request("GET", url)
    sign_request(request, key, created=created)
    return [("signature-input", request.headers["signature-input"]), ("signature", request.headers["signature"])]


# --- structure-aware mutations of the two fields -------------------------------------------------------------

_PARAMETER = re.compile(r';([a-z*][a-z0-9_.*-]*)(=("(?:[^"\\]|\\.)*"|[^;\s]*))?')
_COMPONENTS = re.compile(r"\(([^)]*)\)")
_BYTES = re.compile(r":[A-Za-z0-9+/=]*:")

sf_values = st.one_of(
    st.sampled_from(
        [
            *("0", "-1", "1.5", "-0.0", "?1", "?0", "token", "*tok", ":AAAA:", "::", "()", '("@method")'),
            *('""', '"x"', '"ed25519"', '"cdcer"', '"' + "a" * 5000 + '"', '"\\"quoted\\""', '%"%f0%9f%98%80"'),
            *("999999999999999", "-999999999999999", "9999999999999999", "253402300799", "-62135596801"),
            f'"{STRANGER.key_id}"',
        ]
    ),
    awkward_integers.map(str),
    st.text(max_size=12).map(lambda text: '"' + text + '"'),
    awkward_text,
)
"""RFC 8941 items of every type, of the wrong type, out of range, too long, or not items at all."""

component_items = st.one_of(
    st.sampled_from(
        [
            *('"@method"', '"@authority"', '"@target-uri"', '"@path"', '"@query"', '"@scheme"', '"@status"'),
            *('"@request-target"', '"@query-param";name="limit"', '"@query-param"', '"@method";req', '"@METHOD"'),
            *('"host"', '"content-digest"', '"signature"', '"signature-input"', '"x-missing"', '"host";sf'),
            *('"host";key="a"', '"host";bs', '"@signature-params"', '""', "@method", "1", "?1", ":AA==:", '("a")'),
        ]
    ),
    st.text(max_size=8).map(lambda text: '"' + text + '"'),
)


@st.composite
def signature_inputs(draw: st.DrawFn, valid: str) -> str:
    """A change to the parameters, the covered components or the label of a ``Signature-Input`` value."""
    how = draw(st.sampled_from(["parameter", "drop parameter", "add parameter", "components", "label", "member"]))
    parameters = list(_PARAMETER.finditer(valid))
    found = _COMPONENTS.search(valid)
    if (how in ("parameter", "drop parameter") and not parameters) or (how == "components" and found is None):
        return draw(text_mutations(valid))  # an earlier change left nothing of this kind to change
    if how == "parameter":
        match = draw(st.sampled_from(parameters))
        return valid[: match.start()] + f";{match[1]}={draw(sf_values)}" + valid[match.end() :]
    if how == "drop parameter":
        match = draw(st.sampled_from(parameters))
        return valid[: match.start()] + valid[match.end() :]
    if how == "add parameter":
        name = draw(st.sampled_from(["created", "expires", "keyid", "alg", "tag", "nonce", "other", "KEYID"]))
        at = draw(st.sampled_from([p.start() for p in parameters] + [len(valid)]))
        return valid[:at] + f";{name}={draw(sf_values)}" + valid[at:]
    if how == "components" and found is not None:
        items = found[1].split(" ")
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(items)))
            change = draw(st.sampled_from(["add", "drop", "duplicate", "replace"]))
            if change == "add" or not items:
                items.insert(at, draw(component_items))
            elif change == "drop":
                del items[min(at, len(items) - 1)]
            elif change == "duplicate":
                items.insert(at, items[min(at, len(items) - 1)])
            else:
                items[min(at, len(items) - 1)] = draw(component_items)
        return valid[: found.start(1)] + " ".join(items) + valid[found.end(1) :]
    label, _, rest = valid.partition("=")
    if how == "label":
        other = draw(st.sampled_from(["sig", "CDCER", "*a", "1x", "", "a b", "cdcer-2", label + label]))
        return f"{other}={rest}"
    # A second member: the same label again, or another one beside it.
    other = draw(st.sampled_from([label, "sig1", "pyhms"]))
    member = draw(st.sampled_from([rest, "()", '("@method");tag="cdcer"', '"x"']))
    second = f"{other}={member}"
    return draw(st.sampled_from([f"{valid}, {second}", f"{second}, {valid}"]))


@st.composite
def signatures(draw: st.DrawFn, valid: str) -> str:
    """A change to the label or the byte sequence of a ``Signature`` value."""
    how = draw(st.sampled_from(["base64", "item", "parameter", "label", "member"]))
    if how == "base64":
        return _BYTES.sub(lambda _: f":{draw(other_base64())}:", valid)
    if how == "item":
        return _BYTES.sub(lambda _: draw(sf_values), valid)
    if how == "parameter":
        return valid + f";{draw(st.sampled_from(['created', 'x', 'alg']))}={draw(sf_values)}"
    label, _, rest = valid.partition("=")
    if how == "label":
        return f"{draw(st.sampled_from(['sig', 'CDCER', '', '1x']))}={rest}"
    return f"{valid}, {draw(st.sampled_from([label, 'sig1']))}={draw(st.sampled_from([rest, ':AA==:', '1']))}"


@st.composite
def header_sets(draw: st.DrawFn, valid: Headers) -> Headers:
    """The valid field lines with one to three changes: structured, textual, or to the lines themselves."""
    headers = list(valid)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(headers) - 1)) if headers else 0
        how = draw(st.sampled_from(["structured", "structured", "text", "drop", "duplicate", "rename", "arbitrary"]))
        if not headers or how == "arbitrary":
            name = draw(st.sampled_from(["signature", "signature-input", "Signature", "SIGNATURE-INPUT", "host"]))
            headers.insert(
                at, (name, draw(st.one_of(st.text(max_size=80), st.lists(st.sampled_from(AWKWARD_TEXT)).map("".join))))
            )
            continue
        name, value = headers[at]
        if how == "structured" and name.lower() == "signature-input":
            headers[at] = (name, draw(signature_inputs(value)))
        elif how == "structured" and name.lower() == "signature":
            headers[at] = (name, draw(signatures(value)))
        elif how == "text" or how == "structured":
            headers[at] = (name, draw(text_mutations(value)))
        elif how == "drop":
            del headers[at]
        elif how == "duplicate":
            headers.insert(at, (name, value))
        else:
            headers[at] = (draw(st.sampled_from([name.upper(), name.title(), name + "s", " " + name])), value)
    return headers


# --- verify_request ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("examples", RUNS)
def test_signature_headers_raise_only_signature_refused(examples: int) -> None:
    valid = signed_headers()
    stranger = signed_headers(STRANGER)
    stale = signed_headers(created=datetime.now(UTC) - timedelta(minutes=6))
    assert verify_request(message_of("GET", URL, valid), lookup) == SignedBy(OWNER.key_id, "owner")
    for refused in (stranger, stale, []):
        with pytest.raises(SignatureRefused):
            verify_request(message_of("GET", URL, refused), lookup)

    @fuzz(examples)
    @given(
        headers=st.one_of(
            st.sampled_from([valid, stranger, stale]).flatmap(header_sets),
            st.lists(st.tuples(st.sampled_from(["signature", "signature-input"]), st.text(max_size=120)), max_size=4),
        ),
        method=st.sampled_from(["GET", "GET", "get", "POST", "HEAD", "G\u00c9T", ""]),
        url=st.one_of(st.just(URL), text_mutations(URL)),
        extra=st.lists(st.tuples(st.sampled_from(["host", "x-forwarded-host", "content-digest"]), awkward_text)),
    )
    def run(headers: Headers, method: str, url: str, extra: Headers) -> None:
        try:
            signer = verify_request(message_of(method, url, [*extra, *headers]), lookup)
        except SignatureRefused:
            return
        assert signer == SignedBy(OWNER.key_id, "owner")

    run()


# --- the same, through the app -------------------------------------------------------------------------------


@pytest.fixture
def client(story: Story) -> Iterator[TestClient]:
    """The app over a registry whose participants (the owner among them) are registered."""
    story.sync()
    with TestClient(create_app(Settings(origin=ORIGIN), ledger=story.ledger)) as test_client:
        yield test_client


def _wire(headers: Headers) -> list[tuple[bytes, bytes]]:
    """Field lines as an HTTP server would pass them on: Latin-1, no line breaks or NUL (which it refuses)."""
    lines = []
    for name, value in headers:
        raw_name = name.strip().encode("latin-1", "replace")
        raw_value = value.encode("latin-1", "replace").translate(None, b"\r\n\x00").strip()
        if raw_name and re.fullmatch(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+", raw_name):
            lines.append((raw_name, raw_value))
    return lines


@pytest.mark.parametrize("examples", APP_RUNS)
def test_signature_headers_never_make_a_server_error(client: TestClient, examples: int) -> None:
    valid = signed_headers()
    request = client.build_request("GET", PATH, headers=_wire(valid))
    assert client.send(request).status_code == 200

    @fuzz(examples)
    @given(headers=st.sampled_from([valid, signed_headers(STRANGER)]).flatmap(header_sets))
    def run(headers: Headers) -> None:
        response = client.get(PATH, headers=_wire(headers))
        assert response.status_code in (200, 401), response.text
        if response.status_code == 401:
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["accept-signature"] == ACCEPT_SIGNATURE

    run()
