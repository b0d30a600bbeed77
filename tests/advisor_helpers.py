"""Helpers shared by the advisor tests."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from helpers import collect, flush
from pgperfmon import config, deploy, embedded

DEDICATED_DATABASE = "advisor"


def refresh(conn: psycopg.Connection) -> dict[str, Any]:
    result = conn.execute("SELECT perfmon.refresh_recommendations()").fetchone()[0]
    errors = {k: v["error"] for k, v in result["rules"].items() if "error" in v}
    assert not errors, errors
    return result


def findings(conn: psycopg.Connection, rule: str, status: str | None = "open") -> list[dict]:
    """Rows of perfmon.recommendations made by one rule (of one status, or all)."""
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        "SELECT * FROM perfmon.recommendations WHERE rule = %s AND (%s::text IS NULL OR status = %s) "
        "ORDER BY id", (rule, status, status)).fetchall()


def view(conn: psycopg.Connection, name: str, where: str = "true") -> list[dict]:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(f"SELECT * FROM perfmon.{name} WHERE {where}").fetchall()


def set_config(conn: psycopg.Connection, key: str, value: object) -> None:
    conn.execute("UPDATE perfmon.config SET value = %s::jsonb WHERE key = %s", (json.dumps(value), key))
    assert conn.execute("SELECT count(*) FROM perfmon.config WHERE key = %s", (key,)).fetchone() == (1,)


def sampled(conn: psycopg.Connection, work: Any) -> None:
    """A baseline sample, the work, then a sample that stores what the work did."""
    flush(conn)
    collect(conn)
    work()
    flush(conn)
    collect(conn)


@contextmanager
def dedicated_cluster(settings: dict[str, str]) -> Iterator[embedded.Cluster]:
    """A server of the test's own, for settings the shared one must not change (archive_mode,
    a replica, autovacuum_naptime); stopped and removed at the end."""
    home = Path(tempfile.mkdtemp(prefix="pgpm-adv-"))
    cluster = embedded.Cluster(home, settings=settings)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)


def installed_on(cluster: embedded.Cluster, dbname: str = DEDICATED_DATABASE) -> psycopg.Connection:
    """pgperfmon in a new database `dbname` of `cluster`, its pg_cron jobs paused (the test
    refreshes); an autocommit connection to it."""
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        deploy.install(cluster.dsn(dbname), config.load(None, env={}))
        admin.execute("UPDATE cron.job SET active = false WHERE starts_with(jobname, %s)",
                      (deploy.cron_job_prefix(dbname),))
    return psycopg.connect(cluster.dsn(dbname), autocommit=True)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    """Poll until check() is truthy and return it; fail naming what did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.2)


def write_wal(conn: psycopg.Connection, segments: int) -> None:
    """Fill `segments` WAL segments, each ended with pg_switch_wal()."""
    conn.execute("CREATE TABLE IF NOT EXISTS churn (v int)")
    for _ in range(segments):
        conn.execute("INSERT INTO churn VALUES (1)")  # a switch needs something written
        conn.execute("SELECT pg_switch_wal()")


def start_standby(primary: embedded.Cluster, standby: embedded.Cluster, slot: str | None) -> None:
    """Make `standby` a streaming replica of `primary` using physical slot `slot` (None: no
    slot, the primary keeps no trace of it once it disconnects); start it."""
    home = standby.home
    home.mkdir(mode=0o711)
    home.chmod(0o711)  # the server's account walks down to pgdata
    pgdata = home / "pgdata"
    pgdata.mkdir(mode=0o700)
    primary._chown(pgdata)
    # As the server's account, over the primary's socket (trusted locally): the replica's
    # primary_conninfo then needs no password.
    primary._run_as_server([
        str(primary.binaries.bindir / "pg_basebackup"), "--pgdata", str(pgdata),
        "--host", str(primary.pgdata), "--port", str(primary.port),
        "--username", embedded.SUPERUSER, "--write-recovery-conf",
        *(["--create-slot", "--slot", slot] if slot else []),
        "--wal-method=stream", "--checkpoint=fast"])
    shutil.copy(primary.passfile, standby.passfile)  # the same superuser and password
    # Not standby.up(): it creates pg_cron's extension, which a read-only standby refuses.
    standby._write_settings(embedded.free_port())
    assert (failure := standby._start()) is None, failure
    standby._wait_ready()
