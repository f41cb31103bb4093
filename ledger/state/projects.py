"""Methodologies, projects and monitoring reports: from a published methodology to a verified report.

The authority publishes and withdraws methodologies. A project owner submits a project under an exact
methodology version; a verifier other than the owner validates it; the authority registers, rejects or
asks for changes (then the owner resubmits), and later suspends, reinstates or closes it. For a
registered project the owner submits monitoring reports over periods that have ended, lie in the
crediting period and never overlap, each naming the verifier it engaged: only that verifier verifies
(never more than claimed) or rejects it; an authority may also reject it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date

from pydantic import BaseModel

from ledger.state.context import Context, fail, project
from ledger.state.outcomes import (
    MethodologyChanged,
    Outcome,
    ProjectScoped,
    ProjectStateSet,
    ProjectSubmitted,
    ProjectValidated,
    ReportRejected,
    ReportSubmitted,
    ReportVerified,
)
from ledger.state.points import claimed_by_a_rule, scope_key
from ledger.state.records import Methodology, Project, ProjectScopes, Report
from ledger.state.spec import KindSpec
from ledger.transactions import (
    MethodologyPublish,
    MethodologyWithdraw,
    Opinion,
    ProjectClose,
    ProjectDecide,
    ProjectDecision,
    ProjectReinstate,
    ProjectResubmit,
    ProjectScope,
    ProjectSubmit,
    ProjectSuspend,
    ProjectValidate,
    ReportReject,
    ReportSubmit,
    ReportVerify,
    Role,
)


def _methodology_publish(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, MethodologyPublish)
    if (p.code, p.version) in ctx.state.methodologies:
        raise fail("conflict", f"methodology {p.code} version {p.version} is already published")
    ctx.put(Methodology(p.code, p.version, p.title, p.sector, p.document_sha256, "active", ctx.index))
    return MethodologyChanged(p.kind, p.code, p.version)


def _methodology_withdraw(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, MethodologyWithdraw)
    found = ctx.state.methodologies.get((p.code, p.version))
    if found is None:
        raise fail("not_found", f"no methodology {p.code} version {p.version}")
    if found.status != "active":
        raise fail("invalid_state", f"methodology {p.code} version {p.version} is already withdrawn")
    ctx.put(replace(found, status="withdrawn"))
    return MethodologyChanged(p.kind, p.code, p.version)


def _check_methodology(ctx: Context, code: str, version: str) -> None:
    found = ctx.state.methodologies.get((code, version))
    if found is None:
        raise fail("not_found", f"no methodology {code} version {version} is published")
    if found.status != "active":
        raise fail("invalid_state", f"methodology {code} version {version} is withdrawn")


def _project_submit(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ProjectSubmit)
    d = p.details
    _check_methodology(ctx, d.methodology_code, d.methodology_version)
    pid = f"P{len(ctx.state.projects) + 1:04d}"
    ctx.put(
        Project(
            pid,
            ctx.actor,
            d.methodology_code,
            d.methodology_version,
            d.title,
            d.district,
            d.description,
            d.crediting_start.isoformat(),
            d.crediting_end.isoformat(),
            d.estimated_annual_reductions,
            d.documents,
            "submitted",
            None,
            None,
            False,
            ctx.index,
            ctx.index,
        )
    )
    return ProjectSubmitted(p.kind, pid)


def _project_resubmit(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ProjectResubmit)
    proj = project(ctx, p.project_id)
    if proj.owner != ctx.actor:
        raise fail("forbidden", f"project {proj.id} belongs to {proj.owner}, not {ctx.actor}")
    if proj.state != "changes_requested":
        raise fail("invalid_state", f"project {proj.id} is {proj.state}; only changes_requested can be resubmitted")
    d = p.details
    _check_methodology(ctx, d.methodology_code, d.methodology_version)
    ctx.put(
        replace(
            proj,
            methodology_code=d.methodology_code,
            methodology_version=d.methodology_version,
            title=d.title,
            district=d.district,
            description=d.description,
            crediting_start=d.crediting_start.isoformat(),
            crediting_end=d.crediting_end.isoformat(),
            estimated_annual_reductions=d.estimated_annual_reductions,
            documents=d.documents,
            state="submitted",
            validator=None,
            opinion=None,
            updated_at=ctx.index,
        )
    )
    return ProjectSubmitted(p.kind, proj.id)


def _project_validate(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ProjectValidate)
    proj = project(ctx, p.project_id)
    if proj.owner == ctx.actor:
        raise fail("conflict_of_interest", f"{ctx.actor} owns project {proj.id} and may not validate it")
    if proj.state != "submitted":
        raise fail("invalid_state", f"project {proj.id} is {proj.state}; only a submitted project is validated")
    ctx.put(replace(proj, state="validated", validator=ctx.actor, opinion=p.opinion.value, updated_at=ctx.index))
    return ProjectValidated(p.kind, proj.id, p.opinion.value)


def _project_decide(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ProjectDecide)
    proj = project(ctx, p.project_id)
    if proj.owner == ctx.actor:
        raise fail("conflict_of_interest", f"{ctx.actor} owns project {proj.id} and may not decide on it")
    if p.decision is ProjectDecision.REGISTER:
        if proj.state != "validated" or proj.opinion != Opinion.POSITIVE.value:
            raise fail(
                "invalid_state",
                f"project {proj.id} is {proj.state}"
                + (f" with a {proj.opinion} opinion" if proj.opinion else "")
                + "; registration needs a positive validation",
            )
        new_state = "registered"
    else:
        if proj.state not in ("submitted", "validated"):
            raise fail("invalid_state", f"project {proj.id} is {proj.state}; only a pending project is decided")
        new_state = "rejected" if p.decision is ProjectDecision.REJECT else "changes_requested"
    ctx.put(replace(proj, state=new_state, updated_at=ctx.index))
    return ProjectStateSet(p.kind, proj.id, new_state)


def _project_lifecycle(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ProjectSuspend | ProjectReinstate | ProjectClose)
    proj = project(ctx, p.project_id)
    moves = {
        "project.suspend": (("registered",), "suspended"),
        "project.reinstate": (("suspended",), "registered"),
        "project.close": (("registered", "suspended"), "closed"),
    }
    sources, target = moves[p.kind]
    if proj.state not in sources:
        raise fail("invalid_state", f"project {proj.id} is {proj.state}; {p.kind} needs {' or '.join(sources)}")
    ctx.put(replace(proj, state=target, updated_at=ctx.index))
    return ProjectStateSet(p.kind, proj.id, target)


def _report_submit(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ReportSubmit)
    proj = project(ctx, p.project_id)
    if proj.owner != ctx.actor:
        raise fail("forbidden", f"project {proj.id} belongs to {proj.owner}, not {ctx.actor}")
    if proj.state != "registered":
        raise fail("invalid_state", f"project {proj.id} is {proj.state}; reports need a registered project")
    start, end = p.period_start.isoformat(), p.period_end.isoformat()
    if start < proj.crediting_start or end > proj.crediting_end:
        raise fail(
            "outside_crediting_period",
            f"monitoring period {start}..{end} is outside the crediting period "
            f"{proj.crediting_start}..{proj.crediting_end} of {proj.id}",
        )
    if p.period_end >= ctx.time.date():
        raise fail(
            "period_not_ended",
            f"monitoring period {start}..{end} has not ended (the registry's date is {ctx.time.date()} UTC); "
            "report a period after its last day",
        )
    for rid in ctx.state.reports_by_project.get(proj.id, []):
        other = ctx.state.reports[rid]
        if other.state != "rejected" and start <= other.period_end and other.period_start <= end:
            raise fail(
                "overlapping_period",
                f"monitoring period {start}..{end} overlaps report {rid} ({other.period_start}..{other.period_end})",
            )
    for scope in _scopes(ctx, proj.id):
        _refuse_if_claimed_by_a_rule(ctx, scope, p.period_start, p.period_end, f"report over {start}..{end}")
    _check_engaged_verifier(ctx, proj, p.verifier)
    rid = f"MR{len(ctx.state.reports) + 1:04d}"
    ctx.put(Report(rid, proj.id, start, end, p.claimed, None, p.verifier, "submitted", ctx.index, ctx.index))
    return ReportSubmitted(p.kind, rid, proj.id, p.verifier)


def _scopes(ctx: Context, project_id: str) -> tuple[str, ...]:
    declared = ctx.state.project_scopes.get(project_id)
    return () if declared is None else declared.scopes


def _refuse_if_claimed_by_a_rule(ctx: Context, scope: str, start: date, end: date, what: str) -> None:
    """One reduction, one claimant: a claim-mode points rule in force over the period holds the scope."""
    found = claimed_by_a_rule(ctx.state, scope, start, end)
    if found is not None:
        rule, since, until = found
        raise fail(
            "claimed_elsewhere",
            f"{what}: points rule {rule.rule_id} (version {rule.version}, claim mode, in force from {since}"
            + (f" to {until}" if until else "")
            + f") already claims the reductions of {scope}; one reduction has one claimant",
        )


def _project_scope(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ProjectScope)
    proj = project(ctx, p.project_id)
    if proj.owner != ctx.actor:
        raise fail("forbidden", f"project {proj.id} belongs to {proj.owner}, not {ctx.actor}")
    if proj.state in ("rejected", "closed"):
        raise fail("invalid_state", f"project {proj.id} is {proj.state}; its scope can no longer change")
    scopes = tuple(sorted({scope_key(s.displaced_source, s.subject.value) for s in p.scopes}))
    if len(scopes) != len(p.scopes):
        raise fail("invalid_scope", f"the scope of {proj.id} lists a displaced source and subject twice")
    # A newly declared scope must not reach back over a reported period that a rule claims.
    for scope in set(scopes) - set(_scopes(ctx, proj.id)):
        for rid in ctx.state.reports_by_project.get(proj.id, []):
            rep = ctx.state.reports[rid]
            if rep.state != "rejected":
                start, end = date.fromisoformat(rep.period_start), date.fromisoformat(rep.period_end)
                _refuse_if_claimed_by_a_rule(ctx, scope, start, end, f"report {rid} of {proj.id}")
    ctx.put(ProjectScopes(proj.id, scopes, ctx.index))
    return ProjectScoped(p.kind, proj.id, scopes)


def _check_engaged_verifier(ctx: Context, proj: Project, pid: str) -> None:
    """The verification body a report names must be an active verifier other than the project's owner."""
    if pid == proj.owner:
        raise fail("conflict_of_interest", f"{pid} owns project {proj.id} and may not verify its reports")
    verifier = ctx.state.participants.get(pid)
    if verifier is None:
        raise fail("not_found", f"no participant {pid!r} is registered to verify the report")
    if verifier.status != "active" or Role.VERIFIER.value not in verifier.roles:
        raise fail("invalid_verifier", f"{pid} cannot verify reports (suspended, or not a verifier)")


