"""Exports of issuances, retirements and cancellations as CSV and JSON Lines (never mixed)."""
