"""The public pages: server-rendered HTML (Jinja2) in Chinese and English, readable without JavaScript.

Every page reads one snapshot of the registry (``ConnDep``), like the JSON API it mirrors. Pages are
left out of the OpenAPI document, which describes the API. A page that cannot be shown (an unknown id,
a bad cursor) is an HTML page with the same status and the same message the API would give.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, cast
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import func

from ledger.certificate import CertificateKind
from ledger.storage import store
from registry import problems
from registry.certificates.api import CertificatesDep
from registry.certificates.service import CertificateCache
from registry.deps import ConnDep, SettingsDep
from registry.errors import NotFound, RegistryError
from registry.log import service as log_service
from registry.pages import chart, i18n, pdf, qr, service, times
from registry.points import service as points_service
from registry.public import repository
from registry.public import service as public
from registry.serials import service as serials
from registry.settings import Settings

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters["thousands"] = lambda value: f"{value:,}" if isinstance(value, int) else value
templates.env.filters["when"] = times.when  # every time a page shows: {{ row.retired_time | when }}

PAGE_SIZE = 25
ONE_YEAR = 60 * 60 * 24 * 365


def render(request: Request, template: str, *, status_code: int = 200, **context: Any) -> Response:
    """`template` in the request's language, with the language switch and the chosen language remembered."""
    language = i18n.choose(request)
    t = i18n.Translator(language)
    switch = dict(request.query_params) | {"lang": t.other}
    response = templates.TemplateResponse(
        request,
        template,
        {"t": t, "lang": language, "switch_url": f"{request.url.path}?{urlencode(switch)}", **context},
        status_code=status_code,
    )
    if request.query_params.get("lang") == language:
        response.set_cookie(i18n.COOKIE, language, max_age=ONE_YEAR, samesite="lax")
    return response


def error_page(request: Request, error: RegistryError) -> Response:
    return problem_page(request, error.status, error.type_suffix, error.detail)


def problem_page(request: Request, status: int, code: str, detail: str) -> Response:
    """An error as a page in the request's language, with a link to its problem type's page and home.

    The detail is the API's own message, in English; a Chinese page leads with the problem type's
    Chinese description and keeps the detail beneath it, marked as English.
    """
    known = problems.PROBLEM_TYPES.get(code)
    return render(
        request,
        "error.html",
        status_code=status,
        status=status,
        detail=detail,
        code=code if known else None,
        message=problem_text(i18n.choose(request), code, detail),
    )


def problem_text(language: i18n.Language, code: str, detail: str) -> str:
    """What a page says about a problem: the detail in English, the problem type's description in Chinese."""
    known = problems.PROBLEM_TYPES.get(code)
    return known.zh if language == "zh" and known is not None else detail


def http_error_page(request: Request, status: int, code: str, detail: str) -> Response:
    """A browser's request that no page answers (`registry.errors.install_error_handlers`)."""
    if status == 404:
        detail = f"there is no page at {request.url.path}"
    return problem_page(request, status, code, detail)


def listing(
    request: Request, conn: ConnDep, table: str, cursor: str | None, *, people: tuple[str, ...] = ()
) -> Response:
    """One page of a public list, rendered with the template of the table's name; the participants named in
    its `people` columns come with their names."""
    try:
        page = public.list_page(conn, table, where=[], cursor=cursor, limit=PAGE_SIZE)
    except RegistryError as exc:
        return error_page(request, exc)
    names = repository.names(conn, (row[column] for row in page.rows for column in people))
    return render(request, f"{table}.html", page=page, names=names)


# --- home, methodologies, projects --------------------------------------------------------------------


@router.get("/")
def home(request: Request, conn: ConnDep) -> Response:
    t = i18n.Translator(i18n.choose(request))
    activity = service.activity(conn)
    svg = chart.svg(
        activity,
        names={"issued": t("chart_issued"), "retired": t("chart_retired")},
        axis=t("chart_axis"),
        title=t("over_time"),
        description=t("chart_desc"),
    )
    return render(request, "home.html", stats=repository.stats(conn), chart=svg if activity.labels else None)


@router.get("/methodologies")
def methodologies(request: Request, conn: ConnDep, cursor: str | None = None) -> Response:
    return listing(request, conn, "methodologies", cursor)


