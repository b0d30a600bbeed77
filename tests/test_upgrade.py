"""The upgrade from the previous release (issue 9, item 4): the released 0.1.0 wheel installs
pgperfmon with its own installer, every table gets data, and `pgperfmon upgrade` of the
working tree keeps all of it, applies the new migrations once, re-syncs the jobs, and is a
no-op the second time. Nothing here depends on which migrations the working tree adds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from alert_servers import add_gauge_rule, http_receiver
from click.testing import CliRunner
from conftest import Server
from psycopg import sql

from helpers import collect, flush, run_probe
from pgperfmon import __version__, cli, db, deploy, embedded

RELEASES = Path(__file__).resolve().parent / "releases"
PREVIOUS = "0.1.0"
WHEEL = RELEASES / f"pgperfmon-{PREVIOUS}-py3-none-any.whl"

# Registries, configuration and bookkeeping: an upgrade may rightly add or change their
# rows (new seeds, new keys, the version). Every other table holds data and must come
# through unchanged.
BOOKKEEPING = {
    "meta", "config", "schema_migrations", "python_modules", "jobs", "collectors",
    "partitioned_tables", "advisor_rules", "anomaly_detectors", "anomaly_features",
    "alert_levels", "alert_channels", "recovery_playbook", "metric_units", "metrics", "servers",
}


def old_release(folder: Path) -> Path:
    """The released wheel unpacked into a folder of its own (its installer, its SQL)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-compile", "--target", str(folder), str(WHEEL)], check=True)
    return folder


def old_python(site: Path, *args: str) -> subprocess.CompletedProcess:
    """Python with the released package first on its path (before the working tree's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PYTHON"))}
    env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=300)


def tables(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        """SELECT c.relname FROM pg_class c
           WHERE c.relnamespace = 'perfmon'::regnamespace AND c.relkind IN ('r', 'p')
             AND NOT c.relispartition ORDER BY 1""")]


def fingerprint(conn: psycopg.Connection, table: str, columns: list[str]) -> tuple[int, str]:
    """Row count and an md5 of the rows (the given columns), in a stable order."""
    row = sql.SQL("ROW({})").format(sql.SQL(", ").join(sql.Identifier(c) for c in columns))
    return conn.execute(sql.SQL(
        "SELECT count(*), md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '')) "
        "FROM (SELECT {}::text AS r FROM perfmon.{}) AS t").format(row, sql.Identifier(table))
    ).fetchone()


def columns_of(conn: psycopg.Connection, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        """SELECT attname FROM pg_attribute
           WHERE attrelid = format('perfmon.%%I', %s::text)::regclass AND attnum > 0
             AND NOT attisdropped ORDER BY attnum""", (table,))]


# --------------------------------------------------------------------------- data of every kind

def synthetic_history(conn: psycopg.Connection) -> None:
    """Two days of one-minute samples, as collect() would have stored them: enough to train
    the anomaly models and to roll up whole hours and days."""
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(days=2)
    conn.execute("SELECT perfmon.ensure_day_partitions(t, %s, now() + interval '1 day') FROM "
                 "unnest(ARRAY['server_history', 'statement_history', 'database_history', "
                 "'metric_samples', 'samples']) AS t", (start,))
    conn.execute("SELECT perfmon.maintain_partitions(%s)", (start,))  # the month ones too
    conn.execute(
        """INSERT INTO perfmon.server_history (server_id, ts, max_connections, sessions_total,
               sessions_active, sessions_idle, sessions_idle_in_xact, sessions_waiting,
               blocked_sessions, interval_s, xact_commit, blks_hit, blks_read, max_xid_age)
           SELECT 1, %s + g * interval '1 minute', 100, 20 + g %% 5, 3 + g %% 3, 15, 0, g %% 2, 0,
                  60, 6000 + (g * 37) %% 500, 100000, 1000, 1000
           FROM generate_series(0, 2879) g""", (start,))
    conn.execute(
        """INSERT INTO perfmon.statement_history (server_id, ts, stmt_id, calls, exec_ms)
           SELECT 1, %s + g * interval '1 minute', 0, 6000, 12000 + (g * 53) %% 900
           FROM generate_series(0, 2879) g""", (start,))
    conn.execute(
        """INSERT INTO perfmon.samples (server_id, ts, kind, interval_s, duration_ms, stages)
           SELECT 1, %s + g * interval '1 minute', 'sample', 60, 25, '{}'
           FROM generate_series(0, 2879) g""", (start,))
    datid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]
    conn.execute(
        """INSERT INTO perfmon.database_history (server_id, ts, datid, numbackends, xact_commit, blks_hit)
           SELECT 1, %s + g * interval '1 minute', %s, 5, 6000, 100000
           FROM generate_series(0, 2879) g""", (start, datid))
    series = conn.execute(
        "SELECT series_id FROM perfmon.ingest_series(ARRAY['host.cpu.total_pct'], "
        "ARRAY['{\"host\": \"db1\"}'::jsonb], ARRAY[NULL::text])").fetchone()[0]
    conn.execute(
        """INSERT INTO perfmon.metric_samples (server_id, series_id, ts, value)
           SELECT 1, %s, %s + g * interval '1 minute', 20 + (g * 7) %% 10
           FROM generate_series(0, 2879) g""", (series, start))


# The operator's configuration, given to both installers (an install without --config
# stores the defaults). Keys the previous release knows, so that both accept it.
CONFIG = """
database:
  performance_thresholds:
    slow_query_ms: 0.001            # every statement is "slow": plan insights for the probe