def _require_engaged(ctx: Context, rep: Report, action: str) -> None:
    """Only the verifier engaged for a report (or, to reject it, an authority) may act on it."""
    if rep.verifier != ctx.actor:
        raise fail(
            "not_engaged",
            f"report {rep.id} engaged {rep.verifier} to verify it; {ctx.actor} may not {action} it",
        )


def find_report(ctx: Context, rid: str) -> Report:
    found = ctx.state.reports.get(rid)
    if found is None:
        raise fail("not_found", f"no monitoring report {rid}")
    return found


def _report_verify(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ReportVerify)
    rep = find_report(ctx, p.report_id)
    proj = ctx.state.projects[rep.project_id]
    if proj.owner == ctx.actor:
        raise fail("conflict_of_interest", f"{ctx.actor} owns project {proj.id} and may not verify its report")
    _require_engaged(ctx, rep, "verify")
    if rep.state != "submitted":
        raise fail("invalid_state", f"report {rep.id} is {rep.state}; only a submitted report is verified")
    if p.verified > rep.claimed:
        raise fail(
            "verified_exceeds_claimed",
            f"verified quantity {p.verified} is more than the {rep.claimed} claimed in report {rep.id}",
        )
    ctx.put(replace(rep, verified=p.verified, verifier=ctx.actor, state="verified", updated_at=ctx.index))
    return ReportVerified(p.kind, rep.id, p.verified)


