"""Prepared data for the health score and executive report tests: rows whose right
answer is known, written straight into the history tables (as the collectors would)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb


def anchor(conn: psycopg.Connection) -> datetime:
    """A fixed 'now' (whole second) to place samples around and end the score at."""
    return conn.execute("SELECT date_trunc('second', now())").fetchone()[0]


def set_config(conn: psycopg.Connection, **keys: object) -> None:
    """Change stored configuration keys (dotted names with '__' for '.')."""
    for key, value in keys.items():
        dotted = key.replace("__", ".")
        updated = conn.execute("UPDATE perfmon.config SET value = %s WHERE key = %s",
                               (Jsonb(value), dotted)).rowcount
        assert updated == 1, f"no configuration key {dotted}"


def ensure_partitions(conn: psycopg.Connection, days_back: int) -> None:
    """History partitions exist from yesterday on; older test data needs older ones."""
    for d in range(days_back, 0, -3):
        conn.execute("SELECT count(*) FROM perfmon.maintain_partitions(now() - make_interval(days => %s))",
                     (d,))


def add_samples(conn: psycopg.Connection, times: list[datetime]) -> None:
    conn.cursor().executemany(
        "INSERT INTO perfmon.samples (server_id, ts, kind, interval_s, duration_ms, stages) "
        "VALUES (1, %s, 'sample', 60, 1, '{}')", [(t,) for t in times])


def add_server_history(conn: psycopg.Connection, times: list[datetime], **cols: object) -> None:
    """One server_history row per time; cols are constants or lists (one value per time)."""
    base = {"max_connections": 100, "sessions_total": 5, "sessions_active": 1, "sessions_idle": 4,
            "sessions_idle_in_xact": 0, "sessions_waiting": 0, "blocked_sessions": 0,
            "interval_s": 60, "database_interval_s": 60}
    base.update(cols)
    names = ["server_id", "ts", *base]
    rows = []
    for i, t in enumerate(times):
        rows.append([1, t, *[v[i] if isinstance(v, list) else v for v in base.values()]])
    conn.cursor().executemany(
        f"INSERT INTO perfmon.server_history ({', '.join(names)}) "
        f"VALUES ({', '.join(['%s'] * len(names))})", rows)


def add_statement(conn: psycopg.Connection, query: str, queryid: int) -> int:
    return conn.execute(
        "INSERT INTO perfmon.statements (server_id, userid, dbid, queryid, toplevel, query) "
        "VALUES (1, 10, (SELECT oid FROM pg_database WHERE datname = current_database()), %s, true, %s) "
        "RETURNING stmt_id", (queryid, query)).fetchone()[0]


def add_statement_history(conn: psycopg.Connection, stmt_id: int, ts: datetime, calls: int,
                          exec_ms: float) -> None:
    conn.execute("INSERT INTO perfmon.statement_history (server_id, ts, stmt_id, calls, exec_ms) "
                 "VALUES (1, %s, %s, %s, %s)", (ts, stmt_id, calls, exec_ms))


def add_host_metric(conn: psycopg.Connection, metric: str, value: float, ts: datetime,
                    **labels: str) -> None:
    conn.execute("SELECT perfmon.ingest_metric(%s, %s, %s, %s)",
                 (metric, value, ts, Jsonb({"host": "db1", **labels})))


def add_agent(conn: psycopg.Connection, name: str, last_seen: datetime, last_status: str = "ok",
              expected_interval_s: float = 60) -> int:
    return conn.execute(
        "INSERT INTO perfmon.agents (name, first_seen, last_seen, last_status, expected_interval_s) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING agent_id",
        (name, last_seen - timedelta(hours=2), last_seen, last_status, expected_interval_s)).fetchone()[0]


def add_heartbeat(conn: psycopg.Connection, agent_id: int, ts: datetime, response_ms: float | None,
                  status: str = "ok", errors: int = 0) -> None:
    conn.execute("INSERT INTO perfmon.agent_heartbeats "
                 "(server_id, ts, agent_id, status, response_ms, errors) VALUES (1, %s, %s, %s, %s, %s)",
                 (ts, agent_id, status, response_ms, errors))


def add_recommendation(conn: psycopg.Connection, target: str, severity: str = "warning",
                       evidence: dict | None = None, benefit: float | None = None,
                       rule: str = "index_advice", seen: datetime | None = None) -> int:
    """An open finding, first seen (and open since) `seen`, else now."""
    return conn.execute(
        "INSERT INTO perfmon.recommendation_log (fingerprint, rule, kind, severity, target, finding, "
        "evidence, benefit, benefit_unit, confidence, first_seen, last_seen, status_changed) "
        "VALUES (md5(%s), %s, 'index', %s, %s, %s, %s, %s, '%% cost reduction', 'high', "
        "coalesce(%s, now()), coalesce(%s, now()), coalesce(%s, now())) RETURNING id",
        (target, rule, severity, target, f"finding about {target}", json.dumps(evidence or {}),
         benefit, seen, seen, seen)).fetchone()[0]


def health(conn: psycopg.Connection, ending: datetime, period: str = "1 hour") -> dict:
    return conn.execute("SELECT perfmon.health_score(%s::interval, %s)", (period, ending)).fetchone()[0]


def minutes(end: datetime, count: int, step_s: int = 60) -> list[datetime]:
    """count times step_s apart, the last one at end."""
    return [end - timedelta(seconds=step_s * (count - 1 - i)) for i in range(count)]
