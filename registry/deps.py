"""Request dependencies, as ``Annotated`` aliases so route signatures read like sentences.

The ones that only look something up on the app are ``async def``: FastAPI runs a plain ``def``
dependency in its thread pool, and the hop there and back costs more than the lookup.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine

from ledger.storage.engine import read_transaction
from registry.errors import ServiceUnavailable
from registry.settings import Settings
from registry.transactions.sequencer import Sequencer


async def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def get_engine(request: Request) -> Engine:
    return cast(Engine, request.app.state.engine)


def read_conn(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Connection]:
    """One read transaction (a consistent snapshot of the log) for the whole request."""
    with read_transaction(engine) as conn:
        yield conn


async def get_sequencer(request: Request) -> Sequencer:
    """The app's one writer; a registry without a log signing key is read-only (503)."""
    sequencer = getattr(request.app.state, "sequencer", None)
    if sequencer is None:
        raise ServiceUnavailable("registry is read-only: no log signing key configured", "read-only")
    return cast(Sequencer, sequencer)


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
ConnDep = Annotated[Connection, Depends(read_conn)]
SequencerDep = Annotated[Sequencer, Depends(get_sequencer)]
