"""The executive report (perfmon.executive_report()) as short labelled lines.

Used where the report goes out as text: the scheduled report's message in the
alert outbox (Slack, webhook, email, SMS through delivery.py, inside the server
or beside it) and the Markdown and HTML reports of ``pgperfmon report``, so a
figure reads the same everywhere. Every figure of the report is an object
``{"value", "unit", "how"}``; a value of null is "not measured" and its ``how``
says what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PERCENT_UNITS = {"pct", "%", "percent"}
UNIT_ALIASES = {"transactions/s": "tps", "calls/s": "calls/s"}


def number(value: Any, unit: str | None = None) -> str:
    """1234.5 -> "1,234.5"; with a unit: "99.5%", "12.3 ms", "1,250.00 USD", "2 h 5 min"."""
    if value is None:
        return "not measured"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    unit = UNIT_ALIASES.get(unit or "", unit or "")
    if unit == "s" or unit.startswith("s "):  # "s of statement execution time"
        return duration(float(value)) if abs(value) >= 120 else f"{number(value)} s"
    if unit == "bytes":
        return size(float(value))
    if unit.isupper() and len(unit) == 3:  # a currency code
        return f"{value:,.2f} {unit}"
    magnitude = abs(value)
    if float(value).is_integer() and magnitude >= 1:
        text = f"{int(value):,}"
    elif magnitude >= 100:
        text = f"{value:,.1f}"
    elif magnitude >= 1:
        text = f"{value:,.2f}".rstrip("0").rstrip(".")
    else:
        text = f"{value:.3g}"
    if unit in PERCENT_UNITS:
        return f"{text}%"
    # A long unit ("score 0-100", "committed transactions") is the label's business, not the value's.
    return f"{text} {unit}" if unit and " " not in unit and len(unit) <= 16 else text


def size(n: float) -> str:
    """Bytes for people: "512 B", "1.5 MB" (powers of 1024)."""
    for suffix in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or suffix == "TB":
            return f"{n:,.0f} {suffix}" if suffix == "B" else f"{n:,.1f} {suffix}"
        n /= 1024
    return f"{n:,.1f} PB"


def duration(seconds: float) -> str:
    """Seconds for people: "45 s", "12 min", "2 h 5 min", "3 d 4 h"."""
    s = round(seconds)
    sign = "-" if s < 0 else ""
    s = abs(s)
    if s < 120:
        return f"{sign}{s} s"
    if s < 7200:
        return f"{sign}{s // 60} min"
    if s < 3 * 86400:
        hours, minutes = s // 3600, s % 3600 // 60
        return f"{sign}{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = s // 86400, s % 86400 // 3600
    return f"{sign}{days} d" + (f" {hours} h" if hours else "")


def is_figure(node: Any) -> bool:
    return isinstance(node, Mapping) and "value" in node


def figure(node: Any) -> str:
    """A figure as text; a bare number or string as it is; anything else as "not measured"."""
    if is_figure(node):
        return number(node.get("value"), node.get("unit"))
    if isinstance(node, (int, float, str)) and not isinstance(node, bool):
        return number(node)
    return "not measured"


def how(node: Any) -> str:
    return str(node.get("how") or "") if isinstance(node, Mapping) else ""


def _get(tree: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(tree, Mapping):
            return None
        tree = tree.get(key)
    return tree


def incidents(node: Any) -> str:
    """{"total", "emergency", "critical", ...} -> "3 (1 critical, 2 warning)"."""
    if not isinstance(node, Mapping):
        return figure(node)
    total_node = node.get("total")
    total = number(total_node.get("value")) if is_figure(total_node) else figure(total_node)
    parts = []
    for level in ("emergency", "critical", "warning", "info"):
        value = _get(node, level, "value") if is_figure(node.get(level)) else node.get(level)
        if isinstance(value, (int, float)) and value:
            parts.append(f"{number(value)} {level}")
    return f"{total} ({', '.join(parts)})" if parts else total


# (label, path in the report, kind) of the lines a reader sees first; kind "figure" = a
# {"value", "unit", "how"} object, "text" = a plain value, "incidents" = counts by level.
LINES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("Health score (latest)", ("executive_summary", "health", "latest"), "figure"),
    ("Health score (average)", ("executive_summary", "health", "average"), "figure"),
    ("Risk level", ("executive_summary", "health", "risk_level"), "figure"),
    ("Availability", ("executive_summary", "availability_pct"), "figure"),
    ("Downtime", ("executive_summary", "downtime_s"), "figure"),
    ("Apdex", ("executive_summary", "apdex"), "figure"),
    ("Incidents", ("executive_summary", "incidents"), "incidents"),
    ("Infrastructure cost", ("financial_impact", "infrastructure_cost"), "figure"),
    ("Cost per 1,000 transactions", ("financial_impact", "cost_per_1k_transactions"), "figure"),
    ("Revenue at risk", ("financial_impact", "revenue_at_risk"), "figure"),
    ("Savings from applied recommendations",
     ("financial_impact", "savings_from_applied_recommendations"), "figure"),
    ("Transactions", ("technical_performance", "transactions"), "figure"),
    ("Transactions per second (mean)", ("technical_performance", "tps_avg"), "figure"),
    ("Mean statement time", ("technical_performance", "mean_query_ms"), "figure"),
    ("Buffer cache hit", ("technical_performance", "cache_hit_pct"), "figure"),
    ("Anomaly episodes", ("technical_performance", "anomalies", "episodes"), "figure"),
    ("Alerts fired", ("technical_performance", "alerts", "fired"), "figure"),
)


def lines(report: Mapping[str, Any], with_how: bool = False) -> list[tuple[str, str]]:
    """The report's key figures as (label, text); with_how appends how each was computed."""
    out = []
    for label, path, kind in LINES:
        node = _get(report, *path)
        if node is None:
            continue
        text = incidents(node) if kind == "incidents" else figure(node)
        explanation = how(node)
        if with_how and explanation:
            text = f"{text} ({explanation})"
        out.append((label, text))
    recs = report.get("recommendations") or []
    for i, rec in enumerate(recs[:3], start=1):
        if isinstance(rec, Mapping):
            out.append((f"Recommendation {i}",
                        f"[{rec.get('severity', '?')}] {rec.get('title') or rec.get('target') or ''}"))
    return out


def title(report: Mapping[str, Any]) -> str:
    period = _get(report, "period", "name") or "?"
    return f"{str(period).capitalize()} report"


def headline(report: Mapping[str, Any]) -> str:
    return str(_get(report, "executive_summary", "headline") or "")
