"""Soak under load (issue 9, item 5): pgbench at full speed while everything of pgperfmon runs.

On a dedicated embedded cluster with pgperfmon installed (collection.interval_seconds 10):
the installed pg_cron jobs (collect and analyze every 10 s, the host sampler, the hourly
and daily work), alert delivery to a webhook receiver on 127.0.0.1 (`pgperfmon deliver`,
with a rule that raises a new alert every minute so that notifications keep flowing), and
the host agent (`pgperfmon agent`, a perfmon_agent login, every 10 s).

Timeline: a minute of pgbench to warm up (not counted), a baseline block of pgbench alone
(jobs paused, agent and delivery stopped), then --minutes of pgbench with all of pgperfmon
running, in blocks, then another baseline block.
Every block's TPS is printed, so that noise and drift show: the baselines before and after
bracket the drift (pgbench's tables grow all along), the spread of the monitored blocks is
the noise.

Printed, against the targets of issue 9:
  * errors logged by pgperfmon in the monitored window (target 0): server log entries
    (WARNING and worse) of every session but pgbench's (the cluster is the soak's own),
    cron.job_run_details failures of our jobs (runs pg_cron canceled itself are listed
    apart), collect_timings / advisor_timings /
    alert_rule_runs errors, failed deliveries, perfmon.analyze() parts that failed
    (pg_cron discards its result: the bench calls it once per block), WARNING and worse in
    the agent's log;
  * the agent's RSS at start (once it has stored its first sample), middle and end, and
    its slope over the whole run and over its second half (flat);
  * storage growth per collection sample, by part, beside bench/storage.py's figures
    (--storage-idle-bytes, --storage-statement-bytes: as README.md quotes them);
  * TPS with monitoring against the baselines (target: at most 2% lower, issue 3).

Bounded: it stops by itself after about --minutes + 2 blocks + set-up, and removes the
cluster, the agent's spool and its other files, whatever happens. Try --minutes 2.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from agent_common import agent_login_dsn
from psycopg.conninfo import conninfo_to_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from alert_servers import http_receiver

from common import bench_cluster, fresh_database
from pgperfmon import config, deploy

LOG_PREFIX = "%m [%p] app=%a db=%d "
LOG_ENTRY = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \w+) \[\d+\] app=(.*?) db=(\S*) "
                       r"(WARNING|ERROR|FATAL|PANIC):  (.*)$")
SEVERE = ("WARNING", "ERROR", "CRITICAL")
CONFIG = """
collection:
  interval_seconds: 10
alerting:
  channels:
    webhook:
      enabled: true
"""
# One new alert a minute (a new target each minute; the last one resolves): notifications
# keep flowing to the receiver for the whole soak.
MINUTE_RULE = """
INSERT INTO perfmon.alert_rules (name, metric, unit, query, comparison, warning_threshold, hold_seconds,
                                 business_impact, affected_systems, recommended_actions, description)
VALUES ('soak_minute', 'soak.minute', 'count',
        'SELECT to_char(date_trunc(''minute'', now()), ''HH24:MI''), 1::float8, NULL::text, NULL::jsonb',
        '>', 0, 0, 'none: the soak bench''s own rule', ARRAY['soak'], 'none', 'a new alert every minute')
"""
# Bytes of each table of schema perfmon with its partitions, indexes and TOAST.
SIZES = """
SELECT coalesce(pg_partition_root(c.oid), c.oid)::regclass::text AS tbl,
       sum(pg_total_relation_size(c.oid))::bigint
  FROM pg_class AS c
 WHERE c.relnamespace = 'perfmon'::regnamespace AND c.relkind = 'r'
 GROUP BY 1
