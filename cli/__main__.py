"""`python -m cli` runs the `cdcer` command."""

from cli.main import app

app()
