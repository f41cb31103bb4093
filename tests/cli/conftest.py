"""What every `cdcer` test starts from: no width or verifier key inherited from the shell or the test runner."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_inherited_cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # pytest-xdist's workers run with COLUMNS set, which the CLI honours (tables fit it): tests that need a
    # width pass one. A CDCER_VKEY exported in the shell would pin a key the tests did not choose.
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("CDCER_VKEY", raising=False)
