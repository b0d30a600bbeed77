"""`pgperfmon demo`: the embedded cluster, a workload, and the monitor at work.

Starts (or reuses) the embedded cluster, installs pgperfmon into a database
`demo`, runs pgbench with a few deliberately slow statements beside it while
taking samples, then shows what a DBA would look at, and ends by serving the
dashboards (until Ctrl-C). The cluster is left running, with pg_cron sampling on
its own, so the views keep filling.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from pathlib import Path

import click
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pgperfmon import config, db, deploy, embedded, status

DEMO_DB = "demo"
SHOW = {
    "top queries, last 24 h (perfmon.top_queries)":
        "SELECT rank, calls, total_ms, mean_ms, share_of_total_pct AS share_pct, "
        "left(regexp_replace(query, '\\s+', ' ', 'g'), 60) AS query "
        "FROM perfmon.top_queries WHERE database = current_database() ORDER BY rank LIMIT 6",
    "slow queries, mean over database.performance_thresholds.slow_query_ms "
    "(perfmon.slow_queries)":
        "SELECT calls, mean_ms, max_ms, left(query, 60) AS query FROM perfmon.slow_queries",
    "throughput per sample (perfmon.database_series)":
        "SELECT to_char(ts, 'HH24:MI:SS') AS time, tps, cache_hit_pct, rows_read_per_s, "
        "rows_written_per_s, wal_bytes_per_s FROM perfmon.database_series "
        "ORDER BY ts DESC LIMIT 5",
    "connections now (perfmon.connection_usage)":
        "SELECT total, active, idle, idle_in_transaction, waiting, max_connections, total_pct "
        "FROM perfmon.connection_usage WHERE live",
    "the advisor's open recommendations (perfmon.recommendations)":
        "SELECT severity, kind, left(target, 40) AS target, left(finding, 70) AS finding "
        "FROM perfmon.recommendations "
        "WHERE status = 'open' LIMIT 8",
    "alerts (perfmon.alerts)":
        "SELECT state, level, metric, current_value, left(summary, 60) AS summary "
        "FROM perfmon.alerts ORDER BY ts DESC LIMIT 5",
    "what each collection stage cost, last sample (perfmon.collect_timings)":
        "SELECT stage, ms, rows_stored, gaps FROM perfmon.collect_timings "
        "WHERE ts = (SELECT max(ts) FROM perfmon.samples WHERE kind = 'sample') ORDER BY ms DESC",
}


def _pgbench(cluster: embedded.Cluster, dsn: str, *args: str) -> subprocess.CompletedProcess:
    parts = conninfo_to_dict(dsn)
    env = dict(os.environ, PGPASSFILE=str(parts["passfile"]))
    return subprocess.run(
        [str(cluster.binaries.bindir / "pgbench"), "-h", str(parts["host"]),
         "-p", str(parts["port"]), "-U", str(parts["user"]), *args, str(parts["dbname"])],
        env=env, capture_output=True, text=True, check=True,
    )


def _print_table(conn: psycopg.Connection, title: str, query: str) -> None:
    cur = conn.execute(query)
    rows = cur.fetchall()
    names = [c.name for c in cur.description or []]
    click.secho(f"\n{title}", bold=True)
    if not rows:
        click.echo("  (no rows yet)")
        return
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(n), *(len(r[i]) for r in cells)) for i, n in enumerate(names)]
    click.echo("  " + "  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)))
    for row in cells:
        click.echo("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def run(data_dir: Path | None, seconds: int, serve_dashboards: bool = True) -> None:
    cluster = embedded.Cluster(data_dir)
    admin_dsn = cluster.up()
    click.echo(f"embedded PostgreSQL {cluster.binaries.major} running in {cluster.pgdata}")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEMO_DB,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DB)))
    dsn = cluster.dsn(DEMO_DB)

    cfg = config.load(None, env={"PERFORMANCE_COLLECTION_INTERVAL": "10",
                                 "SLOW_QUERY_THRESHOLD": "500"})
    # A demo cluster of its own: let the scheduled advisor plan on every table.
    cfg.optimization.advisor_reads_all_tables = True
    report = deploy.install(dsn, cfg)
    click.echo(f"pgperfmon installed in database {DEMO_DB} ({len(report.changes)} changes); "
               "pg_cron samples it every 10 s from now on")

    click.echo("preparing a pgbench workload (scale 5) ...")
    _pgbench(cluster, dsn, "-i", "-s", "5", "-q")

    stop = threading.Event()

    def slow_statements() -> None:
        # The kind of statement slow_queries is for: a report that scans and sleeps.
        with psycopg.connect(dsn, autocommit=True, application_name="reporting") as c:
            while not stop.wait(4):
                c.execute("SELECT pg_sleep(0.8), count(*) FROM pgbench_accounts WHERE abalance > 0")

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT perfmon.collect()")
        conn.execute("SELECT perfmon.collect_sizes()")
        slow = threading.Thread(target=slow_statements)
        slow.start()
        click.echo(f"running pgbench for {seconds} s with a slow report beside it, "
                   "sampling every 5 s ...")
        bench = threading.Thread(
            target=_pgbench, args=(cluster, dsn, "-c", "4", "-j", "2", "-T", str(seconds), "-n"))
        bench.start()
        while bench.is_alive():
            time.sleep(5)
            conn.execute("SELECT perfmon.collect()")
        stop.set()
        slow.join()
        conn.execute("SELECT perfmon.collect()")
        # What pg_cron would run on its own schedules (hourly for the advisor).
        conn.execute("SELECT perfmon.refresh_recommendations()")
        conn.execute("SELECT perfmon.analyze()")
        for title, query in SHOW.items():
            _print_table(conn, title, query)

    click.secho("\npgperfmon status", bold=True)
    click.echo(status.render(status.collect(dsn)))
    click.echo(
        # Quoted for the shell: the DSN and --data-dir may hold spaces and quotes.
        "\nThe cluster keeps running and pg_cron keeps sampling. Look around with:\n"
        f"  psql {shlex.quote(dsn)} -c 'SELECT * FROM perfmon.top_queries LIMIT 10'\n"
        f"  pgperfmon status --dsn {shlex.quote(dsn)}\n"
        f"Stop it with: pgperfmon down{' --data-dir ' + shlex.quote(str(data_dir)) if data_dir else ''}"
    )
    click.echo(f"DSN: {db.redact(dsn)}")
    if serve_dashboards:
        _serve_dashboards(dsn)


def report_hint(dsn: str) -> str:
    """The report command to paste, the DSN quoted for the shell: its passfile's folder (the
    --data-dir) may hold a space, a quote, a $ or a backtick."""
    return ("The weekly report as one HTML file: pgperfmon report --dsn "
            f"{shlex.quote(db.redact(dsn))} --output weekly.html")


def _serve_dashboards(dsn: str) -> None:
    """The dashboards on 127.0.0.1:8050 (a free port if that one is taken), until Ctrl-C."""
    from pgperfmon import dashboard

    try:
        server = dashboard.Server(dsn, port=8050, refresh_s=10)
    except dashboard.DashboardError:
        server = dashboard.Server(dsn, port=0, refresh_s=10)
    click.secho("\nDashboards (refreshing every 10 s; Ctrl-C stops them, the cluster keeps running):",
                bold=True)
    dashboard.print_urls(server)
    click.echo(report_hint(dsn))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("dashboards stopped")
