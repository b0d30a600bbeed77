"""Helpers shared by the tests that take samples."""

from __future__ import annotations

import socket

import psycopg

from pgperfmon.agent import Agent

PROBE = "SELECT count(*) FROM probe WHERE v = %s"


def collect(conn: psycopg.Connection) -> dict:
    return conn.execute("SELECT perfmon.collect()").fetchone()[0]


def flush(conn: psycopg.Connection) -> None:
    """Table statistics reach shared memory at most once a second unless forced."""
    conn.execute("SELECT pg_stat_force_next_flush()")


def probe_calls(conn: psycopg.Connection, since_ts=None) -> list[int]:
    """Stored calls deltas of the probe statement, oldest first."""
    return [r[0] for r in conn.execute(
        """SELECT h.calls FROM perfmon.statement_history h
           JOIN perfmon.statements s USING (stmt_id)
           WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND s.query LIKE 'SELECT count(*) FROM probe WHERE v = $1'
           ORDER BY h.ts""")]


def run_probe(conn: psycopg.Connection, times: int) -> None:
    for i in range(times):
        conn.execute(PROBE, (f"x{i}",))


class RecordingAgent(Agent):
    """The real agent, remembering each sample that made it into the spool."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.records: list[dict] = []

    def sample_once(self, now: float | None = None) -> dict:
        record = super().sample_once(now)
        self.records.append(record)
        return record


def tcp_settings(conn: psycopg.Connection) -> dict[str, int]:
    """What the kernel holds for the session's socket: keepalive, its timings, user timeout."""
    with socket.fromfd(conn.fileno(), socket.AF_INET, socket.SOCK_STREAM) as sock:  # a dup
        return {"keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                "idle_s": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                "interval_s": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                "count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                "user_timeout_ms": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)}
