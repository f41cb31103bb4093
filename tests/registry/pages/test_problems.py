"""Problem types as pages, and errors as pages for browsers: on SQLite and PostgreSQL, in both languages.

Every code the registry can answer with has a page at its ``type`` (``/problems/<code>``): the ledger's
declared rule codes, and the service's own, found by reading the source for every code it raises.
"""

from __future__ import annotations

import ast
import html

import pytest

from ledger.state.spec import AUTHORISATION_CODES, RULE_CODES
from registry import errors, problems
from registry.errors import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE
from registry.problems import PROBLEM_TYPES, RECORDS
from tests.registry.live import REPO_ROOT
from tests.registry.pages.conftest import Demo
from tests.registry.pages.test_api import strict_parse

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"}
# How each error class passes its code: the argument's position (RegistryError's own signature last).
_CODE_ARGUMENT = {"NotFound": 1, "BadRequest": 1, "Forbidden": 1, "ServiceUnavailable": 1, "Unauthorized": 2}
_DEFAULTS = {"not-found", "bad-request", "forbidden", "signature-required", "service-unavailable"}


def raised_codes() -> set[str]:
    """Every problem code the service's source raises (registry/ and the server's protocol in cli/)."""
    codes = set(_DEFAULTS) | {errors._slug(title) for title in errors._TITLES.values()} | {"error"}
    records: set[str] = set()
    for path in [*(REPO_ROOT / "registry").rglob("*.py"), REPO_ROOT / "cli" / "registry.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.BinOp) and isinstance(node.left, ast.Name) and node.left.id == "PROBLEM_TYPE_BASE":
                if isinstance(node.right, ast.Constant) and isinstance(node.right.value, str):
                    codes.add(node.right.value)
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            position = _CODE_ARGUMENT.get(name, 3 if name in ("RegistryError", "__init__") else None)
            if name == "_refuse":  # cli.registry's refusals before the app sees a request
                position = 2
            given = [k.value for k in node.keywords if k.arg == "type_suffix"]
            if not given and position is not None and len(node.args) > position:
                given = [node.args[position]]
            codes |= {arg.value for arg in given if isinstance(arg, ast.Constant) and isinstance(arg.value, str)}
            if name == "one":  # registry.public.service.one: f"{what}-not-found"
                what = [k.value for k in node.keywords if k.arg == "what"]
                records |= {arg.value for arg in what if isinstance(arg, ast.Constant) and isinstance(arg.value, str)}
    codes |= {f"{record.replace(' ', '-')}-not-found" for record in records | {"retirement", "claim", "account"}}
    return codes


ALL_CODES = sorted(set(AUTHORISATION_CODES) | set(RULE_CODES) | raised_codes())


def test_the_source_scan_finds_the_codes_it_should() -> None:
    assert {"insufficient-units"}.isdisjoint(ALL_CODES)
    for code in ("invalid-cursor", "project-not-found", "request-timeout", "content-too-large", "already-cosigned"):
        assert code in ALL_CODES
    assert len(ALL_CODES) > 80


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_problem_code_has_a_page(demo: Demo, lang: str) -> None:
    missing = [code for code in ALL_CODES if code not in PROBLEM_TYPES]
    assert not missing, f"codes without a page in registry/problems.py: {missing}"
    for code in ALL_CODES:
        page = demo.client.get(PROBLEM_TYPE_BASE + code, params={"lang": lang})
        assert page.status_code == 200, code
        assert page.headers["content-type"].startswith("text/html")
        text = html.unescape(page.text)
        problem = PROBLEM_TYPES[code]
        assert f'<dd class="mono" id="code">{code}</dd>' in text
        assert f'<dd id="status">{problem.status} ' in text
        assert (problem.zh if lang == "zh" else problem.en) in text
    strict_parse(page.text)
    index = demo.client.get("/problems", params={"lang": lang})
    assert index.status_code == 200
    strict_parse(index.text)
    for code in PROBLEM_TYPES:
        assert f'href="/problems/{code}"' in index.text


def test_a_problem_type_the_api_answers_with_opens_its_page(demo: Demo) -> None:
    problem = demo.client.get("/v1/projects/P9999").json()
    assert problem["type"] == "/problems/project-not-found"
    page = demo.client.get(problem["type"], params={"lang": "en"})
    assert page.status_code == 200
    assert "There is no such project in the registry" in page.text
    assert demo.client.get("/problems/no-such-problem", params={"lang": "en"}).status_code == 404


def test_the_openapi_document_describes_the_problem_types(demo: Demo) -> None:
    document = demo.client.get("/openapi.json").json()
    assert "/problems/<code>" in document["info"]["description"]
    schema = document["components"]["schemas"]["ProblemDetails"]
    assert "/problems" in schema["properties"]["type"]["description"]
    described = schema["x-problem-types"]
    assert set(described) == {PROBLEM_TYPE_BASE + code for code in PROBLEM_TYPES}
    assert described["/problems/insufficient_units"]["status"] == 409
    assert set(ALL_CODES) <= {uri.removeprefix(PROBLEM_TYPE_BASE) for uri in described}


# --- errors as pages --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "message"), [("en", "there is no page at /no/such/page"), ("zh", "没有这个页面或记录。")]
)
def test_a_browser_asking_for_an_unknown_page_gets_a_page(demo: Demo, lang: str, message: str) -> None:
    response = demo.client.get("/no/such/page", params={"lang": lang}, headers=BROWSER)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    strict_parse(response.text)
    assert f'<html lang="{"zh-CN" if lang == "zh" else "en"}">' in response.text
    assert message in html.unescape(response.text)
    assert '<a href="/" id="home">' in response.text
    assert '<nav aria-label="' in response.text  # the site's layout
    assert 'href="/problems/not-found"' in response.text


