"""Heartbeats of application agents (the workers that use the database).

    from pgperfmon.heartbeat import Heartbeat

    hb = Heartbeat("host=db1 dbname=app user=billing_worker", agent="billing-worker",
                   expected_interval_s=30)
    hb.beat()                       # "I am alive"
    with hb.timed():                # one heartbeat with the block's time in ms;
        process_invoices()          # status error and errors=1 if it raises

``heartbeat(conn, agent, ...)`` is the bare call on a connection you own. A
``Heartbeat`` keeps its own connection (application_name = the agent's name,
so that ``perfmon.application_load`` and ``perfmon.agent_health`` line up),
reconnects when it was lost, and never lets a monitoring failure break the
application: it logs and carries on. See ``perfmon.agent_health``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pgperfmon import db

log = logging.getLogger("pgperfmon.heartbeat")

STATUSES = ("ok", "degraded", "error", "down")


def heartbeat(conn: psycopg.Connection, agent: str, status: str = "ok",
              response_ms: float | None = None, errors: int = 0,
              details: dict[str, Any] | None = None,
              expected_interval_s: float | None = None) -> None:
    """Call perfmon.agent_heartbeat() on ``conn``; raises what the server raises."""
    conn.execute(
        "SELECT perfmon.agent_heartbeat(%s, %s, %s, %s, %s, %s)",
        (agent, status, response_ms, errors, Jsonb(details) if details is not None else None,
         expected_interval_s),
    )
    if not conn.autocommit:
        conn.commit()


class Heartbeat:
    """An agent's heartbeats over a connection of its own; failures are logged, never raised."""

    def __init__(self, dsn: str, agent: str, expected_interval_s: float | None = None):
        self.dsn = dsn
        self.agent = agent
        self.expected_interval_s = expected_interval_s
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = db.connect(self.dsn, autocommit=True)
            try:
                # Autocommit: each heartbeat is a transaction of its own, which the server
                # commits without a WAL flush wait (perfmon.heartbeat_commit_async()).
                conn.execute("SELECT set_config('application_name', %s, false)", (self.agent[:63],))
            except BaseException:  # e.g. a name PostgreSQL text cannot hold: no connection left open
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def beat(self, status: str = "ok", response_ms: float | None = None, errors: int = 0,
             details: dict[str, Any] | None = None) -> bool:
        """Send one heartbeat; False (and a logged warning) when it could not be stored."""
        for attempt in (1, 2):
            try:
                heartbeat(self._connection(), self.agent, status, response_ms, errors, details,
                          self.expected_interval_s)
                return True
            except (db.ConnectError, psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self.close()
                if attempt == 2:
                    log.warning("heartbeat of %r not sent: %s", self.agent, db.redact(str(exc)))
            except (psycopg.Error, ValueError) as exc:
                # Refused by the server (a bad argument), or text no server can hold (NUL,
                # lone surrogates): the application carries on either way.
                log.warning("heartbeat of %r refused: %s", self.agent, str(exc).strip())
                return False
        return False

    @contextmanager
    def timed(self, details: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Time the block and send one heartbeat with its duration in ms.

        If the block raises, the heartbeat says status error with errors=1 and the
        exception's type in details, and the exception goes on. The yielded dict
        is sent as details: the block may add to it.
        """
        info: dict[str, Any] = dict(details or {})
        started = time.perf_counter()
        try:
            yield info
        except BaseException as exc:
            info.setdefault("error", type(exc).__name__)
            self.beat("error", (time.perf_counter() - started) * 1000, 1, info)
            raise
        self.beat("ok", (time.perf_counter() - started) * 1000, 0, info or None)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
