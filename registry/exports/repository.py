"""The exports' own queries: what the public registry's repository does not already answer."""

from __future__ import annotations

from sqlalchemy import select

from registry.public.repository import Condition, table


def batches_under_methodology(code: str) -> Condition:
    """Batches of projects that follow methodology `code` (any version)."""
    projects = table("projects")
    return table("batches").c.project_id.in_(select(projects.c.id).where(projects.c.methodology_code == code))
