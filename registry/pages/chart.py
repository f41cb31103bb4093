"""The home page's chart: units issued and retired per year, as inline SVG drawn on the server."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape

WIDTH = 640
HEIGHT = 280
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 16, 60
ISSUED_COLOUR = "#1d5f3a"  # dark green: 7.9:1 on white
RETIRED_COLOUR = "#8a4b00"  # dark amber: 6.1:1 on white
MAX_GAP_FILL = 40
"""Years missing between the first and the last are drawn as empty slots, up to this many years in all."""


@dataclass(frozen=True, slots=True)
class Series:
    """Units issued and retired per year label (``2023``), in year order."""

    labels: tuple[str, ...]
    issued: tuple[int, ...]
    retired: tuple[int, ...]


def series(issued: Iterable[tuple[int, int]], retired: Iterable[tuple[int, int]]) -> Series:
    """Sum (year, quantity) pairs per year; the years between the first and the last are all shown.

    The caller decides what year a quantity belongs to (`registry.pages.service.activity`: issuance by
    vintage, a retirement by the year it was for).
    """

    def totals(pairs: Iterable[tuple[int, int]]) -> dict[int, int]:
        out: dict[int, int] = {}
        for year, quantity in pairs:
            out[year] = out.get(year, 0) + quantity
        return out

    issued_by, retired_by = totals(issued), totals(retired)
    years = sorted(set(issued_by) | set(retired_by))
    if years and years[-1] - years[0] < MAX_GAP_FILL:
        years = list(range(years[0], years[-1] + 1))  # an empty year is a gap on the axis, not skipped
    return Series(
        tuple(str(year) for year in years),
        tuple(issued_by.get(year, 0) for year in years),
        tuple(retired_by.get(year, 0) for year in years),
    )


def svg(data: Series, *, names: Mapping[str, str], axis: str, title: str, description: str) -> str:
    """Grouped bars (issued, retired) per year with both axes, a legend, a title and a description."""
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
        for offset, value, colour, name, series_name in (
            (-bar, data.issued[i], ISSUED_COLOUR, names["issued"], "issued"),
            (0.0, data.retired[i], RETIRED_COLOUR, names["retired"], "retired"),
        ):
            h = plot_h * value / top
            parts.append(
                f'<rect x="{x + offset:.1f}" y="{_TOP + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour}" data-series="{series_name}" data-year="{escape(label)}" data-value="{value}">'
                f"<title>{escape(label)} {escape(name)}: {value:,}</title></rect>"
            )
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - _BOTTOM + 16}" text-anchor="middle" font-size="11" fill="#333" '
            f'class="year">{escape(label)}</text>'
        )
    parts.append(
        f'<text x="{_LEFT + plot_w / 2:.1f}" y="{HEIGHT - _BOTTOM + 32}" text-anchor="middle" font-size="11" '
        f'fill="#333" class="axis">{escape(axis)}</text>'
    )
    legend_y = HEIGHT - 8
    for i, (colour, name) in enumerate(((ISSUED_COLOUR, names["issued"]), (RETIRED_COLOUR, names["retired"]))):
        x = _LEFT + i * plot_w // 2
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
