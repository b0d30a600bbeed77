"""Install, reinstall, upgrade and uninstall against a real server."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from pgperfmon import cli, config, deploy
from pgperfmon.deploy import ROLES

DEFAULTS = config.load(None, env={})
REPO = Path(__file__).resolve().parents[1]


def catalog_snapshot(dsn: str, server) -> dict:
    """Everything install can change, including pg_cron's job ids."""
    with psycopg.connect(dsn) as conn:
        snap = {
            "functions": conn.execute(
                "SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid), p.proacl::text "
                "FROM pg_proc p WHERE p.pronamespace = 'perfmon'::regnamespace "
                "ORDER BY 1"
            ).fetchall(),
            "relations": conn.execute(
                "SELECT c.oid, c.relname, c.relkind, c.relacl::text, c.relowner FROM pg_class c "
                "WHERE c.relnamespace = 'perfmon'::regnamespace ORDER BY 2"
            ).fetchall(),
            "config": conn.execute(
                "SELECT key, value, updated_at FROM perfmon.config ORDER BY key"
            ).fetchall(),
            "meta": conn.execute("SELECT * FROM perfmon.meta ORDER BY key").fetchall(),
            "migrations": conn.execute(
                "SELECT * FROM perfmon.schema_migrations ORDER BY version"
            ).fetchall(),
            "modules": conn.execute(
                "SELECT name, sha256, deployed_at FROM perfmon.python_modules ORDER BY name"
            ).fetchall(),
        }
        dbname = conn.info.dbname
    snap["jobs"] = server.execute(
        "SELECT jobid, jobname, schedule, command, database, username, active FROM cron.job "
        "WHERE starts_with(jobname, %s) ORDER BY jobid",
        (deploy.cron_job_prefix(dbname),),
    )
    return snap