alerting:
  channels:
    # secret_env spelled out: 0.1.0 lost a channel's default when a file set only `enabled`.
    slack: {enabled: true, secret_env: PGPERFMON_SLACK_WEBHOOK_URL}
optimization:
  auto_recovery:
    terminate_idle_in_transaction: {after_seconds: 0.1, allow_roles: ["*"]}
"""


def fill(dsn: str) -> None:
    """Use the installed release the way a server would: samples, ingest, heartbeats, alerts
    and their delivery, advice, anomalies, rollups, recovery, backups."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.probe (id int PRIMARY KEY, v text, w int)")
        conn.execute("INSERT INTO public.probe SELECT g, 'x' || g, g % 10 FROM generate_series(1, 120000) g")
        conn.execute("ANALYZE public.probe")
        conn.execute("SELECT pg_create_physical_replication_slot('upgrade_test_slot', true)")
        try:
            synthetic_history(conn)
            collect(conn)  # the baseline
            conn.execute("SELECT perfmon.collect_sizes()")
            # Work: slow enough scans for the advisor, a blocking lock, a setting that changes.
            for _ in range(30):
                conn.execute("SELECT count(*) FROM public.probe WHERE w = 3 AND v LIKE 'x1%%'")
            run_probe(conn, 5)
            conn.execute(sql.SQL("ALTER DATABASE {} SET work_mem = '7MB'").format(
                sql.Identifier(conn.info.dbname)))
            with psycopg.connect(dsn, autocommit=True) as blocker, \
                    psycopg.connect(dsn, autocommit=True) as sampler:
                blocker.execute("BEGIN")
                blocker.execute("UPDATE public.probe SET w = w WHERE id = 1")
                waiter = threading.Thread(target=_wait_for_row, args=(dsn,))
                waiter.start()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not sampler.execute(
                        "SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]:
                    time.sleep(0.05)
                flush(sampler)
                collect(sampler)
                blocker.execute("ROLLBACK")
                waiter.join(timeout=10)
            conn.execute("SELECT perfmon.collect_sizes()")
            collect(conn)
            conn.execute("SELECT perfmon.sample_host()")
            conn.execute("SELECT perfmon.sample_host_capacity()")
            conn.execute("SELECT perfmon.ingest_metric('host.cpu.total_pct', 42, now(), "
                         "'{\"host\": \"app1\"}')")
            conn.execute("SELECT perfmon.agent_heartbeat('checkout-service', 'ok', 12.5, 0, "
                         "'{\"version\": \"1.2\"}', 10)")
            conn.execute("SELECT perfmon.record_backup('pgbackrest', true, now() - interval '1 hour', "
                         "now(), 123456789, 'full backup', true, false)")
            # Advice and plans.
            conn.execute("SELECT perfmon.refresh_recommendations()")
            conn.execute("SELECT perfmon.explain_slow_queries()")
            conn.execute("SELECT perfmon.approve_index('public', 'probe', ARRAY['w'])")
            # Anomalies: models trained on the two days, then a sample far outside them.
            conn.execute("SELECT perfmon.train_anomaly_models(true)")
            conn.execute(
                """INSERT INTO perfmon.server_history (server_id, ts, max_connections, sessions_total,
                       sessions_active, sessions_idle, sessions_idle_in_xact, sessions_waiting,
                       blocked_sessions, interval_s, xact_commit, blks_hit, blks_read, max_xid_age)
                   VALUES (1, now(), 100, 95, 60, 15, 0, 40, 30, 60, 6000, 100000, 1000, 1000)""")
            conn.execute("SELECT perfmon.score_anomalies()")
            # Alerts: a rule that fires, delivered for real, acknowledged, then silenced.
            add_gauge_rule(conn, value=99)
            conn.execute("SELECT perfmon.analyze()")
            with http_receiver() as rx, psycopg.connect(dsn, autocommit=True) as backend:
                backend.execute("DO $$ import os; os.environ['PGPERFMON_SLACK_WEBHOOK_URL'] = "
                                f"'{rx.url}' $$ LANGUAGE plpython3u")
                backend.execute("CALL perfmon.deliver_alerts()")
                assert rx.received, "the release's worker delivered nothing"
            alert = conn.execute("SELECT min(alert_id) FROM perfmon.alert_log").fetchone()[0]
            conn.execute("SELECT perfmon.ack_alert(%s, 'on it')", (alert,))
            conn.execute("SELECT perfmon.silence_alerts('test_gauge', '%%', '2 hours', 'upgrade')")
            # A recovery plan (dry run) for an idle-in-transaction session.
            with psycopg.connect(dsn, autocommit=True) as idle:
                idle.execute("BEGIN")
                idle.execute("SELECT 1")
                conn.execute("SELECT pg_sleep(0.3)")
                conn.execute("SELECT perfmon.recover('manual', dry_run => true)")
            conn.execute("SELECT perfmon.rollup(now())")
        finally:
            conn.execute("SELECT pg_drop_replication_slot('upgrade_test_slot')")


def _wait_for_row(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True, application_name="upgrade-waiter") as w:
        w.execute("UPDATE public.probe SET w = w WHERE id = 1")


# --------------------------------------------------------------------------- the upgrade

@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return old_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def own_server() -> Iterator[Server]:
    """A server of its own: perfmon.statements holds the statements of the whole cluster
    (pg_stat_statements), and other tests' statements - some plant secrets on purpose, which
    a new migration may redact - have no place in the data compared here."""
    home = Path(tempfile.mkdtemp(prefix="pgpm-upgrade-"))
    cluster = embedded.Cluster(home)
    try:
        cluster.up()
        yield Server(cluster.dsn(), cluster)
    finally:
        cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)