def _report_reject(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ReportReject)
    rep = find_report(ctx, p.report_id)
    if rep.state not in ("submitted", "verified"):
        raise fail("invalid_state", f"report {rep.id} is {rep.state}; it can no longer be rejected")
    if ctx.state.projects[rep.project_id].owner == ctx.actor:
        raise fail("conflict_of_interest", f"{ctx.actor} owns the project of report {rep.id}")
    if Role.AUTHORITY.value not in ctx.state.participants[ctx.actor].roles:
        _require_engaged(ctx, rep, "reject")
    ctx.put(replace(rep, state="rejected", updated_at=ctx.index))
    return ReportRejected(p.kind, rep.id)


def _spec(
    payload: type[BaseModel],
    roles: set[Role],
    handler: Callable[[Context], Outcome],
    codes: str,
    role: str | None = None,
) -> KindSpec:
    return KindSpec(payload, frozenset(roles), handler, frozenset(codes.split()), certificate_role=role)


_LIFECYCLE = "invalid_state not_found"
SPECS = (
    _spec(MethodologyPublish, {Role.AUTHORITY}, _methodology_publish, "conflict"),
    _spec(MethodologyWithdraw, {Role.AUTHORITY}, _methodology_withdraw, "invalid_state not_found"),
    _spec(ProjectSubmit, {Role.PROJECT_OWNER}, _project_submit, "invalid_state not_found"),
    _spec(ProjectResubmit, {Role.PROJECT_OWNER}, _project_resubmit, "forbidden invalid_state not_found"),
    _spec(ProjectValidate, {Role.VERIFIER}, _project_validate, "conflict_of_interest invalid_state not_found"),
    _spec(ProjectDecide, {Role.AUTHORITY}, _project_decide, "conflict_of_interest invalid_state not_found"),
    _spec(ProjectSuspend, {Role.AUTHORITY}, _project_lifecycle, _LIFECYCLE),
    _spec(ProjectReinstate, {Role.AUTHORITY}, _project_lifecycle, _LIFECYCLE),
    _spec(ProjectClose, {Role.AUTHORITY}, _project_lifecycle, _LIFECYCLE),
    _spec(
        ProjectScope,
        {Role.PROJECT_OWNER},
        _project_scope,
        "claimed_elsewhere forbidden invalid_scope invalid_state not_found",
    ),
    _spec(
        ReportSubmit,
        {Role.PROJECT_OWNER},
        _report_submit,
        "claimed_elsewhere conflict_of_interest forbidden invalid_state invalid_verifier not_found "
        "outside_crediting_period overlapping_period period_not_ended",
        "report",
    ),
    _spec(
        ReportVerify,
        {Role.VERIFIER},
        _report_verify,
        "conflict_of_interest invalid_state not_engaged not_found verified_exceeds_claimed",
        "verification",
    ),
    _spec(
        ReportReject,
        {Role.VERIFIER, Role.AUTHORITY},
        _report_reject,
        "conflict_of_interest invalid_state not_engaged not_found",
    ),
)
