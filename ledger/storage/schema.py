"""Create or upgrade the ledger's tables by running the Alembic migrations (the only way they are made)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

import migrations
from ledger.errors import StorageError


def alembic_config(url: str) -> Config:
    """An Alembic configuration pointing at the packaged migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the migrations up to ``revision`` on the engine's database."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Run the migrations down to ``revision`` (``base`` drops everything)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def require_current(engine: Engine) -> None:
    """Refuse to work on a database whose schema is not at the latest migration."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if engine.dialect.name == "sqlite" and engine.url.database and not Path(engine.url.database).exists():
        raise StorageError(f"no ledger database at {engine.url.database}")
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot open the database: {str(exc).strip().splitlines()[0]}") from None
    if current != head:
        raise StorageError(
            f"database schema is at {current or 'nothing'}, the code needs {head}: run `cdcer init` or "
            "`alembic upgrade head`"
        )