def test_install_creates_everything(installed: str, server, dbname: str) -> None:
    with psycopg.connect(installed) as conn:
        roles = {r[0] for r in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'perfmon\\_%'")}
        assert roles == set(ROLES)
        extensions = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
        assert {"pg_stat_statements", "plpython3u", "hypopg"} <= extensions
        applied = [r[0] for r in conn.execute(
            "SELECT version FROM perfmon.schema_migrations ORDER BY version")]
        assert applied == [m.version for m in deploy.migrations()]
        # Tables and views belong to perfmon_admin; the PL/Python code store does not.
        owners = dict(conn.execute(
            "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
            "WHERE c.relnamespace = 'perfmon'::regnamespace AND c.relkind IN ('r','v','p')"))
        assert owners.pop("python_modules") == "postgres"
        assert set(owners.values()) == {"perfmon_admin"}
        assert conn.execute(
            "SELECT perfmon.setting('collection.interval_seconds')::int").fetchone() == (60,)
    jobs = server.execute(
        "SELECT jobname, username, database FROM cron.job WHERE starts_with(jobname, %s)",
        (deploy.cron_job_prefix(dbname),),
    )
    plan = psycopg.connect(installed).execute("SELECT name FROM perfmon.job_plan").fetchall()
    assert sorted(j[0] for j in jobs) == sorted(deploy.cron_job_prefix(dbname) + p[0] for p in plan)
    assert all(j[1] == "perfmon_admin" and j[2] == dbname for j in jobs)


def test_python_modules_run_from_the_database(conn: psycopg.Connection) -> None:
    """The server imports plpython/ from perfmon.python_modules: no file of ours is needed."""
    env = conn.execute("SELECT perfmon.python_environment()").fetchone()[0]
    assert env["packages"]["scikit-learn"]["version"], env
    where = conn.execute(
        "SELECT perfmon.py_bootstrap() = encode(sha256(convert_to(string_agg(source, '' "
        "ORDER BY source COLLATE \"C\"), 'UTF8')), 'hex') FROM perfmon.python_modules"
    ).fetchone()
    assert where == (True,)


def test_second_install_changes_nothing(installed: str, server) -> None:
    before = catalog_snapshot(installed, server)
    report = deploy.install(installed, DEFAULTS)
    assert report.changes == []
    assert catalog_snapshot(installed, server) == before


def test_install_replaces_a_function_or_view_whose_result_columns_changed(installed: str) -> None:
    """CREATE OR REPLACE cannot change a function's result type or a view's columns: the
    install drops the old one and creates the new, and refuses to drop one a user's view
    depends on."""
    old_shape = ("CREATE FUNCTION perfmon.anomaly_scoring_values(detector text, lookback_s integer) "
                 "RETURNS TABLE (feature text, series text, ts timestamptz, value double precision) "
                 "LANGUAGE sql AS 'SELECT NULL::text, NULL::text, NULL::timestamptz, NULL::float8'")
    replace = ("DROP FUNCTION perfmon.anomaly_scoring_values(text, integer); "  # as an older release had it
               f"SET ROLE perfmon_admin; {old_shape}; RESET ROLE")
    with psycopg.connect(installed) as conn:
        conn.execute(replace)
        conn.execute("DROP VIEW perfmon.analyze_timings; SET ROLE perfmon_admin; "
                     "CREATE VIEW perfmon.analyze_timings AS SELECT 1 AS ts; RESET ROLE")
    report = deploy.install(installed, DEFAULTS)
    assert "replaced perfmon.anomaly_scoring_values(text,integer)" in report.changes
    assert "replaced perfmon.analyze_timings" in report.changes
    with psycopg.connect(installed) as conn:
        columns = conn.execute(
            "SELECT array_agg(a ORDER BY n) FROM pg_proc p, unnest(p.proargnames) WITH ORDINALITY AS u(a, n) "
            "WHERE p.oid = 'perfmon.anomaly_scoring_values(text,integer)'::regprocedure").fetchone()[0]
        assert columns == ["detector", "lookback_s", "feature", "series", "ts", "value", "scorable"]
        conn.execute(replace)
        conn.execute("CREATE VIEW public.my_scoring AS "
                     "SELECT * FROM perfmon.anomaly_scoring_values('envelope', 60)")
    with pytest.raises(psycopg.errors.DependentObjectsStillExist, match="my_scoring"):
        deploy.install(installed, DEFAULTS)


def test_upgrade_without_a_file_keeps_the_stored_configuration(installed: str, tmp_path: Path) -> None:
    """Without --config an upgrade stored the built-in defaults over the DBA's settings, and
    its partition maintenance then dropped the history past the default 30 days."""
    mine = tmp_path / "mine.yml"
    mine.write_text("collection:\n  retention_days: 90\nalerting:\n  cooldown_minutes: 5\n")
    runner = CliRunner()
    assert runner.invoke(cli.main, ["install", "--dsn", installed, "--config", str(mine)]).exit_code == 0

    def old_partitions(conn: psycopg.Connection) -> int:
        return conn.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'perfmon'::regnamespace AND relname ~ "
            "('_p' || to_char((now() AT TIME ZONE 'UTC')::date - 40, 'YYYYMMDD') || '$')").fetchone()[0]

    with psycopg.connect(installed, autocommit=True) as conn:
        # One partition of 40 days ago, as the retention of 90 keeps. (Not through
        # maintain_partitions(), whose locks on every history table can deadlock with the
        # minute's collect() inserting into them.)
        day = conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date - 40").fetchone()[0]
        conn.execute("SET ROLE perfmon_admin")
        conn.execute(sql.SQL("CREATE TABLE perfmon.{} PARTITION OF perfmon.samples "
                             "FOR VALUES FROM ({}) TO ({})")
                     .format(sql.Identifier(f"samples_p{day:%Y%m%d}"), sql.Literal(f"{day} 00:00+00"),
                             sql.Literal(f"{day + datetime.timedelta(days=1)} 00:00+00")))
        conn.execute("RESET ROLE")
        assert old_partitions(conn) > 0
        # A key this release no longer has, and one it adds (missing from the stored rows).
        conn.execute("""INSERT INTO perfmon.config (key, value) VALUES ('collection.gone', '1')""")
        conn.execute("DELETE FROM perfmon.config WHERE key = 'alerting.escalation_minutes'")
    upgrade = runner.invoke(cli.main, ["upgrade", "--dsn", installed])
    assert upgrade.exit_code == 0, upgrade.output
    assert "set alerting.escalation_minutes = 30" in upgrade.output
    assert "removed obsolete configuration key collection.gone" in upgrade.output
    assert "retention_days" not in upgrade.output and "dropped" not in upgrade.output
    with psycopg.connect(installed) as conn:
        stored = dict(conn.execute("SELECT key, value FROM perfmon.config"))
        assert (stored["collection.retention_days"], stored["alerting.cooldown_minutes"]) == (90, 5)
        assert old_partitions(conn) > 0
    again = runner.invoke(cli.main, ["upgrade", "--dsn", installed])
    assert "(nothing to change)" in again.output, again.output

    # A file that shortens the retention drops the older history, and says so.
    short = tmp_path / "short.yml"
    short.write_text("collection:\n  retention_days: 30\n")
    result = runner.invoke(cli.main, ["install", "--dsn", installed, "--config", str(short)])
    assert result.exit_code == 0, result.output
    assert "set collection.retention_days = 30" in result.output
    assert "history partitions older than collection.retention_days" in result.output
    with psycopg.connect(installed) as conn:
        assert old_partitions(conn) == 0


