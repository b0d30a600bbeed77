"""`pgperfmon dashboard`: three dashboards that refresh themselves, served from the package.

- **Real-time Operations** (``/ops``): health, live CPU/memory and database
  charts, agents, open alerts and recovery, connections, slow queries, index advice.
- **Executive** (``/executive``): KPIs, financial impact, trends, risk.
- **Developer** (``/developer``): query analysis, optimisation tracking,
  anomalies with their explanations, events.

A small threaded HTTP server of the standard library renders every page on
the server with the SVG charts of the HTML report (charts.py); a few lines of
inline script re-fetch each panel every ``--refresh-s`` seconds. Nothing is
loaded from elsewhere (no CDN, font or framework): it works offline, and the
Content-Security-Policy allows only the page's own script (by nonce), inline
styles and requests to this server.

The database is read through perfmon_reader only (reader.py): a read-only
session with the reader's rights. Every value from the database is escaped by
the templates. A panel whose query fails shows the error on the panel; the
page and the other panels still render.
"""

from __future__ import annotations

import concurrent.futures
import http.server
import json
import queue
import re
import secrets
import socket
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import click
import psycopg
from markupsafe import Markup

from pgperfmon import charts, db, reader, rendering, report

PERIODS = report.PERIODS
LIVE_WINDOW_S = 3600          # the Real-time Operations charts: the last hour
DEVELOPER_WINDOW_S = 7 * 86400  # anomalies and events of the last 7 days
# A page waits this long for its panels; a slower one arrives as a placeholder that the
# page fetches right after loading, so a slow view never keeps the whole page from showing.
PAGE_BUDGET_S = 1.0


class DashboardError(Exception):
    """The dashboard cannot start; the message says why and what to do."""


# --------------------------------------------------------------------------- connections

class Pool:
    """A few reader connections shared by the request threads; a broken one is replaced."""

    def __init__(self, dsn: str, size: int = 4, statement_timeout_ms: int = 15_000):
        self.dsn = dsn
        self.size = size
        self.statement_timeout_ms = statement_timeout_ms
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    def open(self) -> psycopg.Connection:
        return reader.connect(self.dsn, "dashboard", self.statement_timeout_ms)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        if not self._slots.acquire(timeout=30):
            raise DashboardError("all database connections of the dashboard are busy")
        conn: psycopg.Connection | None = None
        try:
            conn = self._take_idle() or self.open()
            yield conn
        finally:
            if conn is not None:
                if conn.closed or conn.broken:
                    conn.close()
                else:
                    self._idle.put(conn)
            self._slots.release()

    def _take_idle(self) -> psycopg.Connection | None:
        """An idle connection whose session is still there. A restart, a failover or
        pg_terminate_backend ends idle sessions without a word to the client, which finds out
        only at its next query: that query would be a panel's, shown failing. An empty query
        finds out first, and the session that ended is replaced."""
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return None
            try:
                conn.execute("")
                return conn
            except psycopg.Error:
                conn.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


class TTLCache:
    """The expensive report functions, shared for a moment by panels that need the same.

    Panels render in parallel: a second panel asking for a value being computed waits
    for that computation instead of starting its own.
    """

    def __init__(self, ttl_s: float):
        self.ttl_s = ttl_s
        self._data: dict[Any, tuple[float, Any]] = {}
        self._flights: dict[Any, _Flight] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._data.get(key)
            if hit and time.monotonic() - hit[0] < self.ttl_s:
                return hit[1]
            flight = self._flights.get(key)
            owner = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not owner:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = compute()
            with self._lock:
                self._data[key] = (time.monotonic(), flight.value)
            return flight.value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()


