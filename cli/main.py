"""The `cdcer` command: one Typer app, a sub-app per command group."""

from __future__ import annotations

from importlib.metadata import version as dist_version

import typer

from cli import audit, demo, registry

app = typer.Typer(
    name="cdcer",
    help="CDCER registry: verifiable carbon credits.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(audit.app, name="audit")
app.command("init")(registry.init)
app.command("serve")(registry.serve)
app.command("demo")(demo.demo)


@app.command("version")
def version() -> None:
    """Print the version."""
    typer.echo(dist_version("cdcer"))
