"""Times as the pages show them: to the second in Chengdu's time, with the UTC time on hover.

The log stores UTC (``2026-12-02T10:04:05.123456Z``); a reader in Chengdu thinks in China Standard Time,
which has been UTC+8 all year since 1991, so a fixed offset is exact and needs no time zone database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from markupsafe import Markup, escape

CHINA = timezone(timedelta(hours=8), "UTC+8")
"""Asia/Shanghai, the zone of every time a page shows."""


def when(value: str | datetime | None) -> Markup | str:
    """``<time>`` showing `value` as ``2026-12-02 18:04:05 (UTC+8)``, its UTC time in ``datetime`` and ``title``.

    Anything that is not a time (None, a malformed text) is shown as it is.
    """
    if value is None:
        return "—"
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the registry's times are UTC
    utc = moment.astimezone(UTC)
    local = moment.astimezone(CHINA)
    machine = utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return Markup('<time datetime="{}" title="{}">{} (UTC+8)</time>').format(
        machine, escape(utc.strftime("%Y-%m-%d %H:%M:%S UTC")), local.strftime("%Y-%m-%d %H:%M:%S")
    )