@pytest.mark.parametrize("accept", ["*/*", "application/json", PROBLEM_MEDIA_TYPE, None])
def test_an_api_client_still_gets_problem_details(demo: Demo, accept: str | None) -> None:
    headers = {} if accept is None else {"Accept": accept}
    for path in ("/no/such/page", "/v1/no-such-list"):
        response = demo.client.get(path, headers=headers)
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
        assert response.json()["type"] == "/problems/not-found"
    # A route's own error stays what its responses= declare, whoever asks.
    record = demo.client.get("/v1/projects/P9999", headers=BROWSER)
    assert (record.status_code, record.headers["content-type"]) == (404, PROBLEM_MEDIA_TYPE)
    posted = demo.client.post("/no/such/page", headers=BROWSER)
    assert posted.headers["content-type"] == PROBLEM_MEDIA_TYPE


@pytest.mark.parametrize(
    ("path", "status", "chinese"),
    [
        ("/projects/P9999", 404, "登记簿中没有这个项目"),
        ("/events/E9999", 404, "登记簿中没有这个活动"),
        ("/claims/CN9999", 404, "登记簿中没有这个碳中和声明"),
        ("/projects?cursor=garbage", 400, "分页游标无效"),
        ("/serials?serial=not-a-serial", 400, "既不是序列号也不是序列号区间"),
        ("/projects?q=" + "x" * 201, 422, "请求参数或正文不符合 API 的模式"),
    ],
)
def test_a_chinese_page_says_what_went_wrong_in_chinese(demo: Demo, path: str, status: int, chinese: str) -> None:
    response = demo.client.get(path + ("&" if "?" in path else "?") + "lang=zh", headers=BROWSER)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    strict_parse(response.text)
    assert chinese in html.unescape(response.text)


def test_every_record_a_page_can_miss_is_described() -> None:
    for record in RECORDS:
        assert f"{record}-not-found" in PROBLEM_TYPES
    # The service's codes each have their own words; only a ledger rule may wait for its description.
    generic = {code for code, problem in PROBLEM_TYPES.items() if problem.en == problems._UNDESCRIBED[1]}
    assert generic <= set(AUTHORISATION_CODES) | set(RULE_CODES)
    assert "insufficient_units" not in generic