@dataclass
class Ctx:
    """What a panel's loader gets: a reader connection, the request's parameters."""

    conn: psycopg.Connection
    period: str
    cache: TTLCache
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def rows(self, name: str, **params: Any) -> list[dict[str, Any]]:
        return reader.rows(self.conn, name, params)

    def value(self, query: str, *params: Any) -> Any:
        row = self.conn.execute(query, params or None).fetchone()
        return None if row is None else next(iter(row.values()))

    def since(self, seconds: float) -> tuple[datetime, datetime]:
        """The x range of a chart of the last ``seconds``."""
        return self.now - timedelta(seconds=seconds), self.now

    def executive_report(self, period: str | None = None) -> dict[str, Any]:
        period = period or self.period
        return self.cache.get(("executive_report", period), lambda: self.value(
            "SELECT perfmon.executive_report(%s)", period)) or {}

    def health_score(self) -> dict[str, Any]:
        return self.cache.get(("health_score",), lambda: self.value(
            "SELECT perfmon.health_score()")) or {}


# --------------------------------------------------------------------------- panels

@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    source: str                      # what it reads, shown under it
    load: Callable[[Ctx], dict[str, Any]]
    wide: bool = False


@dataclass(frozen=True)
class Dashboard:
    key: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    periodic: bool = False           # has a daily/weekly/monthly choice

    def panel(self, key: str) -> Panel | None:
        return next((p for p in self.panels if p.key == key), None)