@router.get("/projects")
def projects(
    request: Request,
    conn: ConnDep,
    q: Annotated[str, Query(max_length=200)] = "",
    methodology: str = "",
    district: str = "",
    state: str = "",
    cursor: str | None = None,
) -> Response:
    table = repository.table("projects")
    where = repository.equal(
        "projects", methodology_code=methodology or None, district=district or None, state=state or None
    )
    if q.strip():
        needle = q.strip().lower()
        where.append(
            func.lower(table.c.title).contains(needle, autoescape=True)
            | func.lower(table.c.id).contains(needle, autoescape=True)
        )
    try:
        page = public.list_page(conn, "projects", where=where, cursor=cursor, limit=PAGE_SIZE)
    except RegistryError as exc:
        return error_page(request, exc)
    choices = {
        "methodologies": sorted(
            {row["code"] for row in repository.page(conn, "methodologies", where=[], after=None, limit=1000)}
        ),
        "districts": sorted(d for (d,) in conn.execute(table.select().with_only_columns(table.c.district).distinct())),
        "states": ["submitted", "validated", "registered", "rejected", "changes_requested", "suspended", "closed"],
    }
    filters = {"q": q, "methodology": methodology, "district": district, "state": state}
    next_url = None
    if page.next_cursor is not None:
        next_url = "/projects?" + urlencode({k: v for k, v in filters.items() if v} | {"cursor": page.next_cursor})
    return render(request, "projects.html", page=page, filters=filters, choices=choices, next_url=next_url)


@router.get("/projects/{project_id}")
def project(request: Request, conn: ConnDep, project_id: str) -> Response:
    try:
        row = public.one(conn, "projects", [project_id], what="project", listing="/projects")
    except RegistryError as exc:
        return error_page(request, exc)
    reports = repository.children(conn, "monitoring_reports", "project_id", project_id)
    batches = repository.children(conn, "batches", "project_id", project_id)
    t = i18n.Translator(i18n.choose(request))
    history = [(row["submitted_at"], t("h_submitted"))]
    history += [(r["submitted_at"], t("h_report", id=r["id"])) for r in reports]
    history += [(b["issued_at"], t("h_issued", id=b["id"], quantity=f"{b['quantity']:,}")) for b in batches]
    if row["updated_at"] != row["submitted_at"]:
        history.append((row["updated_at"], t("h_updated", state=t.word("s", row["state"]))))
    return render(
        request,
        "project.html",
        project=row,
        reports=reports,
        batches=batches,
        history=sorted(history),
        units=repository.project_units(conn, project_id),
        names=repository.names(conn, [row["owner"], row["validator"], *(r["verifier"] for r in reports)]),
    )


# --- serials, retirements ------------------------------------------------------------------------------


@router.get("/serials")
def serial_lookup(
    request: Request,
    conn: ConnDep,
    serial: Annotated[str, Query(max_length=200)] = "",
    cursor: str | None = None,
) -> Response:
    found = None
    status_code = 200
    detail = None
    next_url = None
    if serial.strip():
        try:
            found = serials.history(conn, serial.strip(), cursor=cursor, limit=PAGE_SIZE)
        except RegistryError as exc:
            status_code, detail = exc.status, problem_text(i18n.choose(request), exc.type_suffix, exc.detail)
    if found is not None and found.next_cursor is not None:
        next_url = "/serials?" + urlencode({"serial": serial.strip(), "cursor": found.next_cursor})
    names = {}
    if found is not None:
        holders = [b.holder for b in found.blocks]
        names = repository.names(conn, [*holders, *(h for m in found.history for h in (m.from_holder, m.to_holder))])
    return render(
        request,
        "serial.html",
        status_code=status_code,
        serial=serial,
        found=found,
        detail=detail,
        next_url=next_url,
        names=names,
    )


@router.get("/retirements")
def retirements(request: Request, conn: ConnDep, cursor: str | None = None) -> Response:
    return listing(request, conn, "retirements", cursor, people=("holder",))


# --- events and claims ---------------------------------------------------------------------------------


@router.get("/events")
def events(request: Request, conn: ConnDep, cursor: str | None = None) -> Response:
    return listing(request, conn, "events", cursor, people=("organiser",))


@router.get("/events/{event_id}")
def event(request: Request, conn: ConnDep, event_id: str) -> Response:
    try:
        row = public.one(conn, "events", [event_id], what="event", listing="/events")
    except RegistryError as exc:
        return error_page(request, exc)
    retired = repository.page(
        conn, "retirements", where=repository.equal("retirements", event_id=event_id), after=None, limit=1000
    )
    names = repository.names(conn, [row["organiser"], *(r["holder"] for r in retired)])
    return render(request, "event.html", event=row, retirements=retired, names=names)


@router.get("/claims")
def claims(request: Request, conn: ConnDep, cursor: str | None = None) -> Response:
    return listing(request, conn, "claims", cursor, people=("organiser",))


