"""Retirement and claim certificates over HTTP: offline-verifiable JSON proof bundles (SPEC section 4)."""
