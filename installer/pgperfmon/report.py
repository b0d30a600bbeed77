"""`pgperfmon report`: the executive report as JSON, Markdown or one self-contained HTML file.

JSON is ``perfmon.executive_report(period)`` as the database returns it. The
Markdown and HTML reports show the same sections (executive summary, financial
impact, technical performance, top queries, anomalies, alerts,
recommendations), every figure with how it was computed; the HTML file carries
its CSS and SVG charts inline and no script, so it opens offline and in a mail
client. It reads as perfmon_reader (see reader.py).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
import psycopg

from pgperfmon import charts, db, reader, rendering

PERIODS = ("daily", "weekly", "monthly")
PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 30}
# Chart resolution: about 24-170 points (hourly rollups make an hour the finest step
# for anything older than the last rollup).
BUCKET_S = {"daily": 3600, "weekly": 3600, "monthly": 6 * 3600}


class ReportError(Exception):
    """The report could not be produced; the message says why."""


@dataclass
class Report:
    period: str
    data: dict[str, Any]
    trend: list[dict[str, Any]]
    database: str
    generated_at: datetime
    notes: rendering.Notes = field(default_factory=rendering.Notes)

    @property
    def window(self) -> tuple[datetime, datetime]:
        return period_window(self.data, self.period, self.generated_at)




def period_window(data: dict[str, Any], period: str, now: datetime) -> tuple[datetime, datetime]:
    p = data.get("period") if isinstance(data.get("period"), dict) else {}
    end = rendering.parse_ts(p.get("to")) or now
    start = rendering.parse_ts(p.get("from")) or end - timedelta(days=PERIOD_DAYS[period])
    return start, end


def fetch(conn: psycopg.Connection, period: str) -> Report:
    """The executive report of a period and the workload trend for its charts."""
    if period not in PERIODS:
        raise ReportError(f"unknown period {period!r}; expected one of {', '.join(PERIODS)}")
    try:
        row = conn.execute("SELECT perfmon.executive_report(%s) AS report, current_database() AS db, "
                           "now() AS now", (period,)).fetchone()
    except psycopg.errors.UndefinedFunction:
        raise ReportError("perfmon.executive_report() is missing in this database: "
                          "run pgperfmon install to upgrade it") from None
    except psycopg.Error as exc:
        raise ReportError(f"perfmon.executive_report({period!r}) failed: "
                          f"{db.redact(str(exc).strip())}") from None
    data = row["report"] or {}
    now = row["now"]
    start, end = period_window(data, period, now)
    try:
        trend = reader.rows(conn, "workload_trend",
                            {"from_ts": start, "to_ts": end, "bucket_s": BUCKET_S[period]})
    except psycopg.Error as exc:
        raise ReportError(f"perfmon.workload_trend() failed: {db.redact(str(exc).strip())}") from None
    return Report(period, data, trend, row["db"], now)


# --------------------------------------------------------------------------- charts

def _section(data: dict[str, Any], *path: str) -> Any:
    node: Any = data
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _value(node: Any) -> float | None:
    if isinstance(node, dict):
        node = node.get("value")
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def health_points(data: dict[str, Any]) -> list[tuple[datetime, Any]]:
    """The report's health_trend ([[ts, score], ...]) as chart points."""
    points = []
    for point in _section(data, "technical_performance", "health_trend") or []:
        if isinstance(point, (list, tuple)) and len(point) == 2:
            moment = rendering.parse_ts(point[0])
            if moment is not None:
                points.append((moment, point[1]))
    return points


