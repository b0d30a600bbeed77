"""Jobs that need an extension (perfmon.jobs.requires) follow the extensions present at each
install: the in-database host sampler and the alert delivery worker need plpython3u."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg

from pgperfmon import config, deploy

DEFAULTS = config.load(None, env={})
NEEDS_PLPYTHON = {"sample_host", "deliver_alerts"}
RELEASE_010 = Path(__file__).resolve().parent / "releases" / "pgperfmon-0.1.0-py3-none-any.whl"


def planned(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM perfmon.job_plan")}


def scheduled(server, dbname: str) -> set[str]:
    prefix = deploy.cron_job_prefix(dbname)
    return {r[0][len(prefix):] for r in server.execute(
        "SELECT jobname FROM cron.job WHERE starts_with(jobname, %s)", (prefix,))}


def enabled(dsn: str) -> dict[str, bool]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT name, enabled FROM perfmon.jobs WHERE name = ANY(%s)",
                                 (sorted(NEEDS_PLPYTHON),)).fetchall())


def test_jobs_start_at_the_install_that_finds_their_extension(dsn: str, server, dbname: str) -> None:
    first = deploy.install(dsn, DEFAULTS, skip_extensions=("plpython3u",))
    assert not NEEDS_PLPYTHON & planned(dsn)
    assert not NEEDS_PLPYTHON & scheduled(server, dbname)
    assert "collect" in scheduled(server, dbname)
    assert "job sample_host is not scheduled: it needs plpython3u (it starts at the next pgperfmon " \
           "install once that is there)" in first.notes
    assert enabled(dsn) == dict.fromkeys(NEEDS_PLPYTHON, True)  # the DBA's switch, left on

    second = deploy.install(dsn, DEFAULTS)  # plpython3u is there now
    assert NEEDS_PLPYTHON <= planned(dsn)
    assert NEEDS_PLPYTHON <= scheduled(server, dbname)
    assert f"scheduled {deploy.cron_job_prefix(dbname)}sample_host" in " ".join(second.changes)
    assert not [n for n in second.notes if "is not scheduled" in n]

    # A DBA who turns a job off keeps it off, install after install.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE perfmon.jobs SET enabled = false WHERE name = 'sample_host'")
    deploy.install(dsn, DEFAULTS)
    deploy.install(dsn, DEFAULTS)
    assert "sample_host" not in scheduled(server, dbname)
    assert "deliver_alerts" in scheduled(server, dbname)


def install_release_010(dsn: str, folder: Path, skip_plpython: bool) -> None:
    """pgperfmon 0.1.0's own installer and schema, from the released wheel."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
                    "--target", str(folder), str(RELEASE_010)], check=True)
    script = ("import sys; from pgperfmon import config, deploy; "
              "deploy.install(sys.argv[1], config.load(None, env={}), "
              f"skip_extensions={('plpython3u',) if skip_plpython else ()!r})")
    subprocess.run([sys.executable, "-c", script, dsn], env={"PYTHONPATH": str(folder)}, check=True,
                   capture_output=True, timeout=300)


def test_upgrade_schedules_the_jobs_0_1_0_left_off_for_want_of_plpython(dsn: str, server, dbname: str,
                                                                       tmp_path: Path) -> None:
    install_release_010(dsn, tmp_path / "release", skip_plpython=True)
    assert enabled(dsn) == dict.fromkeys(NEEDS_PLPYTHON, False)  # 0.1.0 decided once, at its migration
    deploy.install(dsn, DEFAULTS)  # the upgrade, where plpython3u is available
    assert enabled(dsn) == dict.fromkeys(NEEDS_PLPYTHON, True)
    assert NEEDS_PLPYTHON <= scheduled(server, dbname)


def test_upgrade_keeps_a_job_the_dba_turned_off(dsn: str, server, dbname: str, tmp_path: Path) -> None:
    install_release_010(dsn, tmp_path / "release", skip_plpython=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE perfmon.jobs SET enabled = false WHERE name = 'sample_host'")
    deploy.install(dsn, DEFAULTS)
    assert enabled(dsn) == {"sample_host": False, "deliver_alerts": True}
    assert "sample_host" not in scheduled(server, dbname)
    assert "deliver_alerts" in scheduled(server, dbname)
