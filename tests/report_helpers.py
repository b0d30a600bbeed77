"""Prepared data for the report and dashboard tests, and a real local SMTP server."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from alert_servers import add_gauge_rule, self_signed_cert, set_config
from psycopg import sql

from helpers import flush

HOSTILE_AGENT = '<script>window.__xss = "agent"</script>'
# A column alias survives pg_stat_statements' normalisation (a string constant would not);
# no double quote in it, which the quoted identifier would double.
HOSTILE_ALIAS = "<script>window.__xss = 'query'</script><img src=x onerror=window.__xss=1>"
HOST = "db-1"


def prepare(conn: psycopg.Connection) -> None:
    """Known data in every panel's source: samples, statements, host metrics, an agent,
    an alert, an anomaly, an applied recommendation measured before and after."""
    conn.execute("SELECT perfmon.maintain_partitions(now() - interval '1 day')")
    set_config(conn, database__performance_thresholds__slow_query_ms=5)
    conn.execute("SELECT perfmon.collect()")
    alias = sql.Identifier(HOSTILE_ALIAS)
    for _ in range(4):
        conn.execute(sql.SQL("SELECT pg_sleep(0.02), 1 AS {}").format(alias))
    flush(conn)
    with psycopg.connect(conn.info.dsn, password=conn.info.password) as idle:  # a session to count
        idle.execute("SELECT 1")
        conn.execute("SELECT perfmon.collect()")
    now = conn.execute("SELECT now()").fetchone()[0]
    for minutes, cpu, mem in ((12, 30.0, 55.0), (7, 35.5, 58.0), (2, 42.5, 61.2)):
        for metric, value in (("host.cpu.total_pct", cpu), ("host.memory.used_pct", mem),
                              ("host.disk.used_pct", 47.0)):
            conn.execute("SELECT perfmon.ingest_metric(%s, %s, %s, jsonb_build_object('host', %s::text))",
                         (metric, value, now - timedelta(minutes=minutes), HOST))
    conn.execute("SELECT perfmon.agent_heartbeat(%s, 'ok', 12.5)", (HOSTILE_AGENT,))
    conn.execute("SELECT perfmon.agent_heartbeat('checkout', 'ok', 80)")
    add_gauge_rule(conn, value=75)
    conn.execute("SELECT perfmon.analyze()")
    conn.execute(
        """INSERT INTO perfmon.anomaly_episodes (server_id, detector, feature, series, started_at,
               last_seen_at, samples, peak_score, peak_at, observed_value, expected_low, expected_high,
               contributors)
           VALUES (1, 'envelope', 'db.transactions_per_s', '', now() - interval '20 minutes',
                   now() - interval '5 minutes', 12, 4.5, now() - interval '10 minutes', 950, 100, 300,
                   '[{"feature": "db.transactions_per_s", "z": 6.1}]')""")
    # An applied recommendation about the hostile statement, with history before and after.
    stmt_id = conn.execute("SELECT stmt_id FROM perfmon.statements WHERE query LIKE %s",
                           ("%window.__xss%",)).fetchone()[0]
    conn.execute(
        """INSERT INTO perfmon.statement_history (server_id, ts, stmt_id, calls, exec_ms)
           VALUES (1, now() - interval '50 minutes', %(s)s, 100, 5000),
                  (1, now() - interval '10 minutes', %(s)s, 100, 1000)""", {"s": stmt_id})
    conn.execute(
        """INSERT INTO perfmon.recommendation_log (fingerprint, rule, kind, severity, target, finding,
               evidence, apply_sql, benefit, benefit_unit, confidence, first_seen, last_seen, status,
               status_changed, applied_at)
           VALUES ('test:index', 'index_advice', 'index', 'warning', 'public.orders(customer_id)',
                   'an index on public.orders (customer_id) would cut the cost of 1 statement(s)',
                   jsonb_build_object('statements',
                                      jsonb_build_array(jsonb_build_object('stmt_id', %s::int))),
                   'CREATE INDEX ON public.orders (customer_id);', 80, '%% cost reduction', 'high',
                   now() - interval '2 hours', now() - interval '2 hours', 'applied',
                   now() - interval '30 minutes', now() - interval '30 minutes')""", (stmt_id,))


@contextmanager
def prepared_database(server: Any) -> Iterator[tuple[str, str]]:
    """(name, dsn) of a database with pgperfmon installed, its pg_cron jobs paused, and
    prepare()'s data: for a test module that only reads."""
    from pgperfmon import config, deploy

    name = server.create_database()
    dsn = server.dsn(name)
    try:
        deploy.install(dsn, config.load(None, env={}))
        server.pause_jobs(name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            prepare(conn)
        yield name, dsn
    finally:
        server.drop_database(name)


@dataclass
class Smtp:
    port: int
    cert: Path
    mails: list[Any] = field(default_factory=list)


@contextmanager
def smtp_server(folder: Path, user: str, password: str) -> Iterator[Smtp]:
    """aiosmtpd on 127.0.0.1 with STARTTLS (a self-signed certificate) and login."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    cert, key = self_signed_cert(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with socket.socket() as probe:  # aiosmtpd's start() connects to its port: it cannot be 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state = Smtp(port, cert)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            state.mails.append(envelope)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == user.encode() and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)

    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, authenticator=authenticator, auth_require_tls=True)
    controller.start()
    try:
        yield state
    finally:
        controller.stop()