async def get_verifications(request: Request) -> service.VerificationCache:
    return cast(service.VerificationCache, request.app.state.verifications)


VerificationsDep = Annotated[service.VerificationCache, Depends(get_verifications)]


def _record_context(
    conn: ConnDep,
    *,
    kind: CertificateKind,
    record_id: str,
    path: str,
    settings: Settings,
    certificates: CertificateCache,
    verifications: service.VerificationCache,
) -> dict[str, Any]:
    """What a retirement's or a claim's page and PDF share: the live verification, the page's URL and QR code."""
    verification = service.verify_record(
        conn, kind=kind, record_id=record_id, certificates_cache=certificates, verifications=verifications
    )
    # The configured address, never the request's Host header: a QR code or a PDF travels, and must not
    # send whoever scans it to wherever the request that rendered it claimed to be addressed.
    url = f"{settings.public_base_url}/{path}/{quote(record_id, safe='')}"
    entries: list[tuple[int, str]] = []
    if verification.certificate is not None:
        entries = [(entry.index, entry.role) for entry in verification.certificate.entries]
    vkey = verification.certificate.vkey if verification.certificate is not None else store.get_meta(conn, "vkey")
    return {
        "verification": verification,
        "entries": entries,
        "vkey": vkey or "",
        "base_url": settings.public_base_url,
        "json_url": f"{settings.public_base_url}/v1/{path}/{quote(record_id, safe='')}/certificate",
        "url": url,
        "qr": qr.data_uri(url),
    }


def _claim_context(
    conn: ConnDep,
    claim_id: str,
    *,
    settings: Settings,
    certificates: CertificateCache,
    verifications: service.VerificationCache,
) -> dict[str, Any]:
    row = public.one(conn, "claims", [claim_id], what="claim", listing="/claims")
    event_row = repository.get(conn, "events", [row["event_id"]])
    organiser = repository.get(conn, "participants", [row["organiser"]])
    record = _record_context(
        conn,
        kind="claim",
        record_id=claim_id,
        path="claims",
        settings=settings,
        certificates=certificates,
        verifications=verifications,
    )
    names = {} if organiser is None else {organiser["id"]: organiser["name"]}
    return {"claim": row, "event": event_row, "organiser": organiser, "names": names, **record}


@router.get("/claims/{claim_id}", name="claim")
def claim(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    certificates: CertificatesDep,
    verifications: VerificationsDep,
    claim_id: str,
) -> Response:
    try:
        context = _claim_context(
            conn, claim_id, settings=settings, certificates=certificates, verifications=verifications
        )
    except RegistryError as exc:
        return error_page(request, exc)
    return render(request, "claim.html", **context)


@router.get("/claims/{claim_id}/certificate.pdf")
def claim_pdf(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    certificates: CertificatesDep,
    verifications: VerificationsDep,
    claim_id: str,
) -> Response:
    try:
        context = _claim_context(
            conn, claim_id, settings=settings, certificates=certificates, verifications=verifications
        )
        t = i18n.Translator(i18n.choose(request))
        return _pdf(pdf.claim_certificate(context, t), claim_id, t)
    except RegistryError as exc:
        return error_page(request, exc)


# --- retirements, participants ---------------------------------------------------------------------------


def _retirement_context(
    conn: ConnDep,
    retirement_id: str,
    *,
    settings: Settings,
    certificates: CertificateCache,
    verifications: service.VerificationCache,
) -> dict[str, Any]:
    row = public.one(conn, "retirements", [retirement_id], what="retirement", listing="/retirements")
    event_row = None if row["event_id"] is None else repository.get(conn, "events", [row["event_id"]])
    record = _record_context(
        conn,
        kind="retirement",
        record_id=retirement_id,
        path="retirements",
        settings=settings,
        certificates=certificates,
        verifications=verifications,
    )
    names = repository.names(conn, [row["holder"], event_row["organiser"] if event_row else None])
    return {"retirement": row, "event": event_row, "names": names, **record}


@router.get("/retirements/{retirement_id}", name="retirement")
def retirement(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    certificates: CertificatesDep,
    verifications: VerificationsDep,
    retirement_id: str,
) -> Response:
    try:
        context = _retirement_context(
            conn, retirement_id, settings=settings, certificates=certificates, verifications=verifications
        )
    except RegistryError as exc:
        return error_page(request, exc)
    return render(request, "retirement.html", **context)