def test_cli_install_twice(dsn: str) -> None:
    runner = CliRunner()
    first = runner.invoke(cli.main, ["install", "--dsn", dsn])
    assert first.exit_code == 0, first.output
    assert "applied migration 001_foundation" in first.output
    second = runner.invoke(cli.main, ["install", "--dsn", dsn])
    assert second.exit_code == 0, second.output
    assert second.output.strip().endswith("(nothing to change)")


def previous_release(tmp_path: Path) -> Path:
    """The tree as it was just before the newest migration was added (from git): its own
    installer with its own sql/ and plpython/, since the two always ship together."""
    newest = deploy.migrations()[-1]
    assert newest.version > 1, "an upgrade needs two schema versions"
    file = f"sql/migrations/{newest.version:03d}_{newest.name}.sql"
    added = subprocess.run(
        ["git", "-C", str(REPO), "log", "--diff-filter=A", "--format=%H", "--", file],
        capture_output=True, text=True, check=True).stdout.split()
    assert added, f"{file} is not committed yet: commit it to test the upgrade"
    old = tmp_path / "previous-release"
    old.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", f"{added[-1]}^", "sql", "plpython", "installer", "config"],
        capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    return old


def test_upgrade_keeps_data(dsn: str, tmp_path: Path) -> None:
    """Install the release before the newest migration, add data, upgrade to this one."""
    old = previous_release(tmp_path)
    before_newest, newest = deploy.migrations()[-2:]
    env = {**os.environ, "PYTHONPATH": str(old / "installer")}
    imported = subprocess.run([sys.executable, "-c", "import pgperfmon; print(pgperfmon.__file__)"],
                              env=env, capture_output=True, text=True, check=True).stdout
    assert imported.startswith(str(old)), imported
    done = subprocess.run([sys.executable, "-m", "pgperfmon", "install", "--dsn", dsn], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT max(version) FROM perfmon.schema_migrations").fetchone() == (
            before_newest.version,)
        conn.execute("INSERT INTO perfmon.servers (server_id, name) VALUES (42, 'replica-b')")
        conn.execute("UPDATE perfmon.config SET value = '17' WHERE key = 'collection.retention_days'")
    report = deploy.install(dsn, DEFAULTS)
    assert f"applied migration {newest.version:03d}_{newest.name}" in report.changes
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT name FROM perfmon.servers WHERE server_id = 42").fetchone() == (
            "replica-b",)
        # The configuration given to the upgrade wins over an edit made in the table.
        assert conn.execute(
            "SELECT value FROM perfmon.config WHERE key = 'collection.retention_days'"
        ).fetchone() == (30,)


