"""`pgperfmon status`: what is installed, which modes are in force, how the jobs ran.

Healthy means: installed, pg_cron and pg_stat_statements in force, every planned
job scheduled and its latest run not failed, no collection stage failed in the
newest sample of its kind and no part of `perfmon.analyze()` in its newest run
(a job catches those errors and succeeds), and a sample no older than three
collection intervals (a fresh install whose first sample is not yet due counts
as healthy). Each problem comes with the fix. Stage and part errors of the last
hour that the newest run no longer has are listed, not counted as problems.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgperfmon import db, rendering, resources
from pgperfmon.deploy import cron_database, cron_job_prefix

# Capabilities whose absence makes pgperfmon degraded, not broken.
OPTIONAL = {"plpython3u", "hypopg", "advisor_scope"}


@dataclass
class Status:
    database: str
    installed: bool = False
    version: str | None = None
    schema_version: int | None = None
    installed_at: datetime | None = None
    capabilities: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    newest_sample: datetime | None = None
    newest_sample_age_seconds: float | None = None
    # Collection stages and analyze parts that failed in the last hour or in their
    # newest run: source ("collect" or "analyze"), kind, name, error, last_error_at,
    # errors_last_hour, runs_last_hour, failing (the newest run failed).
    recent_errors: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["healthy"] = self.healthy
        return out


def collect(dsn: str) -> Status:
    with db.connection(dsn, autocommit=True) as conn:
        conn.row_factory = dict_row  # type: ignore[assignment]
        status = Status(database=conn.info.dbname)
        if not db.installed(conn):
            status.problems.append(db.not_installed(conn))
            return status
        status.installed = True
        facts = conn.execute(resources.sql("queries/install_facts")).fetchone() or {}
        status.version = facts.get("version")
        status.schema_version = facts.get("schema_version")
        status.installed_at = facts.get("installed_at")
        status.capabilities = conn.execute(
            "SELECT capability, in_force, detail FROM perfmon.capabilities()"
        ).fetchall()
        for cap in status.capabilities:
            if not cap["in_force"] and cap["capability"] not in OPTIONAL:
                status.problems.append(f"{cap['capability']}: {cap['detail']}")
        _check_jobs(conn, dsn, status)
        _check_samples(conn, status, facts)
        _check_errors(conn, status)
    return status


def _check_jobs(conn: psycopg.Connection, dsn: str, status: Status) -> None:
    cron_db = cron_database(conn)
    if cron_db is None:
        return  # already a problem through the pg_cron capability
    planned = [r["name"] for r in conn.execute("SELECT name FROM perfmon.job_plan")]
    prefix = cron_job_prefix(conn.info.dbname)
    try:
        cron = db.connect(db.with_dbname(dsn, cron_db), autocommit=True)
    except db.ConnectError as exc:
        status.problems.append(f"pg_cron: cannot read the jobs in database {cron_db}: {exc}")
        return
    with cron:
        cron.row_factory = dict_row  # type: ignore[assignment]
        has_cron = cron.execute(
            "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') AS ok"
        ).fetchone()
        if not has_cron or not has_cron["ok"]:
            status.problems.append(
                f"pg_cron: the extension is not created in database {cron_db}: "
                "run pgperfmon install again"
            )
            return
        try:
            status.jobs = cron.execute(
                resources.sql("queries/cron_jobs"), {"prefix": prefix, "dbname": conn.info.dbname}
            ).fetchall()
        except psycopg.errors.InsufficientPrivilege:
            status.problems.append(
                f"pg_cron: {cron.info.user} may not read cron.job in database {cron_db}: "
                "run status as a superuser"
            )
            return
    for job in status.jobs:
        job["last_message"] = db.redact(job["last_message"] or "") or None
        if job["last_status"] == "failed":
            # The error's first line: its HINT and CONTEXT lines are in cron.job_run_details.
            error = (job["last_message"] or "no message").splitlines()[0]
            status.problems.append(
                f"job {job['jobname']} failed at {job['last_start']:%Y-%m-%d %H:%M:%S%z}: "
                f"{error} (see cron.job_run_details in database {cron_db})"
            )
        if not job["active"]:
            status.problems.append(
                f"job {job['jobname']} is inactive: run pgperfmon install to re-enable it"
            )
    scheduled = {j["jobname"] for j in status.jobs}
    for name in planned:
        if prefix + name not in scheduled:
            status.problems.append(
                f"job {prefix + name} is not scheduled in pg_cron: run pgperfmon install again"
            )


def _check_samples(conn: psycopg.Connection, status: Status, facts: dict[str, Any]) -> None:
    has_samples = conn.execute(
        "SELECT to_regclass('perfmon.samples') IS NOT NULL AS ok"
    ).fetchone()
    if not has_samples or not has_samples["ok"]:
        return
    row = conn.execute("SELECT max(ts) AS ts, now() AS now FROM perfmon.samples").fetchone()
    now: datetime = row["now"]
    status.newest_sample = row["ts"]
    interval = timedelta(seconds=facts.get("interval_seconds") or 60)
    # pg_cron starts on the minute: allow a minute of start-up beside three intervals.
    allowed = 3 * interval + timedelta(seconds=60)
    if status.newest_sample is not None:
        status.newest_sample_age_seconds = round((now - status.newest_sample).total_seconds(), 1)
        if now - status.newest_sample > allowed:
            status.problems.append(
                f"the newest sample is {status.newest_sample_age_seconds:.0f} s old "
                f"(expected one every {interval.total_seconds():.0f} s): check the collect job "
                "in cron.job_run_details and the server log"
            )
        return
    since = facts.get("migrated_at") or status.installed_at
    if since is not None and now - since > allowed:
        status.problems.append(
            "no sample has been taken since install: check that the collect job runs "
            "(cron.job_run_details) and that pg_cron's background workers can start"
        )


# What reports errors that its job catches: the query, the table it needs (older
# schemas lack it), how the problem names the failing item, and where to look.
_ERROR_SOURCES = (
    ("collect", "queries/collect_stage_errors", "perfmon.samples", "perfmon.collect_timings"),
    ("analyze", "queries/analyze_part_errors", "perfmon.analyze_runs",
     "perfmon.analyze_timings and the server log"),
)


def _check_errors(conn: psycopg.Connection, status: Status) -> None:
    for source, query, table, where in _ERROR_SOURCES:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", (table,)).fetchone()
        if not exists or not exists["ok"]:
            continue
        for row in conn.execute(resources.sql(query)).fetchall():
            row = {"source": source, **row}
            row["error"] = db.redact((row["error"] or "no message").splitlines()[0])
            status.recent_errors.append(row)
            if row["failing"]:
                status.problems.append(
                    f"{_what(row)} failed in its newest run at {row['last_error_at']:%Y-%m-%d %H:%M:%S%z}: "
                    f"{row['error']} ({row['errors_last_hour']} of {row['runs_last_hour']} runs "
                    f"in the last hour failed; see {where})"
                )


def _what(row: dict[str, Any]) -> str:
    if row["source"] == "collect":
        return f"collect stage {row['name']} ({row['kind']})"
    return f"analyze part {row['name']}"


def render(status: Status) -> str:
    lines = [f"database:  {status.database}"]
    if status.installed:
        lines.append(
            f"installed: pgperfmon {status.version} (schema {status.schema_version}, "
            f"since {status.installed_at:%Y-%m-%d %H:%M:%S%z})"
            if status.installed_at else f"installed: pgperfmon {status.version}"
        )
    if status.capabilities:
        lines.append("capabilities:")
        for cap in status.capabilities:
            mark = "ok" if cap["in_force"] else (
                "degraded" if cap["capability"] in OPTIONAL else "MISSING")
            lines.append(f"  {cap['capability']:<20} {mark:<9} {cap['detail']}")
    if status.installed:
        lines.append("jobs:" if status.jobs else "jobs:      none scheduled")
        # Job names hold the database's name: as wide as the longest, so the columns align.
        width = max((len(rendering.one_line(job["jobname"])) for job in status.jobs), default=0)
        for job in status.jobs:
            if job["last_status"] is None:
                last = "not run yet"
            else:
                last = f"{job['last_status']} at {job['last_start']:%Y-%m-%d %H:%M:%S%z}"
                if job["last_duration_ms"] is not None:
                    last += f" in {job['last_duration_ms']} ms"
            lines.append(f"  {rendering.one_line(job['jobname']):<{width}} {job['schedule']:<12} {last}")
        if status.newest_sample is not None:
            lines.append(f"newest sample: {status.newest_sample_age_seconds:.0f} s ago")
        elif status.installed:
            lines.append("newest sample: none yet")
    if status.recent_errors:
        lines.append("stage and part errors, last hour and newest run (caught: the others ran):")
        for row in status.recent_errors:
            lines.append(
                f"  {_what(row):<36} {row['errors_last_hour']} of {row['runs_last_hour']} runs, "
                f"last at {row['last_error_at']:%Y-%m-%d %H:%M:%S%z}"
                f"{' (newest run)' if row['failing'] else ''}: {row['error']}"
            )
    if status.problems:
        lines.append("problems:")
        lines.extend(f"  - {p}" for p in status.problems)
    else:
        lines.append("healthy")
    return "\n".join(rendering.one_line(line) for line in lines)
