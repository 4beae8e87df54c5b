"""The journey report: every journey metric per channel over days, one HTML file with inline SVG."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame

from jobs.curate.journey_metrics import JOURNEY_TOTALS
from jobs.lakehouse.charts import line_chart, write_html_page
from schemas.settings import Settings

_CHARTS = (
    ("adoption_rate", "Adoption: share of known customers using the channel"),
    ("active_customers", "Active customers"),
    ("channel_switches", "Channel switches within a case (channel left)"),
    ("escalations_to_agent", "Escalations from self-service to an agent"),
    ("mean_resolution_hours", "Mean resolution time, hours (channel the case started on)"),
    ("p90_resolution_hours", "p90 resolution time, hours"),
    ("repeat_contact_rate", "Repeat contact within 7 days, share of contacts"),
)


def write_journey_report(journeys: DataFrame, settings: Settings) -> Path:
    """Charts of every journey metric per channel over days, as one HTML file with no scripts.

    The metrics table has one row per day and channel, so collecting it is small by design.
    """
    rows = [r.asDict() for r in journeys.orderBy("day", "channel").collect()]
    days = sorted({r["day"] for r in rows})
    channels = sorted({r["channel"] for r in rows})
    by_key = {(r["day"], r["channel"]): r for r in rows}
    charts = [
        line_chart(
            title,
            [d.isoformat() for d in days],
            {c: [by_key.get((d, c), {}).get(metric) for d in days] for c in channels},
        )
        for metric, title in _CHARTS
    ]
    path = settings.reports_dir / "journey_metrics.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(charts) + "<h2>Totals per channel</h2>" + _totals_table(rows, channels)
    write_html_page(
        path, "Journey metrics", "Per UTC day and channel, from gold.journey_metrics.", body
    )
    return path


def _totals_table(rows: list[dict[str, Any]], channels: list[str]) -> str:
    columns = JOURNEY_TOTALS
    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in columns)
    body = "".join(
        f"<tr><th>{html.escape(c)}</th>"
        + "".join(f"<td>{sum(r[k] or 0 for r in rows if r['channel'] == c)}</td>" for k in columns)
        + "</tr>"
        for c in channels
    )
    return f"<table><tr><th>channel</th>{head}</tr>{body}</table>"