def test_bad_config_changes_nothing(installed: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("collection:\n  interval_seconds: 45\n  retention_dayz: 3\n")
    with psycopg.connect(installed) as conn:
        before = conn.execute("SELECT key, value, updated_at FROM perfmon.config").fetchall()
    result = CliRunner().invoke(cli.main, ["install", "--dsn", installed, "--config", str(bad)])
    assert result.exit_code == 1
    assert "collection.interval_seconds: got 45; expected a divisor of 60" in result.output
    assert "collection.retention_dayz: unknown key" in result.output
    with psycopg.connect(installed) as conn:
        after = conn.execute("SELECT key, value, updated_at FROM perfmon.config").fetchall()
    assert after == before


def test_config_change_is_stored_and_rescheduled(installed: str, server, dbname: str,
                                                  tmp_path: Path) -> None:
    good = tmp_path / "fast.yml"
    good.write_text("collection:\n  interval_seconds: 10\n")
    result = CliRunner().invoke(cli.main, ["install", "--dsn", installed, "--config", str(good)])
    assert result.exit_code == 0, result.output
    assert "set collection.interval_seconds = 10" in result.output
    shown = CliRunner().invoke(cli.main, ["config", "show", "--dsn", installed])
    assert "interval_seconds: 10" in shown.output
    with psycopg.connect(installed) as conn:
        plan = conn.execute("SELECT name, schedule, command FROM perfmon.job_plan "
                            "WHERE command LIKE 'CALL perfmon.run_every_interval%'").fetchall()
    jobs = dict(server.execute(
        "SELECT jobname, schedule FROM cron.job WHERE starts_with(jobname, %s)",
        (deploy.cron_job_prefix(dbname),)))
    for name, schedule, _command in plan:
        assert jobs[deploy.cron_job_prefix(dbname) + name] == schedule == "* * * * *"


def test_reader_reads_views_but_not_tables(conn: psycopg.Connection) -> None:
    conn.execute("SET ROLE perfmon_reader")
    views = [r[0] for r in conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c "
        "WHERE c.relnamespace = 'perfmon'::regnamespace AND c.relkind = 'v'")]
    assert views
    for view in views:
        conn.execute(f"SELECT * FROM {view} LIMIT 1")
    for statement in (
        "SELECT * FROM perfmon.config",
        "UPDATE perfmon.config SET value = '1'",
        "INSERT INTO perfmon.servers (server_id, name) VALUES (7, 'x')",
        "SELECT perfmon.python_environment()",
        "CREATE TABLE perfmon.intruder (x int)",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
    conn.execute("RESET ROLE")


def test_public_has_nothing(conn: psycopg.Connection) -> None:
    conn.execute("CREATE ROLE perfmon_test_nobody NOLOGIN")
    try:
        conn.execute("SET ROLE perfmon_test_nobody")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM perfmon.job_plan")
        conn.execute("RESET ROLE")
    finally:
        conn.execute("RESET ROLE")
        conn.execute("DROP ROLE perfmon_test_nobody")


def test_uninstall_leaves_nothing(installed: str, server, dbname: str) -> None:
    bi = f"bi_{dbname}"
    server.execute(f"CREATE ROLE {bi} LOGIN IN ROLE perfmon_reader")
    try:
        result = CliRunner().invoke(cli.main, ["uninstall", "--dsn", installed, "--yes"])
    finally:
        server.execute(f"DROP ROLE {bi}")
    assert result.exit_code == 0, result.output
    assert f"dropped role perfmon_reader (granted to {bi}, who lose it)" in result.output
    with psycopg.connect(installed) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'perfmon'").fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM pg_proc WHERE proname LIKE 'perfmon%'").fetchone() == (0,)
    assert server.execute(
        "SELECT count(*) FROM cron.job WHERE starts_with(jobname, %s)",
        (deploy.cron_job_prefix(dbname),)) == [(0,)]
    assert server.execute(
        "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", (list(ROLES),)) == [(0,)]


