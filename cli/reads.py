"""The reads a user needs: my holdings and history (signed, RFC 9421), a project, a serial, an event.

Account reads are private: the request is signed with the user's registered key
(`registry.accounts.signatures.sign_request`), and the registry answers only the holder, the authority
and auditors. The others are the registry's public pages, as JSON or tables.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from cli.client import (
    DEFAULT_REGISTRY,
    ActorOpt,
    Client,
    JsonOpt,
    KeyOpt,
    RegistryOpt,
    show_json,
    show_record,
    show_rows,
)
from cli.console import plural
from cli.writes import event, project

app = (
    typer.Typer()
)  # top-level reads: holdings, history, serial; `project show` and `event show` join cli.writes' groups

Account = Annotated[str | None, typer.Argument(help="The account (default: yours, --as).")]
# Time and block are in --json; the table keeps to what fits a terminal.
_MOVEMENT_COLUMNS = ["entry", "action", "quantity", "from_holder", "to_holder", "ref"]


def _all_pages(client: Client, path: str, field: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Follow an account read's cursor to the end: the first page's document and every item."""
    first: dict[str, Any] = client.get(path, signed=True)
    items: list[dict[str, Any]] = list(first[field])
    cursor = first.get("next_cursor")
    while cursor:
        page = client.get(f"{path}?cursor={quote(cursor)}", signed=True)
        items.extend(page[field])
        cursor = page.get("next_cursor")
    return first, items


@app.command("holdings")
def holdings(
    account: Account = None,
    registry: RegistryOpt = DEFAULT_REGISTRY,
    actor: ActorOpt = None,
    key_file: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The blocks an account holds and its balance (signed with your key)."""
    client = Client(registry, actor=actor, key_file=key_file)
    try:
        name = account or client.need_actor()
        first, blocks = _all_pages(client, f"/v1/accounts/{quote(name, safe='')}/holdings", "blocks")
    finally:
        client.close()
    document = {"account": first["account"], "balance": first["balance"], "frozen": first["frozen"], "blocks": blocks}
    if as_json:
        show_json(document)
        return
    show_rows(blocks, ["block", "quantity", "state"], title=f"{name}: {plural(first['balance'], 'unit')}")


@app.command("history")
def history(
    account: Account = None,
    registry: RegistryOpt = DEFAULT_REGISTRY,
    actor: ActorOpt = None,
    key_file: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every movement of units into or out of an account, oldest first (signed with your key)."""
    client = Client(registry, actor=actor, key_file=key_file)
    try:
        name = account or client.need_actor()
        _, items = _all_pages(client, f"/v1/accounts/{quote(name, safe='')}/history", "items")
    finally:
        client.close()
    if as_json:
        show_json({"account": name, "items": items})
        return
    show_rows(items, [*_MOVEMENT_COLUMNS[:2], "direction", *_MOVEMENT_COLUMNS[2:]], title=f"{name}: history")


def _public(registry: str, path: str) -> Any:
    client = Client(registry)
    try:
        return client.get(path)
    finally:
        client.close()


SERIAL_PAGE = 500
"""Movements asked for per page of a serial's history (the registry's most)."""


def _serial_history(registry: str, path: str) -> dict[str, Any]:
    """A serial's document with its whole history: the first page's, then every next page's movements."""
    client = Client(registry)
    try:
        document: dict[str, Any] = client.get(f"{path}?limit={SERIAL_PAGE}")
        cursor = document.pop("next_cursor", None)
        while cursor:
            page = client.get(f"{path}?limit={SERIAL_PAGE}&cursor={quote(cursor)}")
            document["history"].extend(page["history"])
            cursor = page.get("next_cursor")
    finally:
        client.close()
    return document


@app.command("serial")
def serial(
    serial: Annotated[str, typer.Argument(help="A serial or serial block, e.g. CDCER-P0001-2023-B0001-000001.")],
    registry: RegistryOpt = DEFAULT_REGISTRY,
    as_json: JsonOpt = False,
) -> None:
    """A serial's batch, where its units are now, and every lifecycle event."""
    document = _serial_history(registry, f"/v1/serials/{quote(serial, safe='')}")
    if as_json:
        show_json(document)
        return
    show_record(document["batch"], title=f"{document['serial']}: batch")
    show_rows(document["blocks"], ["block", "quantity", "state", "holder", "ref"], title="now")
    show_rows(document["history"], _MOVEMENT_COLUMNS, title="history")


@project.command("show")
def project_show(
    project_id: Annotated[str, typer.Argument(help="The project id, e.g. P0001.")],
    registry: RegistryOpt = DEFAULT_REGISTRY,
    as_json: JsonOpt = False,
) -> None:
    """A project, its monitoring reports and its issued batches."""
    document = _public(registry, f"/v1/projects/{quote(project_id, safe='')}")
    if as_json:
        show_json(document)
        return
    show_record(document, title=f"project {project_id}")
    show_rows(
        document["reports"], ["id", "period_start", "period_end", "claimed", "verified", "state"], title="reports"
    )
    show_rows(document["batches"], ["id", "vintage", "quantity", "owner", "issued_time"], title="batches")


@event.command("show")
def event_show(
    event_id: Annotated[str, typer.Argument(help="The event id, e.g. E0001.")],
    registry: RegistryOpt = DEFAULT_REGISTRY,
    as_json: JsonOpt = False,
) -> None:
    """An event, its footprint and its carbon-neutral claim (if issued)."""
    client = Client(registry)
    try:
        document: dict[str, Any] = client.get(f"/v1/events/{quote(event_id, safe='')}")
        claim_id = document.get("claim_id")
        claim = client.get(f"/v1/claims/{quote(claim_id, safe='')}") if claim_id else None
    finally:
        client.close()
    if as_json:
        show_json({"event": document, "claim": claim})
        return
    show_record(document, title=f"event {event_id}")
    if claim is not None:
        show_record(claim, title=f"claim {claim_id}")
