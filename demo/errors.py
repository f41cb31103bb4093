"""The demo's errors (here so that `demo.points` raises them without importing the package it is part of)."""

from __future__ import annotations


class DemoError(Exception):
    """The demo cannot run on this registry (no genesis, a key that is not the authority's...)."""


class DemoRefused(DemoError):
    """The registry refused one of the demo's transactions; what came before it stays appended."""