def test_uninstall_keep_data_then_reinstall(installed: str, server) -> None:
    with psycopg.connect(installed) as conn:
        conn.execute("INSERT INTO perfmon.servers (server_id, name) VALUES (9, 'kept')")
    report = deploy.uninstall(installed, keep_data=True)
    assert any("kept the tables" in n for n in report.notes)
    with psycopg.connect(installed) as conn:
        assert conn.execute("SELECT count(*) FROM pg_proc "
                            "WHERE pronamespace = 'perfmon'::regnamespace").fetchone() == (0,)
        assert conn.execute("SELECT name FROM perfmon.servers WHERE server_id = 9").fetchone() == (
            "kept",)
    assert server.execute(
        "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", (list(ROLES),)) == [(0,)]
    deploy.install(installed, DEFAULTS)
    with psycopg.connect(installed) as conn:
        assert conn.execute("SELECT name FROM perfmon.servers WHERE server_id = 9").fetchone() == (
            "kept",)
        assert conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class "
                            "WHERE oid = 'perfmon.servers'::regclass").fetchone() == (
            "perfmon_admin",)


def test_install_refuses_a_wrong_dsn() -> None:
    result = CliRunner().invoke(
        cli.main, ["install", "--dsn", "postgresql://someone:s3cret-pw@127.0.0.1:1/nowhere"])
    assert result.exit_code == 1
    assert "cannot connect to someone@127.0.0.1:1/nowhere" in result.output
    assert "s3cret-pw" not in result.output
    malformed = CliRunner().invoke(cli.main, ["install", "--dsn", "host=x port=5432 = nonsense"])
    assert malformed.exit_code == 1
    assert "the DSN is malformed" in malformed.output


def test_commands_on_a_database_without_pgperfmon_say_so(dsn: str) -> None:
    # One check (db.installed) and one message for every command that needs the schema.
    for args in (["config", "show"], ["status"], ["report", "--format", "json"]):
        result = CliRunner().invoke(cli.main, [*args, "--dsn", dsn])
        assert result.exit_code == 1, (args, result.output)
        assert "pgperfmon is not installed in database" in result.output, (args, result.output)
        assert "run pgperfmon install --dsn DSN first" in result.output, (args, result.output)


def test_advisor_reads_all_tables_is_granted_and_revoked(installed: str, tmp_path: Path) -> None:
    def member() -> bool:
        with psycopg.connect(installed) as conn:
            return conn.execute(
                "SELECT pg_has_role('perfmon_admin', 'pg_read_all_data', 'MEMBER')").fetchone()[0]

    assert member() is False  # off by default: least privilege
    wide = tmp_path / "wide.yml"
    wide.write_text("optimization:\n  advisor_reads_all_tables: true\n")
    report = deploy.install(installed, config.load(wide, env={}))
    assert any("granted pg_read_all_data" in c for c in report.changes)
    assert member() is True
    report = deploy.install(installed, DEFAULTS)
    assert any("revoked pg_read_all_data" in c for c in report.changes)
    assert member() is False


def test_a_database_whose_name_extends_another_keeps_its_jobs(server) -> None:
    """Jobs are named pgperfmon.<database>.<job>: those of "shop.eu" start with the prefix of
    "shop", whose install unscheduled them and whose uninstall deleted them."""
    shop = server.create_database()
    shop_eu = f"{shop}.eu"
    server.execute(f'CREATE DATABASE "{shop_eu}"')
    try:
        deploy.install(server.dsn(shop_eu))
        jobs = "SELECT count(*) FROM cron.job WHERE database = %s"
        (planned,), = server.execute(jobs, (shop_eu,))
        assert planned > 0
        report = deploy.install(server.dsn(shop))
        assert not any("unscheduled" in c for c in report.changes), report.changes
        deploy.uninstall(server.dsn(shop), keep_data=False)
        assert server.execute(jobs, (shop_eu,)) == [(planned,)]
    finally:
        deploy.uninstall(server.dsn(shop_eu), keep_data=False)
        server.drop_database(shop_eu)
        server.drop_database(shop)


