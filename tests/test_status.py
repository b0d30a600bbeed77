"""`pgperfmon status`: healthy after install, and each problem named with its fix."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from agent_login import agent_login
from click.testing import CliRunner
from psycopg import sql

from pgperfmon import __version__, cli, config, deploy, embedded, status


def run_status(dsn: str, *extra: str):
    return CliRunner().invoke(cli.main, ["status", "--dsn", dsn, *extra])


def test_healthy_right_after_install(installed: str) -> None:
    result = run_status(installed)
    assert result.exit_code == 0, result.output
    assert f"pgperfmon {__version__}" in result.output
    for capability in ("pg_cron", "pg_stat_statements", "plpython3u", "hypopg"):
        assert f"  {capability}" in result.output
    assert "healthy" in result.output.splitlines()[-1]


def test_json_has_the_same_facts(installed: str) -> None:
    result = run_status(installed, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["healthy"] is True
    assert data["installed"] is True
    capabilities = {c["capability"]: c for c in data["capabilities"]}
    assert capabilities["plpython3u"]["in_force"] is True
    assert "scikit-learn" in capabilities["plpython3u"]["detail"]
    with psycopg.connect(installed) as conn:
        planned = {r[0] for r in conn.execute("SELECT name FROM perfmon.job_plan")}
    assert {j["jobname"].rsplit(".", 1)[1] for j in data["jobs"]} == planned


def test_not_installed(dsn: str) -> None:
    result = run_status(dsn)
    assert result.exit_code == 1
    assert "pgperfmon is not installed in database" in result.output
    assert "run pgperfmon install" in result.output


def test_unscheduled_job_is_a_problem(installed: str, server, dbname: str) -> None:
    with psycopg.connect(installed) as conn:
        planned = [r[0] for r in conn.execute("SELECT name FROM perfmon.job_plan")]
    assert planned, "the job plan is empty"
    server.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %s",
                   (deploy.cron_job_prefix(dbname) + planned[0],))
    result = run_status(installed)
    assert result.exit_code == 1
    assert f"job {deploy.cron_job_prefix(dbname) + planned[0]} is not scheduled in pg_cron" in (
        result.output)
    assert "run pgperfmon install again" in result.output


@pytest.fixture(scope="module")
def no_cron_cluster() -> Iterator[embedded.Cluster]:
    """A second server whose shared_preload_libraries lacks pg_cron."""
    home = Path(tempfile.mkdtemp(prefix="pgpm-nocron-"))
    cluster = embedded.Cluster(
        home, settings={"shared_preload_libraries": "'pg_stat_statements'"})
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)


def test_status_fails_when_pg_cron_is_not_preloaded(no_cron_cluster: embedded.Cluster) -> None:
    dsn = no_cron_cluster.dsn()
    report = deploy.install(dsn, config.load(None, env={}))
    assert any("pg_cron is not in shared_preload_libraries" in n for n in report.notes)
    result = run_status(dsn)
    assert result.exit_code == 1
    assert ("pg_cron: pg_cron is not in shared_preload_libraries: add it and restart the server"
            in result.output)


def test_a_failing_collect_stage_makes_status_unhealthy_until_it_runs_again(installed: str) -> None:
    # The databases stage waits on a table another session holds, until lock_timeout: the
    # stage fails, the others store their rows, and the collect job itself succeeds.
    with psycopg.connect(installed, autocommit=True) as conn, psycopg.connect(installed) as holder:
        holder.execute("LOCK TABLE perfmon.state_databases IN ACCESS EXCLUSIVE MODE")
        stages = conn.execute("SELECT perfmon.collect()").fetchone()[0]["stages"]
        assert stages["databases"]["error"] == "canceling statement due to lock timeout", stages
        assert [name for name, stage in stages.items() if "error" in stage] == ["databases"], stages
        assert {"statements", "activity", "settings"} <= stages.keys()  # the others ran
        failing = run_status(installed)
        as_json = json.loads(run_status(installed, "--json").output)
        holder.rollback()
    assert failing.exit_code == 1, failing.output
    line = re.search(r"collect stage databases \(sample\) failed in its newest run at \S+ \S+: "
                     r"canceling statement due to lock timeout \((\d+) of (\d+) runs in the last hour "
                     r"failed; see perfmon.collect_timings\)", failing.output)
    assert line, failing.output
    assert 1 <= int(line[1]) <= int(line[2])
    assert as_json["healthy"] is False
    [row] = [e for e in as_json["recent_errors"] if e["name"] == "databases"]
    assert row["source"] == "collect" and row["kind"] == "sample" and row["failing"] is True
    assert row["error"] == "canceling statement due to lock timeout"

    # The stage works again: healthy, and the hour's error is still listed, not a problem.
    with psycopg.connect(installed, autocommit=True) as conn:
        stages = conn.execute("SELECT perfmon.collect()").fetchone()[0]["stages"]
        assert "error" not in stages["databases"], stages
        errors = conn.execute(
            "SELECT count(*) FROM perfmon.collect_timings WHERE stage = 'databases' "
            "AND error IS NOT NULL AND ts > now() - interval '1 hour'").fetchone()[0]
    recovered = run_status(installed)
    assert recovered.exit_code == 0, recovered.output
    assert recovered.output.splitlines()[-1] == "healthy"
    assert re.search(rf"  collect stage databases \(sample\) +{errors} of \d+ runs, last at \S+ \S+: "
                     r"canceling statement due to lock timeout$", recovered.output, re.M), recovered.output


def test_a_failing_analyze_part_is_logged_warned_and_makes_status_unhealthy(installed: str, server) -> None:
    log_offset = Path(server.cluster.logfile).stat().st_size if server.cluster is not None else None
    warnings: list[str] = []
    with psycopg.connect(installed, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: warnings.append(f"{d.severity}: {d.message_primary}"))
        # The health score may not be stored: its owner lost the privilege.
        conn.execute("REVOKE INSERT ON perfmon.health_history FROM perfmon_admin")
        started = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        conn.execute("SET ROLE perfmon_admin")  # as pg_cron runs it
        result = conn.execute("SELECT perfmon.analyze()").fetchone()[0]
        conn.execute("RESET ROLE")
        assert result["health"] == {"error": "permission denied for table health_history"}, result
        parts = {part: (error, ms) for part, error, ms in conn.execute(
            "SELECT part, error, ms FROM perfmon.analyze_timings WHERE ts >= %s", (started,))}
        # The other parts ran, timed, without error; the alert rules were evaluated.
        assert parts["health"][0] == result["health"]["error"]
        assert {p: e for p, (e, _) in parts.items() if p != "health"} == {
            "anomalies": None, "alerts": None, "recovery": None}, parts
        assert all(ms is not None for _, ms in parts.values())
        assert conn.execute("SELECT count(*) FROM perfmon.alert_rule_runs WHERE ts >= %s",
                            (started,)).fetchone()[0] >= 1
    assert [w for w in warnings if w.startswith("WARNING: pgperfmon: perfmon.analyze() part health failed: "
                                                "permission denied for table health_history")], warnings
    if log_offset is not None:
        with open(server.cluster.logfile, "rb") as f:
            f.seek(log_offset)
            logged = f.read().decode("utf-8", "replace")
        assert "WARNING:  pgperfmon: perfmon.analyze() part health failed: permission denied" in logged

    failing = run_status(installed)
    assert failing.exit_code == 1, failing.output
    assert re.search(r"analyze part health failed in its newest run at \S+ \S+: permission denied for table "
                     r"health_history \(\d+ of \d+ runs in the last hour failed; "
                     r"see perfmon.analyze_timings and the server log\)", failing.output), failing.output

    with psycopg.connect(installed, autocommit=True) as conn:
        conn.execute("GRANT INSERT ON perfmon.health_history TO perfmon_admin")
        assert conn.execute("SELECT perfmon.analyze()").fetchone()[0]["health"] == "recorded"
    found = status.collect(installed)
    assert found.healthy, found.problems
    assert [(e["source"], e["name"], e["failing"]) for e in found.recent_errors] == [
        ("analyze", "health", False)]


def test_expected_errors_are_one_line_not_a_traceback(installed: str, server, dbname: str,
                                                      tmp_path: Path) -> None:
    """The wrong login, a database without pgperfmon, an output folder that does not exist, a
    host label the database refuses: each a line naming the problem (these were tracebacks)."""
    bare = server.create_database()
    try:
        with agent_login(server, dbname) as agent_dsn:
            cases = {
                "a login outside perfmon_reader": (["status", "--dsn", agent_dsn],
                                                   "connect as a login granted perfmon_reader"),
                "no pgperfmon in the database": (["ingest", "--dsn", server.dsn(bare), "--metric",
                                                  "host.cpu.total_pct", "--input", "-"],
                                                 "pgperfmon is not installed in this database"),
                "no such output folder": (["report", "--dsn", installed, "--output",
                                           str(tmp_path / "gone" / "r.html")],
                                          "No such file or directory"),
            }
            for case, (args, expected) in cases.items():
                result = CliRunner().invoke(cli.main, args, input="2026-01-01T00:00:00Z,1\n")
                assert isinstance(result.exception, SystemExit) and result.exit_code == 1, (
                    f"{case}: {result.exception!r}\n{result.output}")
                assert result.output.startswith("error: ") and expected in result.output, (
                    f"{case}: {result.output}")
    finally:
        server.drop_database(bare)
    host = CliRunner().invoke(cli.main, ["agent", "--dsn", installed, "--host", "a\nb"])
    assert host.exit_code == 2 and "expected 1 to 200 printable characters" in host.output, host.output


def test_a_database_named_with_a_line_break_and_an_escape_sequence_is_shown_on_its_lines(server) -> None:
    # The name went to the terminal as it is: its line break forged a "healthy" line and split
    # every job's line, and its escape sequence would clear the screen.
    name = f"t_{secrets.token_hex(4)}\nhealthy \x1b[2J"
    shown = name.replace("\n", "\\n").replace("\x1b", "\\x1b")
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        dsn = server.dsn(name)
        deploy.install(dsn, config.load(None, env={}))
        server.pause_jobs(name)
        result = CliRunner().invoke(cli.main, ["status", "--dsn", dsn], color=True)
        lines = result.output.splitlines()
        assert lines[0] == f"database:  {shown}", result.output
        assert "\x1b" not in result.output
        start = lines.index("jobs:") + 1
        end = next(i for i, line in enumerate(lines) if line.startswith("newest sample"))
        assert end - start >= 5, result.output
        assert all(line.startswith(f"  pgperfmon.{shown}.") for line in lines[start:end]), result.output
        assert lines.count("healthy") <= 1 and "\nhealthy \n" not in result.output
    finally:
        server.drop_database(name)
