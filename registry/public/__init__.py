"""The public registry over HTTP: methodologies, projects, units, retirements, events, claims (no key)."""