def away_from_the_tick(margin: float = 15.0) -> None:
    """Return at least `margin` seconds before pg_cron's next minute tick."""
    left = 60 - datetime.now(timezone.utc).timestamp() % 60
    if left < margin:
        time.sleep(left + 1)


def stage_errors(result: dict) -> dict:
    return {k: v["error"] for k, v in result["stages"].items() if "error" in v}


def test_upgrade_from_the_previous_release_keeps_every_row(own_server: Server, release: Path,
                                                           tmp_path: Path) -> None:
    server = own_server
    dbname = server.create_database()
    dsn = server.dsn(dbname)
    config_file = tmp_path / "performance_monitoring.yml"
    config_file.write_text(CONFIG)
    which = old_python(release, "-c", "import pgperfmon; print(pgperfmon.__version__, pgperfmon.__file__)")
    assert which.returncode == 0, which.stderr
    assert which.stdout.split() == [PREVIOUS, str(release / "pgperfmon" / "__init__.py")]

    # The previous release installs itself, with its own installer and SQL.
    done = old_python(release, "-m", "pgperfmon", "install", "--dsn", dsn, "--config", str(config_file))
    assert done.returncode == 0, done.stderr
    assert f"pgperfmon {PREVIOUS} installed" in done.stdout
    prefix = deploy.cron_job_prefix(dbname)
    pause = "UPDATE cron.job SET active = %s WHERE starts_with(jobname, %s)"
    server.execute(pause, (False, prefix))  # no tick may add rows between the fingerprints
    fill(dsn)

    released = {int(p.name[:3]) for p in (release / "pgperfmon" / "_resources" / "sql" / "migrations")
                .glob("*.sql")}
    new = {m.version for m in deploy.migrations()} - released
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT value FROM perfmon.meta WHERE key = 'version'").fetchone() == (PREVIOUS,)
        applied_before = dict(conn.execute("SELECT version, applied_at FROM perfmon.schema_migrations"))
        assert set(applied_before) == released
        every = tables(conn)
        empty = [t for t in every if conn.execute(
            sql.SQL("SELECT NOT EXISTS (SELECT FROM perfmon.{})").format(sql.Identifier(t))).fetchone()[0]]
        assert empty == [], f"tables the test left empty: {empty}"
        data = [t for t in every if t not in BOOKKEEPING | {"alert_rules"}]
        columns = {t: columns_of(conn, t) for t in data}
        before = {t: fingerprint(conn, t, columns[t]) for t in data}
        rule_before = conn.execute("SELECT to_jsonb(r) FROM perfmon.alert_rules r "
                                   "WHERE name = 'test_gauge'").fetchone()
        upgrade_started = conn.execute("SELECT clock_timestamp()").fetchone()[0]

    # The working tree's upgrade. It schedules the jobs again (active): pause them at once,
    # away from a tick, so the fingerprints compare what the upgrade alone did.
    away_from_the_tick()
    upgraded = CliRunner().invoke(cli.main, ["upgrade", "--dsn", dsn, "--config", str(config_file)])
    server.execute(pause, (False, prefix))
    assert upgraded.exit_code == 0, upgraded.output
    assert f"upgraded pgperfmon {PREVIOUS} -> {__version__}" in upgraded.output
    for version in sorted(new):
        assert upgraded.output.count(f"applied migration {version:03d}_") == 1, upgraded.output

    with psycopg.connect(dsn, autocommit=True) as conn:
        after = {t: fingerprint(conn, t, columns[t]) for t in data}
        changed = {t: (before[t], after[t]) for t in data if before[t] != after[t]}
        assert changed == {}, f"the upgrade changed data: {changed}"
        assert conn.execute("SELECT to_jsonb(r) FROM perfmon.alert_rules r "
                            "WHERE name = 'test_gauge'").fetchone() == rule_before
        assert conn.execute("SELECT value FROM perfmon.meta WHERE key = 'version'").fetchone() == (
            __version__,)
        applied = dict(conn.execute("SELECT version, applied_at FROM perfmon.schema_migrations"))
        assert set(applied) == released | new
        assert all(applied[v] == applied_before[v] for v in released), "a released migration ran again"
        assert all(applied[v] > upgrade_started for v in new)
        plan = {prefix + name: (schedule, command, dbname, "perfmon_admin") for name, schedule, command
                in conn.execute("SELECT name, schedule, command FROM perfmon.job_plan")}
    jobs = {name: tuple(rest) for name, *rest in server.execute(
        "SELECT jobname, schedule, command, database, username FROM cron.job "
        "WHERE starts_with(jobname, %s)", (prefix,))}
    assert jobs == plan, "the jobs are not re-synced with the new job plan"

    # The new release works on the old data.
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(2):
            assert stage_errors(collect(conn)) == {}
        analyzed = conn.execute("SELECT perfmon.analyze()").fetchone()[0]
        assert not [k for k, v in analyzed.items() if isinstance(v, dict) and "error" in v], analyzed
        assert conn.execute("SELECT count(*) FROM perfmon.slow_queries").fetchone()[0] > 0

    server.execute(pause, (True, prefix))
    status = CliRunner().invoke(cli.main, ["status", "--dsn", dsn])
    assert status.exit_code == 0, status.output
    assert status.output.splitlines()[-1] == "healthy"
    assert f"pgperfmon {__version__}" in status.output

    again = CliRunner().invoke(cli.main, ["upgrade", "--dsn", dsn, "--config", str(config_file)])
    assert again.exit_code == 0, again.output
    assert again.output.strip().splitlines() == [
        f"pgperfmon {__version__} installed in {db.describe(dsn)} (nothing to change)"], again.output
    with psycopg.connect(dsn) as conn:
        assert dict(conn.execute("SELECT version, applied_at FROM perfmon.schema_migrations")) == applied
