"""`pgperfmon agent`: samples a host the database cannot sample and feeds its metrics in.

Two loops share a spool (``pgperfmon.spool``):
- the sampler takes a sample every interval (``perfmon_py.hostmetrics``, the
  same code the in-database sampler runs) and appends it to the spool, fsynced,
  whatever the state of the database;
- the flusher sends what the spool holds, oldest first, through the ingest
  write path (``pgperfmon.ingest.Writer``) and acknowledges each stored batch;
  while the database is unreachable it retries every interval.

So a sample is never lost between sampling and storage: it is in the spool until
the database has it, and its idempotency key makes a re-sent batch a no-op. A
batch the database refuses for its content, and would refuse at every try, is
set aside (logged, counted as dropped) so that it does not hold back the rest.
SIGTERM or SIGINT: sampling stops, the flusher makes a last attempt, and what
could not be sent stays in the spool for the next start.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import click
import psycopg
from psycopg.types.json import Jsonb

from pgperfmon import db, embedded, ingest, resources
from pgperfmon.spool import Spool, SpoolError

log = logging.getLogger("pgperfmon.agent")


def hostmetrics() -> Any:
    """The sampling module of plpython/, shared with the in-database sampler."""
    return resources.plpython_module("hostmetrics")


def default_spool_dir() -> Path:
    return embedded.default_home() / "agent-spool"


class Agent:
    def __init__(self, dsn: str, interval: float = 10.0, spool_dir: Path | str | None = None,
                 spool_max_bytes: int = 256 * 1024 * 1024, host: str | None = None):
        self.dsn = dsn
        self.interval = interval
        self.hm = hostmetrics()
        self.host = host or self.hm.hostname()
        self.name = f"pgperfmon-agent@{self.host}"
        self.spool = Spool(spool_dir or default_spool_dir(), max_bytes=spool_max_bytes)
        self.stop = threading.Event()
        self._wake = threading.Event()
        self._state: dict | None = None
        self._conn: psycopg.Connection | None = None
        self._writer: ingest.Writer | None = None
        self._postmaster: int | None = None
        self._reported_dropped = 0
        self._online = True
        self.sent = 0
        self.refused = 0

    # ------------------------------------------------------------------ sampling
    def sample_once(self, now: float | None = None) -> dict:
        """Take one sample and spool it; returns the spooled record."""
        now = time.time() if now is None else now
        points, self._state = self.hm.sample(self._state, host=self.host,
                                             postmaster_pid=self._postmaster, now=now)
        agent_labels = {"host": self.host}
        pending = self.spool.pending
        points.append(("agent.spool.pending_batches", agent_labels, float(pending)))
        dropped_total = self.spool.dropped
        dropped = dropped_total - self._reported_dropped
        if dropped:
            points.append(("agent.spool.dropped_batches", agent_labels, float(dropped)))
        record = {"key": str(uuid.uuid4()), "ts": now,
                  "points": [[m, labels, v] for m, labels, v in points]}
        self.spool.append(record)
        # Reported once the report is spooled: a sample the spool refused (a full disk)
        # leaves the count for the next one, with itself added.
        self._reported_dropped = dropped_total
        self._wake.set()
        return record

    # ------------------------------------------------------------------ sending
    def _connect(self) -> bool:
        if self._writer is not None:
            return True
        try:
            conn = db.connect(self.dsn, application_name="pgperfmon agent")
        except db.ConnectError as exc:
            if self._online:
                log.warning("database unreachable, spooling to %s: %s", self.spool.folder, exc)
                self._online = False
            return False
        try:
            pid, started = conn.execute(
                "SELECT pg_backend_pid(), extract(epoch FROM pg_postmaster_start_time())::float8"
            ).fetchone()
            conn.commit()
            self._postmaster = self.hm.postmaster_of(pid, started)
            self._writer = ingest.Writer(conn, agent=self.name)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            # The session ended as soon as it began (a restart, pg_terminate_backend): a
            # loss like any other, retried at the next interval, not a reason to stop.
            conn.close()
            if self._online:
                log.warning("database unreachable, spooling to %s: %s", self.spool.folder,
                            db.redact(str(exc).strip()))
                self._online = False
            return False
        except psycopg.Error as exc:
            conn.close()
            raise ingest.IngestError(
                f"connected to {db.describe(self.dsn)} but cannot feed it: {exc}".strip()
                + " (is pgperfmon installed, and is the login a member of perfmon_agent?)"
            ) from None
        self._conn = conn
        if not self._online:
            log.warning("database reachable again: replaying %d spooled batches", self.spool.pending)
        self._online = True
        return True

    def _disconnect(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None
        self._writer = None

    def flush(self, deadline: float | None = None) -> int:
        """Send spooled batches, oldest first, until empty, unreachable or past the deadline."""
        sent = refused = 0
        send_ms = 0.0
        if not self._connect():
            return 0
        assert self._writer is not None
        while deadline is None or time.monotonic() < deadline:
            item = self.spool.peek()
            if item is None:
                break
            position, record = item
            try:
                key = uuid.UUID(record["key"])
                rows = [(i, ingest.series_key(m, labels), float(record["ts"]), float(v))
                        for i, (m, labels, v) in enumerate(record["points"], start=1)]
            except (KeyError, ValueError, TypeError) as exc:  # JSON, but not a batch
                self._set_aside(position, record, f"malformed batch ({type(exc).__name__}: {exc})")
                continue
            started = time.perf_counter()
            try:
                result = self._writer.send(key, rows)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                log.warning("database unreachable, spooling to %s: %s", self.spool.folder,
                            db.redact(str(exc).strip()))
                self._online = False
                self._disconnect()
                break
            except (psycopg.DataError, psycopg.IntegrityError, UnicodeEncodeError) as exc:
                # This batch's content is refused, and will be every time: sent again it
                # would hold back every batch behind it for good.
                self._rollback()
                self._set_aside(position, record, db.redact(str(exc).strip()))
                continue
            self.spool.ack(position)
            send_ms += (time.perf_counter() - started) * 1000
            sent += 1
            refused += result.refused
            for row, reason in result.errors[:20]:
                log.warning("batch %s: refused row %s: %s", record["key"], row, reason)
        self.sent += sent
        self.refused += refused
        if sent and self._conn is not None:
            self._heartbeat(send_ms / sent, refused)
        return sent

    def _set_aside(self, position: tuple[int, int], record: Any, reason: str) -> None:
        """Drop a batch the database can never store, loudly, so the ones behind it flow."""
        self.spool.drop(position)
        key = record.get("key") if isinstance(record, dict) else None
        log.error("batch %s set aside, it can never be stored: %s (%d batches dropped since start)",
                  key, reason, self.spool.dropped)

    def _rollback(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rollback()
        except psycopg.Error:
            self._disconnect()

    def _heartbeat(self, response_ms: float, errors: int) -> None:
        """The agent reports itself like any application agent (perfmon.agent_health)."""
        assert self._conn is not None
        try:
            self._conn.execute(
                "SELECT perfmon.agent_heartbeat(%s, 'ok', %s, %s, %s, %s)",
                (self.name, response_ms, errors,
                 Jsonb({"spool_pending": self.spool.pending,
                                           "spool_dropped": self.spool.dropped}),
                 float(self.interval)))
            self._conn.commit()
        except psycopg.Error:
            self._conn.rollback()

    # ------------------------------------------------------------------ running
    def _flusher(self) -> None:
        while not self.stop.is_set():
            try:
                self.flush(deadline=time.monotonic() + self.interval)
            except Exception:  # keep flushing: the spool keeps the data meanwhile
                log.exception("flushing the spool failed")
                self._disconnect()
            self._wake.wait(self.interval)
            self._wake.clear()

    def run(self, install_signals: bool = True) -> None:
        """Sample every interval until SIGTERM/SIGINT (or ``stop``); then flush what it can."""
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop.set())
        self._connect()  # first: it tells whether the PostgreSQL processes are local
        flusher = threading.Thread(target=self._flusher, name="pgperfmon-flusher", daemon=True)
        flusher.start()
        log.info("sampling %s every %s s into %s", self.host, self.interval, self.spool.folder)
        next_at = time.monotonic()
        while not self.stop.is_set():
            try:
                self.sample_once()
            except (OSError, SpoolError) as exc:  # a full disk under the spool, a vanished folder
                log.error("cannot spool a sample: %s", exc)
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:  # late (suspended, overloaded): skip, do not bunch up
                next_at = now + self.interval
            self.stop.wait(next_at - now)
        self._wake.set()
        flusher.join(timeout=30)
        try:
            if not flusher.is_alive():
                self.flush(deadline=time.monotonic() + 10)
        finally:
            self._disconnect()
            self.spool.close()
        left = self.spool.pending
        log.info("stopped: %d batches sent, %s", self.sent,
                 f"{left} kept in the spool for the next start" if left else "spool empty")


def _host_label(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """The database refuses a label value over 200 characters (perfmon.ingest_series): say so
    at the start, not at the first flush."""
    if value is not None and (not value or len(value) > 200 or not value.isprintable()):
        raise click.BadParameter("expected 1 to 200 printable characters")
    return value


@click.command("agent")
@click.option("--dsn", envvar="PGPERFMON_DSN", default=None,
              help="libpq connection string of a login in role perfmon_agent; default $PGPERFMON_DSN.")
@click.option("--interval", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="seconds between samples.")
@click.option("--spool-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"where unsent samples wait (default {default_spool_dir()}).")
@click.option("--spool-max-mb", type=click.IntRange(min=1), default=256, show_default=True,
              help="spool size limit; when full the oldest samples are dropped, loudly.")
@click.option("--host", "host", default=None, callback=_host_label,
              help="host label of the samples (default: hostname).")
def command(dsn: str | None, interval: float, spool_dir: Path | None, spool_max_mb: int,
            host: str | None) -> None:
    """Sample this host's CPU, memory, disks and network into the database, spooling when it is down."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    Agent(db.resolve_dsn(dsn), interval=interval, spool_dir=spool_dir,
          spool_max_bytes=spool_max_mb * 1024 * 1024, host=host).run()
