"""The `cdcer` command: one Typer app, a sub-app per command group."""

from __future__ import annotations

from importlib.metadata import version as dist_version

import typer

from cli import audit, certificate, demo, keys, points, reads, registry, witness, writes
from cli.console import JsonErrorsGroup

app = typer.Typer(
    cls=JsonErrorsGroup,
    name="cdcer",
    help="CDCER registry: verifiable carbon credits. Hashes are printed as the HTTP API gives them: the log's "
    "(Merkle roots, leaf, chain and proof hashes) in base64, documents' SHA-256 in hex; key ids in hex.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(audit.app, name="audit")
app.add_typer(witness.app, name="witness")
app.add_typer(keys.app, name="keys")
app.add_typer(certificate.app, name="certificate")
app.command("init")(registry.init)
app.command("serve")(registry.serve)
app.command("demo")(demo.demo)
for _name, _group in writes.GROUPS.items():  # participant, key, methodology, project, report, event, claim
    app.add_typer(_group, name=_name)
witness.app.add_typer(writes.witness)  # `cdcer witness register|remove`: the registry's witness transactions
app.add_typer(writes.units)  # issue, transfer, retire, cancel, freeze, unfreeze
app.add_typer(reads.app)  # holdings, history, serial
for _name, _group in points.GROUPS.items():  # the public path: points, scene, offer, redemption
    app.add_typer(_group, name=_name)


@app.command("version")
def version() -> None:
    """Print the version."""
    typer.echo(dist_version("cdcer"))