def _series_by(rows: list[dict[str, Any]], key: str, column: str) -> list[charts.Series]:
    groups: dict[str, list[tuple[Any, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row[key]), []).append((row["ts"], row[column]))
    return [charts.Series(name, points) for name, points in sorted(groups.items())]


def _latest_by(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        latest[str(row[key])] = row
    return [latest[k] for k in sorted(latest)]


def _bucket_for(window_s: float, interval_s: int, points: int = 120) -> int:
    step = max(interval_s, int(window_s // points))
    return -(-step // interval_s) * interval_s


def _interval_s(ctx: Ctx) -> int:
    return int(ctx.cache.get(("interval",), lambda: ctx.value(
        "SELECT perfmon.setting('collection.interval_seconds')::int")) or 60)


# Real-time Operations ------------------------------------------------------------

def load_health(ctx: Ctx) -> dict[str, Any]:
    score = ctx.health_score()
    components = score.get("components") or {}
    bars = [(name, (c or {}).get("score")) for name, c in components.items()]
    return {
        "score": score,
        "components": components,
        "chart": charts.bar_chart(
            bars, title="Components (0-100)", unit="",
            how="perfmon.health_score(): each component's score over the last hour; "
                "weights database 0.3, system 0.2, agents 0.1, availability 0.2, "
                "user satisfaction 0.1, cost efficiency 0.1 (docs/health.md).",
            no_data="no component could be computed yet"),
    }


def load_host(ctx: Ctx) -> dict[str, Any]:
    rows = ctx.rows("dashboard_host", window_s=LIVE_WINDOW_S)
    return {
        "latest": _latest_by(rows, "host"),
        "cpu": charts.line_chart(
            _series_by(rows, "host", "cpu_total_pct"), title="CPU busy", unit="%", y_max=100,
            x_range=ctx.since(LIVE_WINDOW_S),
            how="perfmon.host_metrics: cpu_total_pct per host and sample (not idle and not iowait).",
            no_data="no host sample in the last hour (pgperfmon agent or perfmon.sample_host)"),
        "memory": charts.line_chart(
            _series_by(rows, "host", "memory_used_pct"), title="Memory in use", unit="%",
            y_max=100, x_range=ctx.since(LIVE_WINDOW_S),
            how="perfmon.host_metrics: memory_used_pct per host and sample.",
            no_data="no host sample in the last hour"),
    }


def load_database(ctx: Ctx) -> dict[str, Any]:
    rows = ctx.rows("dashboard_database", window_s=LIVE_WINDOW_S)
    interval = _interval_s(ctx)
    trend = ctx.rows("workload_trend", from_ts=ctx.now - timedelta(seconds=LIVE_WINDOW_S),
                     to_ts=ctx.now, bucket_s=interval)
    return {
        "latest": rows[-1] if rows else None,
        "tps": charts.line_chart(
            [charts.Series("tps", [(r["ts"], r["tps"]) for r in rows], "tps")],
            title="Transactions per second", unit="tps", x_range=ctx.since(LIVE_WINDOW_S),
            how="perfmon.database_series: commits + rollbacks of all databases per second, per sample.",
            no_data="no sample in the last hour (is pg_cron running perfmon.collect()?)"),
        "latency": charts.line_chart(
            [charts.Series("mean ms", [(r["ts"], r["mean_query_ms"]) for r in trend], "ms")],
            title="Mean statement time", unit="ms", x_range=ctx.since(LIVE_WINDOW_S),
            how="perfmon.workload_trend: execution ms / calls of all statements, per sample.",
            no_data="no statement calls in the last hour"),
        "sessions": charts.line_chart(
            [charts.Series("active", [(r["ts"], r["sessions_active"]) for r in rows]),
             charts.Series("blocked", [(r["ts"], r["blocked_sessions"]) for r in rows])],
            title="Sessions", unit="sessions", x_range=ctx.since(LIVE_WINDOW_S),
            how="perfmon.database_series: active sessions and sessions blocked by a lock at each sample.",
            no_data="no sample in the last hour"),
    }


def load_agents(ctx: Ctx) -> dict[str, Any]:
    return {"agents": ctx.rows("dashboard_agents")}


def load_alerts(ctx: Ctx) -> dict[str, Any]:
    return {"alerts": ctx.rows("dashboard_alerts"), "recovery": ctx.rows("dashboard_recovery")}


def load_connections(ctx: Ctx) -> dict[str, Any]:
    history = ctx.rows("dashboard_connections", window_s=86400)
    return {
        "latest": history[-1] if history else None,
        "chart": charts.line_chart(
            [charts.Series("total", [(r["ts"], r["total"]) for r in history]),
             charts.Series("active", [(r["ts"], r["active"]) for r in history]),
             charts.Series("max_connections", [(r["ts"], r["max_connections"]) for r in history])],
            title="Client connections, last 24 h", unit="sessions", x_range=ctx.since(86400),
            how="perfmon.connection_usage: client sessions at each sample and max_connections.",
            no_data="no sample in the last 24 hours"),
    }


def load_slow_queries(ctx: Ctx) -> dict[str, Any]:
    return {"queries": ctx.rows("dashboard_slow_queries")}


def load_index_advice(ctx: Ctx) -> dict[str, Any]:
    return {"advice": ctx.rows("dashboard_index_advice")}


# Executive -------------------------------------------------------------------------

def load_kpis(ctx: Ctx) -> dict[str, Any]:
    return {"report": ctx.executive_report()}


def load_financial(ctx: Ctx) -> dict[str, Any]:
    return {"report": ctx.executive_report()}


def load_trends(ctx: Ctx) -> dict[str, Any]:
    data = ctx.executive_report()
    start, end = report.period_window(data, ctx.period, ctx.now)
    bucket = _bucket_for((end - start).total_seconds(), 3600, 120)
    trend = ctx.rows("workload_trend", from_ts=start, to_ts=end, bucket_s=bucket)
    health = report.health_points(data)
    every = rendering.digest().duration(bucket)
    return {
        "health": charts.line_chart(
            [charts.Series("overall", health)], title="Health score", unit="score", y_min=0,
            y_max=100, area=True, x_range=(start, end),
            how="perfmon.executive_report(): mean overall health score per interval of the period "
                "(perfmon.health).",
            no_data="no health score recorded in this period"),
        "tps": charts.line_chart(
            [charts.Series("tps", [(r["ts"], r["tps"]) for r in trend], "tps")],
            title="Transactions per second", unit="tps", x_range=(start, end),
            how=f"perfmon.workload_trend: commits + rollbacks / seconds sampled, per {every}.",
            no_data="no samples in this period"),
        "latency": charts.line_chart(
            [charts.Series("mean ms", [(r["ts"], r["mean_query_ms"]) for r in trend], "ms")],
            title="Mean statement time", unit="ms", x_range=(start, end),
            how=f"perfmon.workload_trend: execution ms / calls of all statements, per {every}.",
            no_data="no statement calls in this period"),
    }


def load_risk(ctx: Ctx) -> dict[str, Any]:
    return {"score": ctx.health_score()}


def load_forecasts(ctx: Ctx) -> dict[str, Any]:
    return {"forecasts": ctx.rows("dashboard_forecasts")}


# Developer -------------------------------------------------------------------------

def load_queries(ctx: Ctx) -> dict[str, Any]:
    rows = ctx.rows("dashboard_top_queries", limit=15)
    return {
        "queries": rows,
        "chart": charts.bar_chart(
            [(str(r["query"]), r["total_ms"]) for r in rows[:10]],
            title="Total execution time, last 24 h", unit="ms",
            how="perfmon.top_queries: total execution ms per statement over the last 24 hours.",
            no_data="no statement sampled in the last 24 hours"),
    }


def load_optimisations(ctx: Ctx) -> dict[str, Any]:
    # The executive report's savings (one rule for both): statements of each recommendation
    # marked applied in the last 30 days, before and after it was applied.
    savings = (ctx.executive_report("monthly").get("financial_impact") or {}).get(
        "savings_from_applied_recommendations") or {}
    items = [i for i in savings.get("items") or [] if isinstance(i, dict)]
    about = {r["id"]: r for r in ctx.rows("dashboard_recommendations",
                                          ids=[i.get("id") for i in items if i.get("id") is not None])}
    return {"savings": savings,
            "items": [{**i, "recommendation": about.get(i.get("id"), {})} for i in items]}


def load_anomalies(ctx: Ctx) -> dict[str, Any]:
    return {"anomalies": ctx.rows("dashboard_anomalies", window_s=DEVELOPER_WINDOW_S)}


def load_events(ctx: Ctx) -> dict[str, Any]:
    return {"events": ctx.rows("dashboard_events", window_s=DEVELOPER_WINDOW_S)}


DASHBOARDS: dict[str, Dashboard] = {d.key: d for d in (
    Dashboard("ops", "Real-time Operations",
              "health, live host and database charts, agents, alerts and recovery, connections, "
              "slow queries, index advice", (
                  Panel("health", "Health", "perfmon.health_score()", load_health),
                  Panel("connections", "Connections", "perfmon.connection_usage", load_connections),
                  Panel("alerts", "Active alerts and recovery", "perfmon.alerts, perfmon.recovery_actions",
                        load_alerts, wide=True),
                  Panel("host", "Host CPU and memory (last hour)", "perfmon.host_metrics", load_host,
                        wide=True),
                  Panel("database", "Database (last hour)", "perfmon.database_series, "
                        "perfmon.workload_trend()", load_database, wide=True),
                  Panel("agents", "Application agents", "perfmon.agent_health", load_agents, wide=True),
                  Panel("slow_queries", "Slow queries (last 24 h)", "perfmon.slow_queries",
                        load_slow_queries, wide=True),
                  Panel("index_advice", "Index advice", "perfmon.index_recommendations",
                        load_index_advice, wide=True),
              )),
    Dashboard("executive", "Executive",
              "KPIs, financial impact, trends and risk of a day, a week or a month", (
                  Panel("kpis", "Key figures", "perfmon.executive_report()", load_kpis, wide=True),
                  Panel("financial", "Financial impact", "perfmon.executive_report()", load_financial,
                        wide=True),
                  Panel("risk", "Risk now", "perfmon.health_score()", load_risk, wide=True),
                  Panel("forecasts", "What runs out, and when", "perfmon.forecasts", load_forecasts,
                        wide=True),
                  Panel("trends", "Trends", "perfmon.executive_report(), perfmon.workload_trend()",
                        load_trends, wide=True),
              ), periodic=True),
    Dashboard("developer", "Developer",
              "query analysis, optimisation tracking, anomalies with their explanations, events", (
                  Panel("queries", "Query analysis (last 24 h)", "perfmon.top_queries", load_queries,
                        wide=True),
                  Panel("optimisations", "Optimisation tracking: applied recommendations (30 days)",
                        "perfmon.executive_report('monthly'), perfmon.recommendations", load_optimisations,
                        wide=True),
                  Panel("anomalies", "Anomalies (last 7 days)", "perfmon.anomalies", load_anomalies,
                        wide=True),
                  Panel("events", "Events (last 7 days)", "perfmon.events", load_events, wide=True),
              )),
)}




# --------------------------------------------------------------------------- rendering

def _error_text(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error):
        diag = getattr(exc, "diag", None)
        primary = (diag.message_primary if diag and diag.message_primary else str(exc)).strip()
        hint = diag.message_hint if diag and diag.message_hint else None
        text = primary + (f" (hint: {hint})" if hint else "")
        if isinstance(exc, psycopg.errors.UndefinedFunction | psycopg.errors.UndefinedTable):
            text += " — this pgperfmon is older than the dashboard: run pgperfmon install to upgrade"
        if isinstance(exc, psycopg.errors.QueryCanceled):
            text += (" — the dashboard ends a panel's query after its statement_timeout: does another "
                     "session hold a lock on what it reads (perfmon.blocking_locks)?")
        return db.redact(text)
    if isinstance(exc, db.ConnectError | reader.ReaderError | DashboardError):
        return db.redact(str(exc))
    return f"internal error ({type(exc).__name__}); the dashboard's log has the details"


class Site:
    """The dashboards' content: pages and panels rendered from a reader connection pool."""

    def __init__(self, pool: Pool, refresh_s: float, log: Callable[[str], None] | None = None):
        self.pool = pool
        self.refresh_s = refresh_s
        self.cache = TTLCache(ttl_s=min(5.0, refresh_s / 2))
        self.flights = TTLCache(ttl_s=0)  # shares panels being rendered, keeps nothing
        self.page_budget_s = PAGE_BUDGET_S
        self.workers = concurrent.futures.ThreadPoolExecutor(max_workers=pool.size,
                                                             thread_name_prefix="pgperfmon-panel")
        self.log = log or (lambda text: print(text, file=sys.stderr))

    def panel_body(self, dash: Dashboard, panel: Panel, conn: psycopg.Connection | None,
                   period: str, failure: BaseException | None = None) -> Markup:
        now = datetime.now(timezone.utc)
        if failure is None and conn is not None:
            try:
                data = panel.load(Ctx(conn, period, self.cache, now))
                module = rendering.environment().get_template(f"dash_{dash.key}.html").module
                body = getattr(module, panel.key)(data)
            except Exception as exc:  # one panel's failure must not take the page down
                failure = exc
                if not isinstance(exc, psycopg.Error):
                    self.log(f"panel {dash.key}/{panel.key}:\n{traceback.format_exc()}")
        if failure is not None:
            body = Markup('<div class="panel-error" role="alert">Could not read {}: {}</div>').format(
                panel.source, _error_text(failure))
        return Markup(
            '<h2>{title}</h2>{body}<p class="source">{source} · <span class="panel-status">'
            'as of {at}</span></p>').format(
            title=panel.title, body=body, source=panel.source, at=now.strftime("%H:%M:%S UTC"))

    def one_panel(self, dash: Dashboard, panel: Panel, period: str) -> Markup:
        """A panel's body. A panel already being rendered (a slow view, several viewers) is
        not started again: the callers share that rendering, so a slow view costs one
        connection, however often the pages ask for it."""
        return self.flights.get((dash.key, panel.key, period),
                                lambda: self._render_panel(dash, panel, period))

    def _render_panel(self, dash: Dashboard, panel: Panel, period: str) -> Markup:
        try:
            with self.pool.connection() as conn:
                return self.panel_body(dash, panel, conn, period)
        except (psycopg.Error, db.ConnectError, reader.ReaderError, DashboardError) as exc:
            return self.panel_body(dash, panel, None, period, failure=exc)

    def panels(self, dash: Dashboard, keys: list[str], period: str) -> dict[str, Markup]:
        """Panel bodies by key; several are rendered in parallel, each on a pool connection."""
        chosen = [p for p in (dash.panel(k) for k in keys) if p is not None]
        if len(chosen) == 1:
            return {chosen[0].key: self.one_panel(dash, chosen[0], period)}
        futures = {p.key: self.workers.submit(self.one_panel, dash, p, period) for p in chosen}
        return {key: future.result() for key, future in futures.items()}

    def page(self, dash: Dashboard, period: str, nonce: str) -> str:
        """The whole page; panels not ready within page_budget_s come as placeholders."""
        futures = {p.key: self.workers.submit(self.one_panel, dash, p, period) for p in dash.panels}
        deadline = time.monotonic() + self.page_budget_s
        bodies: dict[str, Markup] = {}
        pending: set[str] = set()
        for panel in dash.panels:
            try:
                bodies[panel.key] = futures[panel.key].result(timeout=max(0.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                pending.add(panel.key)
                bodies[panel.key] = Markup(
                    '<h2>{}</h2><p class="empty">Still reading {}…</p><p class="source">{} · '
                    '<span class="panel-status">loading</span></p>').format(
                    panel.title, panel.source, panel.source)
        return rendering.render("dashboard.html", dash=dash, dashboards=DASHBOARDS, bodies=bodies,
                                pending=pending, period=period, periods=PERIODS,
                                refresh_s=self.refresh_s, nonce=nonce,
                                generated=datetime.now(timezone.utc))

    def index(self, nonce: str) -> str:
        return rendering.render("dashboard_index.html", dashboards=DASHBOARDS, nonce=nonce,
                                generated=datetime.now(timezone.utc))


# --------------------------------------------------------------------------- HTTP

def _csp(nonce: str) -> str:
    return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
            "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


# A Host header: name[:port] or [IPv6 address][:port] (RFC 9110 7.2, RFC 3986 3.2.2).
HOST_HEADER = re.compile(r"\[([0-9a-f:.]+)\](?::[0-9]*)?|([^\[\]:]+)(?::[0-9]*)?", re.ASCII)


def host_of(header: str) -> str | None:
    """The host of a Host header, lower case and without brackets or port; None for
    anything else (an IPv6 address without brackets, a port that is not a number, text
    after the bracket), which no allowed host matches."""
    match = HOST_HEADER.fullmatch(header.strip().lower())
    return None if match is None else match.group(1) or match.group(2)


def make_handler(site: Site, allowed_hosts: set[str] | None) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "pgperfmon-dashboard"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: str, content_type: str = "text/html; charset=utf-8",
                  nonce: str | None = None) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", _csp(nonce or secrets.token_urlsafe(16)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("X-Frame-Options", "DENY")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _message(self, status: int, text: str) -> None:
            body = rendering.render("dashboard_message.html", status=status, text=text,
                                    dashboards=DASHBOARDS)
            self._send(status, body)

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            try:
                self._route()
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception:
                site.log(f"{self.path}:\n{traceback.format_exc()}")
                try:
                    self._message(500, "The dashboard hit an internal error; its log has the details.")
                except OSError:
                    pass

        def _route(self) -> None:
            host = host_of(self.headers.get("Host") or "")
            if allowed_hosts is not None and host not in allowed_hosts:
                # A page of another site must not read the dashboard through DNS rebinding.
                self._message(421, f"This dashboard answers to {', '.join(sorted(allowed_hosts))} only.")
                return
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            parts = [p for p in url.path.split("/") if p]
            period = (query.get("period") or ["weekly"])[0]
            if period not in PERIODS:
                self._message(400, f"Unknown period {period!r}: use daily, weekly or monthly.")
                return
            nonce = secrets.token_urlsafe(16)
            if not parts:
                self._send(200, site.index(nonce), nonce=nonce)
            elif parts == ["healthz"]:
                self._send(200, "ok\n", "text/plain; charset=utf-8")
            elif len(parts) == 1 and parts[0] in DASHBOARDS:
                self._send(200, site.page(DASHBOARDS[parts[0]], period, nonce), nonce=nonce)
            elif len(parts) == 3 and parts[0] == "panel" and parts[1] in DASHBOARDS \
                    and DASHBOARDS[parts[1]].panel(parts[2]):
                dash = DASHBOARDS[parts[1]]
                self._send(200, str(site.panels(dash, [parts[2]], period)[parts[2]]))
            elif len(parts) == 2 and parts[0] == "api" and parts[1] in DASHBOARDS:
                dash = DASHBOARDS[parts[1]]
                bodies = site.panels(dash, [p.key for p in dash.panels], period)
                self._send(200, json.dumps({k: str(v) for k, v in bodies.items()}),
                           "application/json; charset=utf-8")
            else:
                self._message(404, f"No page {url.path}.")

    return Handler


class IPv6HTTPServer(http.server.ThreadingHTTPServer):
    """Listens on an IPv6 address (--host ::1); the standard server is IPv4 only."""

    address_family = socket.AF_INET6


class Server:
    """The dashboard server: start() in a thread (tests, the demo) or serve_forever()."""

    def __init__(self, dsn: str, host: str = "127.0.0.1", port: int = 8050, refresh_s: float = 10.0,
                 pool_size: int = 4):
        self.pool = Pool(dsn, pool_size)
        # Refuse to start unless the login can act as perfmon_reader (reader.connect says why).
        with self.pool.connection():
            pass
        self.site = Site(self.pool, refresh_s)
        allowed = None if host in ("0.0.0.0", "::", "") else {host.lower(), "localhost", "127.0.0.1",
                                                                "::1"}
        try:
            self.httpd = (IPv6HTTPServer if ":" in host else http.server.ThreadingHTTPServer)(
                (host, port), make_handler(self.site, allowed))
        except OSError as exc:
            self.pool.close()
            raise DashboardError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self.httpd.daemon_threads = True
        self.host = host
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def urls(self) -> dict[str, str]:
        return {d.title: f"{self.url}/{d.key}" for d in DASHBOARDS.values()}

    def start(self) -> Server:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="pgperfmon-dashboard")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        finally:
            self.close()

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()
        self.site.workers.shutdown(wait=True)
        self.pool.close()


def print_urls(server: Server, echo: Callable[[str], None] = click.echo) -> None:
    for title, url in server.urls().items():
        echo(f"  {title + ':':<22} {url}")


@click.command(name="dashboard")
@click.option("--dsn", envvar="PGPERFMON_DSN", default=None,
              help="libpq connection string or URI; default $PGPERFMON_DSN, else the PG* variables. "
                   "The login must be allowed to SET ROLE perfmon_reader.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on (0.0.0.0: every interface; put it behind a proxy with TLS "
                   "and authentication then).")
@click.option("--port", type=click.IntRange(0, 65535), default=8050, show_default=True,
              help="TCP port (0: a free one).")
@click.option("--refresh-s", type=click.FloatRange(1, 3600), default=10.0, show_default=True,
              help="how often the pages refresh their panels, in seconds.")
def command(dsn: str | None, host: str, port: int, refresh_s: float) -> None:
    """Serve the Real-time Operations, Executive and Developer dashboards (refreshing themselves)."""
    server = Server(db.resolve_dsn(dsn), host, port, refresh_s)
    click.echo(f"pgperfmon dashboards on {server.url}/ (refresh every {refresh_s:g} s; Ctrl-C stops):")
    print_urls(server)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