def report_charts(r: Report) -> dict[str, Any]:
    """The SVG charts of the HTML report (charts.py; the dashboards draw the same)."""
    d = r.data
    trend_points = health_points(d)
    tps = [(row["ts"], row["tps"]) for row in r.trend]
    latency = [(row["ts"], row["mean_query_ms"]) for row in r.trend]
    bucket = rendering.digest().duration(BUCKET_S[r.period])
    window = r.window
    top = _section(d, "technical_performance", "top_queries") or []
    anomalies = _section(d, "technical_performance", "anomalies") or {}
    incidents = _section(d, "executive_summary", "incidents") or {}
    recs = d.get("recommendations") or []
    levels = ("emergency", "critical", "warning", "info")
    return {
        "health": charts.line_chart(
            [charts.Series("overall", trend_points)], title="Health score", unit="score",
            y_min=0, y_max=100, area=True, x_range=window,
            how="perfmon.health: mean overall score (0-100) per interval of the period; "
                "see docs/health.md for the components and weights.",
            no_data="no health score recorded in this period"),
        "tps": charts.line_chart(
            [charts.Series("tps", tps, "tps")], title="Transactions per second", unit="tps",
            x_range=window,
            how=f"perfmon.workload_trend: commits + rollbacks of all databases / seconds sampled, "
                f"per {bucket}.",
            no_data="no samples in this period"),
        "latency": charts.line_chart(
            [charts.Series("mean ms", latency, "ms")], title="Mean statement time", unit="ms",
            x_range=window,
            how=f"perfmon.workload_trend: execution ms / calls of all statements "
                f"(pg_stat_statements deltas), per {bucket}.",
            no_data="no statement calls in this period"),
        "top_queries": charts.bar_chart(
            [(str(q.get("query") or f"statement {q.get('stmt_id')}"), q.get("total_ms"))
             for q in top[:10] if isinstance(q, dict)],
            title="Top statements by total execution time", unit="ms",
            how="perfmon.statement_totals over the period (the source of perfmon.top_queries): "
                "total execution ms per statement.",
            no_data="no statement calls in this period"),
        "anomalies": charts.bar_chart(
            [(level, _value(anomalies.get(level))) for level in ("critical", "warning", "info")
             if isinstance(anomalies, dict) and _value(anomalies.get(level))],
            title="Anomaly episodes by severity", unit="",
            how="perfmon.anomalies: episodes that started in the period, by severity.",
            no_data="no anomaly in this period", colour=charts.PALETTE[3]),
        "alerts": charts.bar_chart(
            [(level, _value(incidents.get(level))) for level in levels
             if isinstance(incidents, dict) and _value(incidents.get(level))],
            title="Alerts fired by level", unit="",
            how="perfmon.alerts: alerts that fired in the period, by level.",
            no_data="no alert fired in this period", colour=charts.PALETTE[1]),
        "recommendations": charts.bar_chart(
            [(sev, float(n)) for sev in ("critical", "warning", "info")
             if (n := sum(1 for x in recs if isinstance(x, dict) and x.get("severity") == sev))],
            title="Open recommendations by severity", unit="",
            how="perfmon.recommendations: open findings of the advisor, by severity.",
            no_data="no open recommendation", colour=charts.PALETTE[2]),
    }


# --------------------------------------------------------------------------- output

def render_json(r: Report) -> str:
    return json.dumps(r.data, indent=2, default=str) + "\n"


def render_markdown(r: Report) -> str:
    return rendering.render("report.md", r=r, d=r.data, digest=rendering.digest(),
                            window=r.window)


def render_html(r: Report) -> str:
    r.notes = rendering.Notes()
    return rendering.render("report.html", r=r, d=r.data, digest=rendering.digest(),
                            window=r.window, charts=report_charts(r), notes=r.notes)


RENDERERS = {"json": render_json, "md": render_markdown, "html": render_html}


def produce(dsn: str, period: str, fmt: str) -> str:
    with reader.connect(dsn, "report") as conn:
        return RENDERERS[fmt](fetch(conn, period))


@click.command(name="report")
@click.option("--dsn", envvar="PGPERFMON_DSN", default=None,
              help="libpq connection string or URI; default $PGPERFMON_DSN, else the PG* variables.")
@click.option("--period", type=click.Choice(PERIODS), default="weekly", show_default=True,
              help="the last day, 7 days or 30 days, ending now.")
@click.option("--format", "fmt", type=click.Choice(tuple(RENDERERS)), default="html", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write to FILE (default: standard output).")
def command(dsn: str | None, period: str, fmt: str, output: Path | None) -> None:
    """The executive report of a period as HTML (one offline file), Markdown or JSON."""
    text = produce(db.resolve_dsn(dsn), period, fmt)
    if output is None:
        sys.stdout.write(text)
        return
    # Written beside the output and renamed over it, so a reader never sees half a report;
    # a link, pipe or device (/dev/stdout) is written in place: renaming would replace it.
    if output.is_symlink() or (output.exists() and not output.is_file()):
        output.write_text(text, encoding="utf-8")
    else:
        tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(output)
        finally:
            tmp.unlink(missing_ok=True)
    click.echo(f"{fmt} report ({period}) written to {output}", err=True)
