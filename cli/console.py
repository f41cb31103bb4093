"""Shared CLI plumbing: the stderr console, exit codes and one-line errors."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

EXIT_OK, EXIT_INTEGRITY, EXIT_USAGE, EXIT_OPERATIONAL = 0, 1, 2, 3

err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int) -> NoReturn:
    """Print a one-line error on stderr and exit with ``code``."""
    err.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)
