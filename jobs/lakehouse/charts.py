"""Charts and pages people look at instead of reading numbers: inline SVG, no scripts.

Reports (journey metrics, identity evaluation) are single HTML files that open anywhere, offline,
and can be attached to a ticket; they hold aggregates only, never PII.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

PALETTE = ("#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2")


def svg_frame(
    title: str, width: int, height: int, left: int, right: int, top: int, bottom: int
) -> list[str]:
    """The opening of a chart's SVG: the element, its title and both axes, inside the margins
    ``left``, ``right``, ``top`` and ``bottom``; the caller adds its marks and closes it."""
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" '
        f'y2="{height - bottom}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#999"/>',
    ]


def line_chart(title: str, xs: list[str], series: dict[str, list[Any]]) -> str:
    """One SVG line per series over the labels ``xs`` (first and last are printed); ``None``
    values are gaps. The y axis runs from 0 to the largest value."""
    width, height, left, right, top, bottom = 520, 240, 48, 110, 28, 34
    values = [float(v) for vs in series.values() for v in vs if v is not None]
    peak = max(values, default=0.0) or 1.0
    span = max(len(xs) - 1, 1)

    def x(i: int) -> float:
        return left + i * (width - left - right) / span

    def y(v: float) -> float:
        return height - bottom - float(v) / peak * (height - top - bottom)

    parts = [
        *svg_frame(title, width, height, left, right, top, bottom),
        f'<text x="{left - 4}" y="{top + 4}" font-size="10" text-anchor="end">{peak:g}</text>',
        f'<text x="{left - 4}" y="{height - bottom}" font-size="10" text-anchor="end">0</text>',
    ]
    if xs:
        parts += [
            f'<text x="{x(0)}" y="{height - 16}" font-size="10">{xs[0]}</text>',
            f'<text x="{x(len(xs) - 1)}" y="{height - 16}" font-size="10" '
            f'text-anchor="end">{xs[-1]}</text>',
        ]
    for n, (channel, vs) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(vs) if v is not None)
        if points:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'
            )
        legend_y = top + 14 * n + 8
        parts += [
            f'<rect x="{width - right + 10}" y="{legend_y - 8}" width="10" height="10" '
            f'fill="{colour}"/>',
            f'<text x="{width - right + 24}" y="{legend_y + 1}" font-size="11">'
            f"{html.escape(channel)}</text>",
        ]
    parts.append("</svg>")
    return "".join(parts)


def write_html_page(path: Path, title: str, intro: str, body: str) -> None:
    """Write a report page atomically: readers never see a half-written file."""
    style = (
        "body{font-family:sans-serif;margin:24px}svg{margin:8px;border:1px solid #eee}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right}"
    )
    page = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>omnicdp {html.escape(title)}'
        f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(intro)}</p>{body}</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, path)
