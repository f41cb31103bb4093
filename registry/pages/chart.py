"""The home page's chart: units issued and retired per period, as inline SVG drawn on the server."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape

WIDTH = 640
HEIGHT = 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 16, 40
ISSUED_COLOUR = "#1d5f3a"  # dark green: 7.9:1 on white
RETIRED_COLOUR = "#8a4b00"  # dark amber: 6.1:1 on white


@dataclass(frozen=True, slots=True)
class Series:
    """Units issued and retired per period label (``2023`` or ``2023-04``), in period order."""

    period: str  # "year" or "month"
    labels: tuple[str, ...]
    issued: tuple[int, ...]
    retired: tuple[int, ...]


def series(issued: Iterable[tuple[str, int]], retired: Iterable[tuple[str, int]]) -> Series:
    """Sum (UTC time, quantity) pairs by month, or by year when they span more than two years."""
    issued, retired = list(issued), list(retired)
    months = sorted({time[:7] for time, _ in issued + retired})
    by_year = len(months) > 24 or len({m[:4] for m in months}) > 2
    width = 4 if by_year else 7

    def totals(pairs: list[tuple[str, int]]) -> dict[str, int]:
        out: dict[str, int] = {}
        for time, quantity in pairs:
            out[time[:width]] = out.get(time[:width], 0) + quantity
        return out

    issued_by, retired_by = totals(issued), totals(retired)
    labels = tuple(sorted(set(issued_by) | set(retired_by)))
    return Series(
        "year" if by_year else "month",
        labels,
        tuple(issued_by.get(label, 0) for label in labels),
        tuple(retired_by.get(label, 0) for label in labels),
    )


def svg(data: Series, *, names: Mapping[str, str], title: str, description: str) -> str:
    """Grouped bars (issued, retired) per period with a y axis, a legend, a title and a description."""
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    top = _nice_ceiling(max((*data.issued, *data.retired, 1)))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-title chart-desc" class="chart">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{escape(description)}</desc>',
    ]
    for step in range(5):  # y axis: 0, 1/4 ... top
        value = top * step // 4
        y = _TOP + plot_h - plot_h * step / 4
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{WIDTH - _RIGHT}" y2="{y:.1f}" stroke="#c8c8c8"/>')
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#333">{value:,}</text>'
        )
    count = max(len(data.labels), 1)
    slot = plot_w / count
    bar = min(slot * 0.38, 40)
    for i, label in enumerate(data.labels):
        x = _LEFT + slot * i + slot / 2
        for offset, value, colour, name in (
            (-bar, data.issued[i], ISSUED_COLOUR, names["issued"]),
            (0.0, data.retired[i], RETIRED_COLOUR, names["retired"]),
        ):
            h = plot_h * value / top
            parts.append(
                f'<rect x="{x + offset:.1f}" y="{_TOP + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(label)} {escape(name)}: {value:,}</title></rect>'
            )
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - _BOTTOM + 16}" text-anchor="middle" font-size="11" fill="#333">'
            f"{escape(label)}</text>"
        )
    legend_y = HEIGHT - 10
    for i, (colour, name) in enumerate(((ISSUED_COLOUR, names["issued"]), (RETIRED_COLOUR, names["retired"]))):
        x = _LEFT + i * 120
        parts.append(f'<rect x="{x}" y="{legend_y - 9}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{legend_y}" font-size="11" fill="#333">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 4, 5 or 10 times a power of ten, times 4, that is at least `value`."""
    magnitude = 1
    while True:
        for factor in (1, 2, 4, 5, 10):
            if factor * magnitude * 4 >= value:
                return factor * magnitude * 4
        magnitude *= 10
