"""`pgperfmon status`: healthy after install, and each problem named with its fix."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from pgperfmon import __version__, cli, config, deploy, embedded


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