"""
METRIC_STORE = {"perfmon.metric_samples", "perfmon.metric_series", "perfmon.ingest_batches"}
HEARTBEATS = {"perfmon.agent_heartbeats", "perfmon.agents"}
ALERTING = {"perfmon.alert_log", "perfmon.alert_events", "perfmon.alert_outbox", "perfmon.delivery_log",
            "perfmon.alert_rule_runs"}


def pgbench(bindir: str, dsn: str, *args: str) -> str:
    parts = conninfo_to_dict(dsn)
    env = dict(os.environ, PGPASSFILE=parts["passfile"])
    cmd = [f"{bindir}/pgbench", "-h", parts["host"], "-p", str(parts["port"]),
           "-U", parts["user"], *args, parts["dbname"]]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


class Soak:
    def __init__(self, args: argparse.Namespace, cluster, work: Path):
        self.args = args
        self.cluster = cluster
        self.work = work
        self.bindir = str(cluster.binaries.bindir)
        self.dsn = ""
        self.agent_dsn = ""
        self.cron_dsn = cluster.dsn()
        self.agent: subprocess.Popen | None = None
        self.deliverer: subprocess.Popen | None = None
        self.rss: list[tuple[float, int]] = []
        self.canceled: list[str] = []
        self.analyze_ms: list[float] = []
        self.analyze_errors: list[str] = []

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        self.dsn = fresh_database(self.cluster, "soak", install=False)
        conf = self.work / "soak.yml"
        conf.write_text(CONFIG)
        deploy.install(self.dsn, config.load(conf, env={}))
        pgbench(self.bindir, self.dsn, "-i", "-s", str(self.args.scale), "-q")
        self.agent_dsn = agent_login_dsn(self.dsn, "soak_agent")
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(MINUTE_RULE)
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")

    def jobs(self, active: bool) -> None:
        prefix = deploy.cron_job_prefix("soak")
        with psycopg.connect(self.cron_dsn, autocommit=True) as cron:
            cron.execute("UPDATE cron.job SET active = %s WHERE starts_with(jobname, %s)", (active, prefix))
            if active:
                return
            # pg_cron cancels the running jobs it finds inactive: wait until none is left.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and cron.execute(
                    "SELECT count(*) FROM cron.job_run_details d JOIN cron.job j USING (jobid) "
                    "WHERE starts_with(j.jobname, %s) AND d.status IN ('starting', 'running') "
                    "AND d.start_time > now() - interval '5 minutes'", (prefix,)).fetchone()[0]:
                time.sleep(1)

    def start_helpers(self, rx_url: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "pgperfmon", "agent", "--dsn", self.agent_dsn, "--interval", "10",
             "--spool-dir", str(self.work / "spool"), "--host", "soak-host"],
            env=env, stdout=subprocess.DEVNULL, stderr=(self.work / "agent.log").open("ab"))
        self.deliverer = subprocess.Popen(
            [sys.executable, "-m", "pgperfmon", "deliver", "--dsn", self.dsn, "--poll", "1",
             "--worker", "soak"],
            env={**env, "PGPERFMON_WEBHOOK_URL": rx_url, "PGPERFMON_WEBHOOK_SIGNING_KEY": "soak-key",
                 "PGPASSFILE": conninfo_to_dict(self.dsn)["passfile"]},
            stdout=(self.work / "deliver.log").open("ab"), stderr=subprocess.STDOUT)

    def stop_helpers(self) -> None:
        for proc in (self.agent, self.deliverer):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def fill_dictionaries(self) -> None:
        """Samples taken before the measured ones: pgbench's statements, tables and indexes
        are named in the dictionaries once, as bench/storage.py does before it measures."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for _ in range(2):
                conn.execute("SELECT perfmon.collect()")
            conn.execute("SELECT perfmon.collect_sizes()")

    def wait_for_agent(self, timeout: float = 60) -> None:
        """Until the agent stored its first sample (its heartbeat follows each write)."""
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while time.monotonic() < deadline and not conn.execute(
                    "SELECT count(*) FROM perfmon.agents WHERE name = 'pgperfmon-agent@soak-host'"
                    ).fetchone()[0]:
                time.sleep(0.5)

    # ------------------------------------------------------------------ running
    def block(self, seconds: int) -> float:
        out = pgbench(self.bindir, self.dsn, "-c", str(self.args.clients), "-j", str(self.args.threads),
                      "-T", str(seconds), "-n")
        return float(re.search(r"tps = ([0-9.]+)", out).group(1))

    def watch_agent(self, stop: threading.Event, started: float) -> None:
        while not stop.is_set():
            if self.agent is not None and (kib := rss_kib(self.agent.pid)) is not None:
                self.rss.append((time.monotonic() - started, kib))
            stop.wait(15)

    def analyze_now(self) -> None:
        """perfmon.analyze() reports a failing part in its result only, which pg_cron drops."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            t0 = time.perf_counter()
            result = conn.execute("SELECT perfmon.analyze()").fetchone()[0]
            self.analyze_ms.append((time.perf_counter() - t0) * 1000)
        self.analyze_errors += [f"{part}: {value['error']}" for part, value in result.items()
                                if isinstance(value, dict) and "error" in value]

    # ------------------------------------------------------------------ findings
    def errors(self, since: datetime, until: datetime) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        entries = []
        for line in self.cluster.logfile.read_text(errors="replace").splitlines():
            m = LOG_ENTRY.match(line)
            if not m:
                continue
            ts = datetime.strptime(m.group(1).rsplit(" ", 1)[0], "%Y-%m-%d %H:%M:%S.%f").replace(
                tzinfo=timezone.utc)
            # The cluster is the soak's own: whatever is not pgbench is pgperfmon (or pg_cron).
            if since <= ts <= until and m.group(2) != "pgbench":
                entries.append(f"{m.group(4)} ({m.group(2) or 'no application'}, db {m.group(3) or '-'}): "
                               f"{m.group(5)}")
        found["server log (WARNING and worse, not pgbench)"] = entries
        prefix = deploy.cron_job_prefix("soak")
        with psycopg.connect(self.cron_dsn) as cron:
            runs = cron.execute(
                "SELECT j.jobname, d.return_message, d.start_time, coalesce(d.end_time, now()) "
                "FROM cron.job_run_details d JOIN cron.job j USING (jobid) "
                "WHERE starts_with(j.jobname, %s) AND d.status = 'failed' AND d.start_time BETWEEN %s AND %s "
                "ORDER BY d.start_time", (prefix, since, until)).fetchall()
        # pg_cron ends a run itself, as "job canceled", when it finds the job inactive: the
        # bench's own pause at the end; and (seen here) at times in the first minute after
        # jobs were scheduled or resumed. Not an error of pgperfmon's: listed apart.
        found["cron.job_run_details failures"] = [
            f"{name} (run {start:%H:%M:%S} to {end:%H:%M:%S}): {message}"
            for name, message, start, end in runs if message != "job canceled"]
        self.canceled = [f"{name} (run {start:%H:%M:%S} to {end:%H:%M:%S})"
                         + (" by the bench's pause" if end >= until else "")
                         for name, message, start, end in runs if message == "job canceled"]
        with psycopg.connect(self.dsn) as conn:
            found["collect_timings errors"] = [f"{stage}: {error}" for stage, error in conn.execute(
                "SELECT stage, error FROM perfmon.collect_timings WHERE error IS NOT NULL "
                "AND ts BETWEEN %s AND %s", (since, until))]
            found["advisor_timings errors"] = [f"{rule}: {error}" for rule, error in conn.execute(
                "SELECT rule, error FROM perfmon.advisor_timings WHERE error IS NOT NULL "
                "AND ts BETWEEN %s AND %s", (since, until))]
            found["alert_rule_runs errors"] = [f"{rule}: {value['error']}" for rule, value in conn.execute(
                "SELECT r.key, r.value FROM perfmon.alert_rule_runs AS a, jsonb_each(a.rules) AS r "
                "WHERE jsonb_typeof(r.value) = 'object' AND r.value ? 'error' AND a.ts BETWEEN %s AND %s",
                (since, until))]
            found["failed deliveries"] = [f"{channel}: {error}" for channel, error in conn.execute(
                "SELECT channel, error FROM perfmon.delivery_log WHERE NOT ok AND ts BETWEEN %s AND %s",
                (since, until))]
        found["perfmon.analyze() parts that failed"] = self.analyze_errors
        agent_log = (self.work / "agent.log").read_text(errors="replace").splitlines()
        found["agent log (WARNING and worse)"] = [line for line in agent_log
                                                   if any(f" {word} " in line for word in SEVERE)]
        return found

    def sizes(self) -> dict[str, int]:
        with psycopg.connect(self.dsn) as conn:
            return dict(conn.execute(SIZES).fetchall())

    def samples(self, since: datetime, until: datetime) -> tuple[int, dict[str, float]]:
        with psycopg.connect(self.dsn) as conn:
            count = conn.execute("SELECT count(*) FROM perfmon.samples WHERE kind = 'sample' "
                                 "AND ts BETWEEN %s AND %s", (since, until)).fetchone()[0]
            rows = dict(conn.execute(
                "SELECT stage, sum(rows_stored)::float8 / greatest(count(DISTINCT ts), 1) "
                "FROM perfmon.collect_timings WHERE kind = 'sample' AND ts BETWEEN %s AND %s GROUP BY stage",
                (since, until)).fetchall())
        return count, rows

    def durations(self, since: datetime, until: datetime) -> tuple[float, float]:
        """Median and p95 ms of the collection samples in the window."""
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms), "
                "percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) FROM perfmon.samples "
                "WHERE kind = 'sample' AND ts BETWEEN %s AND %s", (since, until)).fetchone()

    def deliveries(self, since: datetime, until: datetime) -> tuple[int, int, str]:
        """Alerts raised, notifications delivered, and the alerts by rule and level."""
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(
                "SELECT (SELECT count(*) FROM perfmon.alert_log WHERE first_seen BETWEEN %s AND %s), "
                "(SELECT count(*) FROM perfmon.delivery_log WHERE ok AND ts BETWEEN %s AND %s), "
                "(SELECT coalesce(string_agg(format('%%s %%s %%s', n, rule, level), ', ' "
                "ORDER BY rule, level), 'none') FROM (SELECT rule, level, count(*) AS n "
                "FROM perfmon.alert_log WHERE first_seen BETWEEN %s AND %s GROUP BY rule, level) AS r)",
                (since, until, since, until, since, until)).fetchone()


def now() -> datetime:
    return datetime.now(timezone.utc)


def report_storage(soak: Soak, before: dict[str, int], after: dict[str, int], samples: int,
                   rows: dict[str, float]) -> None:
    grown = {t: after.get(t, 0) - before.get(t, 0) for t in set(before) | set(after)}
    parts = {"metric store (host agent + in-database sampler)": METRIC_STORE,
             "heartbeats": HEARTBEATS, "alerting": ALERTING}
    total = sum(grown.values())
    per = max(samples, 1)
    print(f"storage: schema perfmon grew {total:,} bytes over {samples} collection samples: "
          f"{total / per:,.0f} bytes per sample")
    rest = total
    for label, tables in parts.items():
        part = sum(v for t, v in grown.items() if t in tables)
        rest -= part
        print(f"  {label}: {part / per:,.0f} bytes per sample")
    print(f"  collection (everything else): {rest / per:,.0f} bytes per sample; rows stored per sample: "
          + ", ".join(f"{stage} {n:.1f}" for stage, n in sorted(rows.items()) if n))
    statements = rows.get("statements", 0.0)
    expected = soak.args.storage_idle_bytes + statements * soak.args.storage_statement_bytes
    print(f"  bench/storage.py's figures: {soak.args.storage_idle_bytes:,} bytes per idle sample + "
          f"{soak.args.storage_statement_bytes:,} bytes per changed statement x {statements:.1f} = "
          f"{expected:,.0f} bytes per sample for the statements; the collection part here also holds "
          f"the tables, indexes and sessions pgbench changes")
    biggest = sorted(grown.items(), key=lambda kv: -kv[1])[:6]
    print("  grew most: " + ", ".join(f"{t} {v / per:,.0f}" for t, v in biggest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30, help="monitored minutes (default 30)")
    parser.add_argument("--block-minutes", type=float, default=None,
                        help="length of a block (default: 5, or half of --minutes when shorter)")
    parser.add_argument("--clients", type=int, default=4, help="pgbench clients (default 4)")
    parser.add_argument("--threads", type=int, default=2, help="pgbench threads (default 2)")
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale (default 10)")
    parser.add_argument("--storage-idle-bytes", type=int, default=983,
                        help="bench/storage.py: bytes per idle sample (README.md: 983)")
    parser.add_argument("--storage-statement-bytes", type=int, default=398,
                        help="bench/storage.py: bytes per changed statement, with its state row "
                             "(README.md: 398)")
    args = parser.parse_args()
    block_s = round(60 * (args.block_minutes or min(5.0, args.minutes / 2)))
    blocks = max(1, round(args.minutes * 60 / block_s))
    work = Path(tempfile.mkdtemp(prefix="pgpm-soak-"))
    try:
        settings = {"log_line_prefix": f"'{LOG_PREFIX}'", "log_timezone": "'UTC'"}
        with bench_cluster(settings) as cluster, http_receiver() as rx:
            soak = Soak(args, cluster, work)
            soak.setup()
            print(f"soak: pgbench -c {args.clients} -j {args.threads} scale {args.scale}; {blocks} monitored "
                  f"blocks of {block_s} s between two baseline blocks; collection every 10 s")
            baseline, monitored = [], []

            soak.jobs(active=False)
            soak.block(min(60, block_s))  # warm-up, not counted: caches, the tables' first bloat
            tps = soak.block(block_s)
            baseline.append(tps)
            print(f"  baseline before  (jobs paused, no agent): {tps:,.0f} tps")

            soak.fill_dictionaries()
            sizes_before = soak.sizes()
            soak.jobs(active=True)
            since = now()
            started = time.monotonic()
            stop = threading.Event()
            watcher = threading.Thread(target=soak.watch_agent, args=(stop, started), daemon=True)
            try:
                soak.start_helpers(rx.url)
                soak.wait_for_agent()
                watcher.start()
                for n in range(1, blocks + 1):
                    tps = soak.block(block_s)
                    monitored.append(tps)
                    soak.analyze_now()
                    print(f"  monitored block {n:2d}: {tps:,.0f} tps")
            finally:
                stop.set()
                if watcher.is_alive():
                    watcher.join()
                soak.stop_helpers()
            until = now()
            soak.jobs(active=False)
            sizes_after = soak.sizes()
            tps = soak.block(block_s)
            baseline.append(tps)
            print(f"  baseline after   (jobs paused, no agent): {tps:,.0f} tps")

            errors = soak.errors(since, until)
            total = sum(len(v) for v in errors.values())
            print(f"errors logged by pgperfmon over {len(monitored) * block_s / 60:.0f} monitored minutes: "
                  f"{total} (target 0)")
            for label, items in errors.items():
                print(f"  {label}: {len(items)}" + "".join(f"\n    {item[:200]}" for item in items[:5]))
            print(f"runs pg_cron canceled itself (\"job canceled\", not counted above): {len(soak.canceled)}"
                  + "".join(f"\n    {item}" for item in soak.canceled[:10]))

            if soak.rss:
                first, last = soak.rss[0], soak.rss[-1]
                middle = min(soak.rss, key=lambda p: abs(p[0] - (first[0] + last[0]) / 2))
                slope = slope_per_min([(t, kib / 1024) for t, kib in soak.rss])
                late = slope_per_min([(t, kib / 1024) for t, kib in soak.rss if t >= middle[0]])
                print(f"agent RSS: start {first[1] / 1024:.1f} MiB, middle {middle[1] / 1024:.1f} MiB, "
                      f"end {last[1] / 1024:.1f} MiB; slope {slope * 60:+.2f} MiB/hour over "
                      f"{(last[0] - first[0]) / 60:.0f} min, {late * 60:+.2f} MiB/hour over the second half "
                      f"({len(soak.rss)} readings; target: flat)")
            else:
                print("agent RSS: no reading (the agent did not run)")

            samples, rows = soak.samples(since, until)
            report_storage(soak, sizes_before, sizes_after, samples, rows)
            median_ms, p95_ms = soak.durations(since, until)
            print(f"collect(): median {median_ms or 0:,.0f} ms, p95 {p95_ms or 0:,.0f} ms per sample; "
                  f"perfmon.analyze() called by the bench after each block: median "
                  f"{statistics.median(soak.analyze_ms) if soak.analyze_ms else 0:,.0f} ms")
            raised, delivered, by_rule = soak.deliveries(since, until)
            print(f"alerts: {raised} raised, {delivered} notifications delivered; the receiver on 127.0.0.1 "
                  f"got {len(rx.received)}")
            print(f"  raised by rule and level: {by_rule}")

            base = statistics.fmean(baseline)
            mon = statistics.fmean(monitored)
            spread = (f"{min(monitored):,.0f} to {max(monitored):,.0f}" if monitored else "-")
            drift = 100 * (baseline[1] / baseline[0] - 1)
            print(f"TPS: baseline {base:,.0f} (before {baseline[0]:,.0f}, after {baseline[1]:,.0f}); "
                  f"monitored {mon:,.0f} (blocks {spread}): {100 * (mon / base - 1):+.1f}% "
                  f"(target >= -2%; the two baselines differ by {drift:+.1f}%, "
                  f"the monitored blocks spread {100 * (max(monitored) - min(monitored)) / mon:.1f}%)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
