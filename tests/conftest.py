"""Every test that touches SQL runs against a real PostgreSQL with pg_cron,
pg_stat_statements and plpython3u.

The server is, in order of preference: the one ``PGPERFMON_TEST_DSN`` names (a
superuser DSN); a throwaway embedded cluster started for the session (the same
code as ``pgperfmon up``); the ``docker/`` image through testcontainers when only
Docker is there. With none of them the session fails, naming what to install:
tests are never skipped for want of a server.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgperfmon import config, db, deploy, embedded

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plpython"))  # the in-database modules, imported directly
ARTIFACTS = REPO / "test-artifacts"


class Server:
    """A superuser DSN to a server's maintenance database, and helpers around it."""

    def __init__(self, admin_dsn: str, cluster: embedded.Cluster | None = None):
        self.admin_dsn = admin_dsn
        self.cluster = cluster

    def dsn(self, dbname: str) -> str:
        return db.with_dbname(self.admin_dsn, dbname)

    def execute(self, query: str, params: object = None) -> list[tuple]:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def create_database(self) -> str:
        name = f"t_{secrets.token_hex(4)}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def pause_jobs(self, name: str) -> None:
        """Pause the database's pg_cron jobs (install schedules them active)."""
        self.execute("UPDATE cron.job SET active = false WHERE starts_with(jobname, %s) AND database = %s",
                     (deploy.cron_job_prefix(name), name))

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT cron.unschedule(jobid) FROM cron.job "
                "WHERE starts_with(jobname, %s) AND database = %s",
                (deploy.cron_job_prefix(name), name),
            )
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _docker_server() -> Iterator[Server]:
    from testcontainers.postgres import PostgresContainer  # type: ignore[import-not-found]

    image = os.environ.get("PGPERFMON_TEST_IMAGE", "pgperfmon:latest")
    with PostgresContainer(image, username="postgres", password="postgres") as container:
        url = container.get_connection_url().replace("postgresql+psycopg2://", "postgresql://")
        yield Server(url)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    external = os.environ.get("PGPERFMON_TEST_DSN")
    if external:
        yield Server(external)
        return
    try:
        binaries = embedded.find_binaries()
    except embedded.EmbeddedError as exc:
        if shutil.which("docker"):
            yield from _docker_server()
            return
        pytest.fail(f"no PostgreSQL to test against: {exc}", pytrace=False)
    home = Path(tempfile.mkdtemp(prefix="pgpm-test-"))
    cluster = embedded.Cluster(home, binaries)
    try:
        cluster.up()
    except embedded.EmbeddedError as exc:
        shutil.rmtree(home, ignore_errors=True)
        pytest.fail(f"the test cluster did not start: {exc}", pytrace=False)
    try:
        yield Server(cluster.dsn(), cluster)
    finally:
        # The server's log outlives the throwaway cluster, for whoever reads a failure.
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copyfile(cluster.logfile, ARTIFACTS / "server.log")
        cluster.destroy()


@pytest.fixture()
def dbname(server: Server) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards with its pg_cron jobs."""
    name = server.create_database()
    try:
        yield name
    finally:
        server.drop_database(name)


@pytest.fixture()
def dsn(server: Server, dbname: str) -> str:
    return server.dsn(dbname)


@pytest.fixture()
def installed(dsn: str) -> str:
    """A database with pgperfmon installed with the default configuration."""
    deploy.install(dsn, config.load(None, env={}))
    return dsn


@pytest.fixture()
def paused_cron(installed: str, server: Server, dbname: str) -> str:
    """`installed`, with the database's pg_cron jobs paused.

    Tests that count deltas or alerts call the functions themselves; a minute tick
    of the scheduled jobs in the middle would split or consume their work. Tests
    of the scheduling itself use `installed`, where the jobs are active.
    """
    server.execute(
        "UPDATE cron.job SET active = false WHERE starts_with(jobname, %s)",
        (deploy.cron_job_prefix(dbname),),
    )
    return installed


@pytest.fixture(scope="module")
def module_db(server: Server) -> Iterator[tuple[str, str]]:
    """(dbname, dsn) of one database for a whole module, pgperfmon installed, jobs paused.

    For modules of many examples (property-based tests, catalog checks) that change
    nothing lasting: a database per example would take minutes.
    """
    name = server.create_database()
    try:
        dsn = server.dsn(name)
        deploy.install(dsn, config.load(None, env={}))
        server.pause_jobs(name)
        yield name, dsn
    finally:
        server.drop_database(name)


@pytest.fixture()
def conn(paused_cron: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to an installed database whose pg_cron jobs are paused."""
    with psycopg.connect(paused_cron, autocommit=True) as connection:
        yield connection


@pytest.fixture()
def probe(conn: psycopg.Connection) -> psycopg.Connection:
    """An installed database with a small table to run known work against."""
    conn.execute("CREATE TABLE probe (id int PRIMARY KEY, v text)")
    conn.execute("INSERT INTO probe SELECT g, 'x' || g FROM generate_series(1, 100) g")
    return conn


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