@router.get("/retirements/{retirement_id}/certificate.pdf")
def retirement_pdf(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    certificates: CertificatesDep,
    verifications: VerificationsDep,
    retirement_id: str,
) -> Response:
    try:
        context = _retirement_context(
            conn, retirement_id, settings=settings, certificates=certificates, verifications=verifications
        )
        t = i18n.Translator(i18n.choose(request))
        return _pdf(pdf.retirement_certificate(context, t), retirement_id, t)
    except RegistryError as exc:
        return error_page(request, exc)


def _pdf(document: bytes, record_id: str, t: i18n.Translator) -> Response:
    """A certificate PDF as a download named by its record and language (``CN0001-certificate-en.pdf``)."""
    return Response(
        document,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{record_id}-certificate-{t.language}.pdf"'},
    )


@router.get("/participants/{participant_id}", name="participant")
def participant(request: Request, conn: ConnDep, participant_id: str) -> Response:
    try:
        row = public.one(conn, "participants", [participant_id], what="participant", listing="/v1/participants")
    except RegistryError as exc:
        return error_page(request, exc)
    return render(request, "participant.html", participant=row, did=service.public_record(conn, participant_id))


# --- the points path: rules, scenes, offers, attested batches ---------------------------------------------
# Public projections only, as the JSON API reads them (`registry.points.api`); a batch's records and the
# point accounts are private, so no page here shows a record, an account id or a subject.

SceneState = Literal["", "applied", "evaluated", "approved", "rejected", "suspended", "revoked"]
OfferState = Literal["", "active", "withdrawn"]


def _filtered(
    request: Request, conn: ConnDep, table: str, path: str, filters: dict[str, str], cursor: str | None
) -> Response:
    """One page of `table` where each non-empty filter equals its column; the next page keeps the filters."""
    chosen = {name: value for name, value in filters.items() if value}
    where = repository.equal(table, **chosen)
    try:
        page = public.list_page(conn, table, where=where, cursor=cursor, limit=PAGE_SIZE)
    except RegistryError as exc:
        return error_page(request, exc)
    people = ("merchant",)
    names = repository.names(conn, (row[column] for row in page.rows for column in people))
    next_url = None
    if page.next_cursor is not None:
        next_url = f"{path}?" + urlencode(chosen | {"cursor": page.next_cursor})
    return render(request, f"{table}.html", page=page, filters=filters, names=names, next_url=next_url)


@router.get("/points/rules")
def points_rules(request: Request, conn: ConnDep, cursor: str | None = None) -> Response:
    return listing(request, conn, "points_rules", cursor)


@router.get("/scenes")
def scenes(request: Request, conn: ConnDep, state: SceneState = "", cursor: str | None = None) -> Response:
    return _filtered(request, conn, "scenes", "/scenes", {"state": state}, cursor)


@router.get("/scenes/{scene_id}")
def scene(request: Request, conn: ConnDep, scene_id: str) -> Response:
    row = repository.get(conn, "scenes", [scene_id])
    if row is None:
        return error_page(request, NotFound(f"no scene {scene_id!r} in the registry; list them at /scenes"))
    offers = repository.children(conn, "offers", "scene_id", scene_id)
    names = repository.names(conn, [row["merchant"], row["evaluator"]])
    return render(request, "scene.html", scene=row, offers=offers, names=names)


@router.get("/offers")
def offers(request: Request, conn: ConnDep, state: OfferState = "", cursor: str | None = None) -> Response:
    return _filtered(request, conn, "offers", "/offers", {"state": state}, cursor)


@router.get("/offers/{offer_id}")
def offer(request: Request, conn: ConnDep, offer_id: str) -> Response:
    row = repository.get(conn, "offers", [offer_id])
    if row is None:
        return error_page(request, NotFound(f"no offer {offer_id!r} in the registry; list them at /offers"))
    scene_row = repository.get(conn, "scenes", [row["scene_id"]])
    names = repository.names(conn, [row["merchant"]])
    return render(request, "offer.html", offer=row, scene=scene_row, names=names)


@router.get("/points/batches/{batch_id}")
def points_batch(request: Request, conn: ConnDep, batch_id: str) -> Response:
    try:
        batch = points_service.attestation(conn, batch_id)
    except RegistryError as exc:
        return error_page(request, exc)
    rule = repository.get(conn, "points_rules", [batch.rule_id, batch.version])
    names = repository.names(conn, [batch.provider])
    return render(request, "points_batch.html", batch=batch, rule=rule, names=names)


# --- the log -------------------------------------------------------------------------------------------


@router.get("/log")
def log(request: Request, conn: ConnDep, settings: SettingsDep) -> Response:
    return render(
        request,
        "log.html",
        checkpoint=service.latest_checkpoint(conn),
        size=log_service.log_size(conn),
        base_url=settings.public_base_url,
    )


__all__ = ["router"]