def test_a_time_zone_the_server_does_not_know_is_refused_before_any_change(installed: str,
                                                                         tmp_path: Path) -> None:
    """Python's zoneinfo takes right/UTC, pg_timezone_names has no such name: installed, it
    made every hourly training fail."""
    bad = tmp_path / "zone.yml"
    bad.write_text("anomaly_detection:\n  timezone: right/UTC\n")
    config.load(bad, env={})  # the file alone is valid
    result = CliRunner().invoke(cli.main, ["install", "--dsn", installed, "--config", str(bad)])
    assert result.exit_code == 1, result.output
    assert "anomaly_detection.timezone 'right/UTC': not a time zone name on this server" in result.output
    with psycopg.connect(installed) as conn:
        assert conn.execute("SELECT perfmon.anomaly_timezone()").fetchone() == ("UTC",)


def test_an_install_that_deadlocks_with_a_running_job_starts_again(installed: str) -> None:
    """An install re-creates every view (ACCESS EXCLUSIVE until it commits): a job reading
    the last view, then one the install already replaced, deadlocks with it. The install,
    waiting first, is the one rolled back; it starts again and finishes."""
    first, last = "perfmon.advisor_timings", "perfmon.wraparound_risk"  # views applied first and last
    outcome: dict = {}

    def upgrade() -> None:
        try:
            outcome["report"] = deploy.install(installed)
        except Exception as exc:
            outcome["error"] = exc

    with psycopg.connect(installed) as job, psycopg.connect(installed, autocommit=True) as watch:
        job.execute(f"SELECT count(*) FROM {last}")
        thread = threading.Thread(target=upgrade)
        thread.start()
        waiting = ("SELECT count(*) FROM pg_locks WHERE NOT granted AND mode = 'AccessExclusiveLock' "
                   f"AND relation = '{last}'::regclass")
        deadline = time.monotonic() + 60
        while watch.execute(waiting).fetchone()[0] == 0:
            assert time.monotonic() < deadline and thread.is_alive(), outcome
            time.sleep(0.05)
        job.execute(f"SELECT count(*) FROM {first}")  # waits for the install: a deadlock
        job.commit()
        thread.join(120)
    assert "report" in outcome, outcome
    assert "started again 1 time(s) after a deadlock with a running job" in outcome["report"].notes


def test_an_upgrade_over_a_stored_value_this_release_refuses_changes_nothing(installed: str,
                                                                           tmp_path: Path) -> None:
    """0.1.0 stored an allow_tables pattern without its schema, and a webhook URL pasted as
    secret_env; this release refuses both. Without --config the upgrade re-validates what is
    stored: it must stop naming each key, change nothing, and go through once a file fixes them."""
    rows_query = "SELECT key, value, updated_at FROM perfmon.config ORDER BY key"
    bad = {"optimization.auto_recovery.vacuum_tables.allow_tables": '["Orders"]',
           "alerting.channels.webhook.secret_env": '"https://hooks.example/T0/B0/secret-path"'}
    with psycopg.connect(installed, autocommit=True) as conn:
        for key, value in bad.items():
            conn.execute("UPDATE perfmon.config SET value = %s::jsonb WHERE key = %s", (value, key))
        before = conn.execute(rows_query).fetchall()
    runner = CliRunner()
    refused = runner.invoke(cli.main, ["upgrade", "--dsn", installed])
    assert refused.exit_code == 1, refused.output
    for key in bad:
        assert key in refused.output, refused.output
    assert "secret-path" not in refused.output
    assert "run the upgrade again with --config FILE" in refused.output
    with psycopg.connect(installed) as conn:
        assert conn.execute(rows_query).fetchall() == before
    fixed = tmp_path / "fixed.yml"
    fixed.write_text("optimization:\n  auto_recovery:\n    vacuum_tables:\n"
                     "      allow_tables: ['public.\"Orders\"']\n"
                     "alerting:\n  channels:\n    webhook:\n      secret_env: PGPERFMON_WEBHOOK_URL\n")
    result = runner.invoke(cli.main, ["upgrade", "--dsn", installed, "--config", str(fixed)])
    assert result.exit_code == 0, result.output
    with psycopg.connect(installed) as conn:
        stored = dict(conn.execute("SELECT key, value FROM perfmon.config"))
    assert stored["optimization.auto_recovery.vacuum_tables.allow_tables"] == ['public."Orders"']
