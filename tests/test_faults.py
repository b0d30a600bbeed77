"""Faults (issue 9, item 4): what pgperfmon does when the ground moves under it.

Each test puts a real PostgreSQL (and, for the agent, a real filesystem; for alerts,
a real HTTP receiver) through one fault and asserts what must hold afterwards: no
negative or inflated deltas, nothing half-written, nothing lost or sent twice, and
the fault visible where an operator looks. RELIABILITY.md lists them.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from agent_login import agent_login
from alert_servers import add_gauge_rule, http_receiver, wait_for
from click.testing import CliRunner
from psycopg import sql

from helpers import RecordingAgent, collect, flush, probe_calls, run_probe
from pgperfmon import alerting, cli, config, deploy, embedded
from pgperfmon.spool import Spool

# The pg_stat_* deltas: what a stats reset, a crash or an eviction may never make negative.
DELTA_TABLES = ("database_history", "statement_history", "table_history", "index_history",
                "server_history")


def cluster_of(server) -> embedded.Cluster:
    if server.cluster is None:
        pytest.fail("fault tests restart or stop the server: they need the session's embedded "
                    "cluster (PGPERFMON_TEST_DSN is set)")
    return server.cluster


def negative_values(conn: psycopg.Connection) -> dict[str, int]:
    """Rows with a negative number in any numeric column of the delta history tables."""
    found = {}
    for table in DELTA_TABLES:
        columns = [r[0] for r in conn.execute(
            """SELECT attname FROM pg_attribute
               WHERE attrelid = format('perfmon.%%I', %s::text)::regclass AND attnum > 0
                 AND NOT attisdropped AND atttypid = ANY ('{int2,int4,int8,float4,float8,numeric}'::regtype[])
                 AND attname <> 'server_id'""", (table,))]
        condition = sql.SQL(" OR ").join(sql.SQL("{} < 0").format(sql.Identifier(c)) for c in columns)
        count = conn.execute(sql.SQL("SELECT count(*) FROM perfmon.{} WHERE {}").format(
            sql.Identifier(table), condition)).fetchone()[0]
        if count:
            found[table] = count
    return found


def stage_gaps(result: dict) -> dict[str, int]:
    return {name: stage.get("gaps", 0) for name, stage in result["stages"].items()}


def stage_errors(result: dict) -> dict[str, str]:
    return {name: stage["error"] for name, stage in result["stages"].items() if "error" in stage}


def orphan_history(conn: psycopg.Connection) -> dict[str, int]:
    """History rows whose sample is not in perfmon.samples: the trace of a half-written sample."""
    found = {}
    for table in DELTA_TABLES:
        count = conn.execute(sql.SQL(
            "SELECT count(*) FROM perfmon.{} AS h WHERE NOT EXISTS "
            "(SELECT FROM perfmon.samples AS s WHERE s.server_id = h.server_id AND s.ts = h.ts)"
        ).format(sql.Identifier(table))).fetchone()[0]
        if count:
            found[table] = count
    return found


def probe_xacts(conn: psycopg.Connection) -> list[int]:
    """Stored xact_commit deltas of this database, oldest first."""
    return [r[0] for r in conn.execute(
        """SELECT coalesce(h.xact_commit, 0) FROM perfmon.database_history h
           WHERE h.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
           ORDER BY h.ts""")]


# --------------------------------------------------------------------------- restart mid-collect

SLOW_STAGE = """
CREATE FUNCTION public.slow_stage(sample_ts timestamptz) RETURNS perfmon.collect_result
LANGUAGE sql AS $$ SELECT pg_sleep(120); SELECT ROW(0, 0, NULL)::perfmon.collect_result $$;
INSERT INTO perfmon.collectors (name, function_name, schedule, ordinal, description)
VALUES ('slow_test', 'public.slow_stage', 'sample', 25, 'test: a stage that hangs');
"""


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_restart_in_the_middle_of_collect(server, paused_cron: str, mode: str) -> None:
    cluster = cluster_of(server)
    with psycopg.connect(paused_cron, autocommit=True) as c:
        c.execute("CREATE TABLE probe (id int PRIMARY KEY, v text)")
        c.execute("INSERT INTO probe SELECT g, 'x' || g FROM generate_series(1, 100) g")
        collect(c)
        run_probe(c, 500)  # enough that a lost baseline would show as a spike
        flush(c)
        collect(c)
        run_probe(c, 7)  # done after the last good sample: belongs to the next delta
        c.execute(SLOW_STAGE)
        samples_before = c.execute("SELECT count(*) FROM perfmon.samples").fetchone()[0]

    # The databases and statements stages (ordinals 10, 20) have written their rows in the
    # run's transaction when the slow stage (25) hangs; the restart hits it there.
    outcome: list[BaseException | dict] = []

    def run() -> None:
        try:
            with psycopg.connect(paused_cron, autocommit=True) as victim:
                outcome.append(collect(victim))
        except psycopg.Error as exc:
            outcome.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    assert wait_for(lambda: server.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
        "AND query LIKE '%%perfmon.collect()%%'")[0][0] == 1, timeout=20), "collect never hung"
    cluster.restart(mode)
    runner.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], psycopg.OperationalError), outcome

    with psycopg.connect(paused_cron, autocommit=True) as c:
        # The interrupted sample is absent, with nothing of it left behind.
        assert c.execute("SELECT count(*) FROM perfmon.samples").fetchone()[0] == samples_before
        assert orphan_history(c) == {}
        c.execute("DELETE FROM perfmon.collectors WHERE name = 'slow_test'")
        run_probe(c, 4)
        flush(c)
        after = collect(c)
        assert stage_errors(after) == {}
        run_probe(c, 3)
        flush(c)
        following = collect(c)
        assert stage_errors(following) == {}
        gaps_after, gaps_following = stage_gaps(after), stage_gaps(following)
        assert negative_values(c) == {}
        assert orphan_history(c) == {}
        calls = probe_calls(c)
        xacts = probe_xacts(c)
    assert sum(gaps_following.values()) == 0, gaps_following  # the next sample is normal
    assert calls[0] == 500
    if mode == "fast":
        # Statistics and state survive a clean shutdown: the 7 + 4 calls since the last good
        # sample are one delta, nothing is lost, no gap.
        assert calls[1:] == [11, 3], calls
        assert sum(gaps_after.values()) == 0, gaps_after
    else:
        # A crash empties the statistics and the UNLOGGED state: the sample after it is a
        # baseline, counted as a gap by every delta stage, never a spike of the 500 calls.
        assert calls[1:] == [3], calls
        assert after["stages"]["statements"]["baseline"] is True
        for stage in ("databases", "statements", "tables", "indexes", "server"):
            assert gaps_after[stage] >= 1, (stage, gaps_after)
    assert xacts[0] >= 500 and len(xacts) >= 2, xacts
    assert max(xacts[1:]) < 100, xacts  # no delta carries the 500 transactions again


# --------------------------------------------------------------------------- stats resets

def test_stats_resets_are_gaps_never_negative_and_the_next_sample_is_normal(probe) -> None:
    conn = probe
    flush(conn)
    collect(conn)
    run_probe(conn, 40)
    conn.execute("CHECKPOINT")
    flush(conn)
    collect(conn)
    run_probe(conn, 30)
    conn.execute("SELECT pg_stat_reset()")
    conn.execute("SELECT pg_stat_statements_reset()")
    conn.execute("SELECT pg_stat_reset_shared('bgwriter')")
    run_probe(conn, 2)
    flush(conn)
    reset_sample = collect(conn)
    assert stage_errors(reset_sample) == {}
    gaps = stage_gaps(reset_sample)
    for stage in ("databases", "statements", "tables", "indexes", "server"):
        assert gaps[stage] >= 1, (stage, gaps)
    assert reset_sample["stages"]["statements"]["baseline"] is True
    assert reset_sample["stages"]["tables"]["baseline"] is True
    run_probe(conn, 5)
    conn.execute("CHECKPOINT")
    flush(conn)
    following = collect(conn)
    assert stage_errors(following) == {}
    assert sum(stage_gaps(following).values()) == 0, following
    assert probe_calls(conn) == [40, 5]
    seq_scans = [r[0] for r in conn.execute(
        """SELECT h.seq_scan FROM perfmon.table_history h JOIN perfmon.relations r USING (rel_id)
           WHERE r.rel_name = 'probe' ORDER BY h.ts""")]
    assert seq_scans == [40, 5]
    # The bgwriter counters after the reset are deltas again (one CHECKPOINT each time).
    checkpoints = [r[0] for r in conn.execute(
        "SELECT checkpoints_req FROM perfmon.server_history ORDER BY ts")]
    assert checkpoints[1] == 1 and checkpoints[2] is None and checkpoints[3] == 1, checkpoints
    assert negative_values(conn) == {}
    gaps_view = conn.execute(
        "SELECT stage, gaps FROM perfmon.collect_timings WHERE ts = %s AND gaps > 0 ORDER BY stage",
        (reset_sample["ts"],)).fetchall()
    assert {s for s, _ in gaps_view} >= {"databases", "statements", "tables", "indexes", "server"}


# --------------------------------------------------------------------------- eviction storm

@pytest.fixture()
def small_pgss_cluster() -> Iterator[embedded.Cluster]:
    """A server of its own: pg_stat_statements.max needs a restart, and 100 is its minimum."""
    home = Path(tempfile.mkdtemp(prefix="pgpm-evict-"))
    cluster = embedded.Cluster(home, settings={"pg_stat_statements.max": "100"})
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(home, ignore_errors=True)


def test_pg_stat_statements_eviction_storm(small_pgss_cluster: embedded.Cluster) -> None:
    dsn = small_pgss_cluster.dsn("postgres")
    deploy.install(dsn, config.load(None, env={}))
    with psycopg.connect(dsn, autocommit=True) as conn:
        # No pg_cron tick may take a sample in the middle of the storm.
        conn.execute("UPDATE cron.job SET active = false")
        assert conn.execute("SHOW pg_stat_statements.max").fetchone() == ("100",)
        collect(conn)
        dictionary = [conn.execute("SELECT count(*) FROM perfmon.statements").fetchone()[0]]
        # 1,000 distinct statements between two samples, three times: each round has its own
        # constant type, so no round's statements are another's.
        for literal in ("1", "'a'", "true"):
            for width in range(1, 1001):
                conn.execute("SELECT " + ", ".join([literal] * width))
            result = collect(conn)
            assert stage_errors(result) == {}, result
            stage = result["stages"]["statements"]
            # pg_stat_statements_info().dealloc counts eviction rounds (each drops 10 entries
            # here, 5% of max at least 10): some 900 entries make 90 rounds.
            assert stage["evicted"] >= 80, stage
            assert stage["gaps"] >= stage["evicted"], stage
            assert stage["stored"] <= 101, stage  # what is left to read, plus "other statements"
            dictionary.append(conn.execute("SELECT count(*) FROM perfmon.statements").fetchone()[0])
        per_sample = conn.execute(
            "SELECT count(*) FROM perfmon.statement_history GROUP BY ts ORDER BY ts").fetchall()
        assert negative_values(conn) == {}
        noted = conn.execute(
            "SELECT count(*) FROM perfmon.collect_timings WHERE stage = 'statements' AND gaps >= 80"
        ).fetchone()[0]
    # Storage is bounded by what pg_stat_statements holds at a sample, not by the storm.
    growth = [b - a for a, b in itertools.pairwise(dictionary)]
    assert all(g <= 100 for g in growth), dictionary
    assert all(n <= 101 for (n,) in per_sample), per_sample
    assert noted == 3


# --------------------------------------------------------------------------- agent spool: disk full

@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KB filesystem: writes past it fail with ENOSPC."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail("the full-disk test mounts a 64 KB tmpfs and needs root (CI runs as root): "
                    + done.stderr.strip(), pytrace=False)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


def spool_lines(spool: Spool) -> tuple[list[dict], int]:
    """Every line of every segment, parsed (a torn or merged line fails here), and the
    number of batches the spool counts as pending, both at one moment."""
    with spool._lock:  # not while a batch is half written
        lines = []
        for path in sorted(spool.folder.glob("*.jsonl")):
            data = path.read_bytes()
            assert not data or data.endswith(b"\n"), f"{path.name} ends in a torn line"
            lines.extend(json.loads(line) for line in data.splitlines())
        return lines, sum(s.lines - s.acked for s in spool._segments)


def test_agent_keeps_running_when_its_spool_disk_is_full(server, installed: str, dbname: str,
                                                         small_disk: Path, caplog) -> None:
    cluster = cluster_of(server)
    with agent_login(server, dbname) as agent_dsn:
        agent = RecordingAgent(agent_dsn, interval=0.2, spool_dir=small_disk / "spool",
                               host="full-disk-test")
        runner = threading.Thread(target=agent.run, kwargs={"install_signals": False})
        with caplog.at_level(logging.INFO, logger="pgperfmon"):
            cluster.down()
            try:
                runner.start()
                # The server is down: samples pile up in the spool until the disk is full.
                assert wait_for(lambda: caplog.text.count("cannot spool a sample") >= 3, timeout=30), (
                    caplog.text[-2000:])
                assert runner.is_alive(), "the agent stopped on a full disk"
                spooled, pending = spool_lines(agent.spool)
                assert pending == len(spooled) >= 5
                # The agent's own list of what it spooled may be one sample behind the files.
                recorded = [r["key"] for r in agent.records]
                n = min(len(spooled), len(recorded))
                assert [r["key"] for r in spooled][:n] == recorded[:n]
                assert abs(len(spooled) - len(recorded)) <= 1
            finally:
                cluster.up()
            # The server is back: what was spooled is delivered, which frees the disk, and
            # samples are spooled and sent again.
            refused = agent.spool.dropped
            assert wait_for(lambda: len(agent.records) >= len(spooled) + 5 and agent.spool.pending == 0,
                            timeout=60), (len(agent.records), agent.spool.pending)
            agent.stop.set()
            runner.join(timeout=60)
    assert not runner.is_alive()
    assert agent.spool.pending == 0
    errors = [r.getMessage() for r in caplog.records if "cannot spool a sample" in r.getMessage()]
    assert errors and all(str(small_disk / "spool") in e and "No space left on device" in e
                          and "batches spooled before it are kept" in e for e in errors), errors[:2]
    assert len(errors) == agent.spool.dropped >= refused >= 3
    with psycopg.connect(installed) as check:
        keys = [k for (k,) in check.execute(
            "SELECT batch_key::text FROM perfmon.ingest_batches WHERE agent = %s", (agent.name,))]
        reported = check.execute(
            "SELECT sum(value) FROM perfmon.metric_values WHERE metric = 'agent.spool.dropped_batches' "
            "AND labels ->> 'host' = 'full-disk-test'").fetchone()[0]
    assert sorted(keys) == sorted(r["key"] for r in agent.records), "each spooled sample stored once"
    assert reported == agent.spool.dropped, "the refused samples are counted in the database"


# --------------------------------------------------------------------------- alert channel down

HOUR = 3600.0


def test_alert_channel_down_for_an_hour_loses_nothing(conn: psycopg.Connection, installed: str) -> None:
    """An hour of virtual time with the default retry schedule, against real receivers: the
    webhook is down for the hour then back, Slack stays down. The outbox's clock is moved from
    one due attempt to the next instead of waiting (tests/test_alerting.py has the minutes)."""
    base, cap, last = (conn.execute("SELECT perfmon.setting(%s)::float8", (k,)).fetchone()[0] for k in (
        "alerting.retry_base_seconds", "alerting.retry_max_seconds", "alerting.max_delivery_attempts"))
    add_gauge_rule(conn, value=80)
    conn.execute("INSERT INTO public.test_gauge SELECT 'svc' || g, 85 FROM generate_series(1, 4) g")
    conn.execute("UPDATE perfmon.config SET value = 'true' WHERE key IN "
                 "('alerting.channels.webhook.enabled', 'alerting.channels.slack.enabled')")
    conn.execute("SELECT perfmon.analyze()")
    messages = dict(conn.execute("SELECT message_id, channel FROM perfmon.alert_outbox").fetchall())
    assert sorted(messages.values()) == ["slack"] * 5 + ["webhook"] * 5

    def deliver(env: dict[str, str]) -> int:
        with psycopg.connect(installed) as worker:
            return alerting.deliver_due(worker, "test", env=env)

    attempts: dict[int, list[float]] = {m: [] for m in messages}  # virtual time of each attempt
    statuses: dict[int, list[str]] = {m: [] for m in messages}    # status after each attempt
    # Virtual time = real time since t0 + how far the outbox's clock has been moved.
    t0 = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    moved = 0.0

    def now() -> float:
        return conn.execute("SELECT extract(epoch FROM clock_timestamp() - %s)::float8",
                            (t0,)).fetchone()[0] + moved

    with http_receiver() as hook, http_receiver() as slack:
        env = {"PGPERFMON_WEBHOOK_URL": hook.url, "PGPERFMON_WEBHOOK_SIGNING_KEY": "k",
               "PGPERFMON_SLACK_WEBHOOK_URL": slack.url}
        hook.fail_status = slack.fail_status = 503
        while True:
            if now() >= HOUR:
                hook.fail_status = None  # the webhook is back after an hour
            deliver(env)
            for message_id, attempt, at, status in conn.execute(
                    """SELECT d.message_id, d.attempt, extract(epoch FROM d.ts - %s)::float8 + %s, o.status
                       FROM perfmon.delivery_log d JOIN perfmon.alert_outbox o USING (message_id)
                       ORDER BY d.message_id, d.attempt""", (t0, moved)):
                if attempt > len(attempts[message_id]):
                    assert attempt == len(attempts[message_id]) + 1
                    attempts[message_id].append(at)
                    statuses[message_id].append(status)
            # Move the clock to the next due attempt (messages of one round fall due a few
            # milliseconds apart: the next turns of the loop take them).
            wait = conn.execute("SELECT extract(epoch FROM min(next_attempt_at) - clock_timestamp()) "
                                "FROM perfmon.alert_outbox WHERE status = 'pending'").fetchone()[0]
            if wait is None:
                break  # nothing pending any more
            wait = max(0.0, float(wait))
            conn.execute("UPDATE perfmon.alert_outbox SET next_attempt_at = next_attempt_at "
                         "- make_interval(secs => %s) WHERE status = 'pending'", (wait,))
            moved += wait
            assert moved < 24 * HOUR, "the outbox never settles"
        final = dict(conn.execute("SELECT message_id, status FROM perfmon.alert_outbox").fetchall())
        delivered_ids = sorted(hook.message_ids())
        assert slack.received == []

    schedule = [min(cap, base * 2 ** (k - 1)) for k in range(1, int(last))]  # wait after attempt k
    for message_id, channel in messages.items():
        times = attempts[message_id]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # Backoff obeyed: no retry before its wait, and none later than the moved clock and
        # a loaded machine explain (the shortest wait is 10 s).
        assert all(s - 0.01 <= g <= s + 5 for g, s in zip(gaps, schedule, strict=False)), (
            channel, gaps, schedule)
        if channel == "webhook":
            assert final[message_id] == "delivered"
            assert times[-1] >= HOUR > times[-2]  # sent at the first retry after the hour
            assert "dead" not in statuses[message_id]
        else:
            # Dead only after the configured last attempt, and pending until then.
            assert len(times) == last and final[message_id] == "dead"
            assert statuses[message_id] == ["pending"] * (int(last) - 1) + ["dead"]
    # Nothing lost, nothing sent twice.
    assert delivered_ids == sorted(m for m, c in messages.items() if c == "webhook")
    assert slack.refused == 5 * last


# --------------------------------------------------------------------------- a failing pg_cron job

def run_status(dsn: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, ["status", "--dsn", dsn])
    return result.exit_code, result.output


@pytest.mark.parametrize("procedure", ["run_every_interval", "run_every_interval_py"])
def test_a_sub_minute_job_whose_slots_fail_ends_in_error(conn: psycopg.Connection, installed: str,
                                                         procedure: str) -> None:
    """Jobs below a minute run through perfmon.run_every_interval_py() (or, without
    plpython3u, perfmon.run_every_interval()), which keep the minute going when a slot fails;
    the run must still end in error, or pg_cron records a success and pgperfmon status never
    hears of it. Called as pg_cron calls it, as perfmon_admin, with one slot (60 s) so that
    the test does not sleep through the minute's slots."""
    job = conn.execute("SELECT command FROM perfmon.job_plan WHERE name = 'sample_host'").fetchone()[0]
    assert job == "CALL perfmon.run_every_interval_py('SELECT perfmon.sample_host()', 10)"
    call = f"CALL perfmon.{procedure}('SELECT perfmon.sample_host()', 60)"
    conn.execute("ALTER FUNCTION perfmon.sample_host() RENAME TO sample_host_broken_by_test")
    try:
        conn.execute("SET ROLE perfmon_admin")
        with pytest.raises(psycopg.errors.RaiseException) as failed:
            conn.execute(call)
    finally:
        conn.execute("RESET ROLE")
        conn.execute("ALTER FUNCTION perfmon.sample_host_broken_by_test() RENAME TO sample_host")
    message = str(failed.value)
    assert "SELECT perfmon.sample_host() failed in 1 of its 1 slots" in message, message
    assert "function perfmon.sample_host() does not exist" in message, message
    conn.execute("SET ROLE perfmon_admin")
    conn.execute(call)  # fine again
    conn.execute("RESET ROLE")


def test_sub_minute_jobs_wait_without_holding_back_vacuum(server, installed: str) -> None:
    """Waiting between slots must not hold a snapshot: its xmin would hold vacuum's cleanup
    horizon back by the whole wait, all the time, and hot rows would pile up dead versions
    (pgbench lost 16% of its TPS in bench/soak.py). Both waiting procedures (the sub-minute
    runner and the delivery worker) are watched in pg_stat_activity while they wait; the
    PL/pgSQL runner, which cannot wait otherwise, shows what the check sees when one does.
    Both end promptly on a cancel, although Python's sleep does not see interrupts."""
    with psycopg.connect(installed, autocommit=True) as c:
        c.execute("UPDATE perfmon.config SET value = 'true' WHERE key = 'alerting.channels.webhook.enabled'")
    calls = {"runner": "CALL perfmon.run_every_interval_py('SELECT 1', 5)",
             "delivery worker": "CALL perfmon.deliver_alerts(max_seconds => 55)",
             "plpgsql runner": "CALL perfmon.run_every_interval('SELECT 1', 5)"}
    # The runners end with their minute's last slot, and a slot of 30 s would end them at once
    # when started after its last slot began: 5 s slots, and at least 15 s of the minute left.
    if (second := time.time() % 60) > 45:
        time.sleep(61 - second)
    sessions = {name: psycopg.connect(installed, autocommit=True) for name in calls}
    pids = {name: s.info.backend_pid for name, s in sessions.items()}
    threads = []
    for name, call in calls.items():
        def run(session=sessions[name], call=call) -> None:
            try:
                session.execute(call)
            except psycopg.errors.QueryCanceled:
                pass
        threads.append(threading.Thread(target=run, daemon=True))
        threads[-1].start()
    xmins: dict[str, list] = {name: [] for name in calls}
    with psycopg.connect(installed, autocommit=True) as watcher:
        try:
            watcher.execute("SELECT txid_current()")  # an xid to hold back, even on an idle server
            assert wait_for(lambda: watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s) AND state = 'active'",
                (list(pids.values()),)).fetchone()[0] == len(pids), timeout=10)
            for _ in range(10):
                for name, pid in pids.items():
                    row = watcher.execute("SELECT state, backend_xmin FROM pg_stat_activity WHERE pid = %s",
                                          (pid,)).fetchone()
                    assert row is not None and row[0] == "active", (name, row)
                    xmins[name].append(row[1])
                watcher.execute("SELECT txid_current(), pg_sleep(0.3)")
        finally:
            for pid in pids.values():
                watcher.execute("SELECT pg_cancel_backend(%s)", (pid,))
            for thread in threads:
                thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads), "a waiting procedure ignored the cancel"
    for session in sessions.values():
        session.close()
    assert xmins["runner"].count(None) >= 8, xmins
    assert xmins["delivery worker"].count(None) >= 8, xmins
    assert xmins["plpgsql runner"].count(None) <= 2, xmins


@pytest.mark.cron
def test_status_names_a_failing_job_and_its_error(server, installed: str, dbname: str) -> None:
    """The one test of this file that waits for pg_cron's minute tick: the collect job fails for
    real (a function it calls is gone) and `pgperfmon status` says which job and why."""
    prefix = deploy.cron_job_prefix(dbname)
    jobname = prefix + "collect"
    # Only the collect job runs at the tick: pg_cron 1.4 records a run's end when the longest
    # job of the tick ends (the sub-minute ones take most of the minute).
    others = "UPDATE cron.job SET active = %s WHERE starts_with(jobname, %s) AND jobname <> %s"
    server.execute(others, (False, prefix, jobname))
    with psycopg.connect(installed, autocommit=True) as c:
        c.execute("ALTER FUNCTION perfmon.run_collectors(text) RENAME TO run_collectors_broken_by_test")
        try:
            def failed_run() -> list[tuple]:
                return server.execute(
                    "SELECT d.return_message FROM cron.job_run_details d JOIN cron.job j USING (jobid) "
                    "WHERE j.jobname = %s AND d.status = 'failed'", (jobname,))
            assert wait_for(lambda: bool(failed_run()), timeout=75, interval=0.5), (
                "the collect job did not run (and fail) at the minute's tick")
            server.execute(others, (True, prefix, jobname))
            code, output = run_status(installed)
        finally:
            c.execute("ALTER FUNCTION perfmon.run_collectors_broken_by_test(text) RENAME TO run_collectors")
        assert "error" not in json.dumps(collect(c)["stages"])  # collect works again
    assert code == 1, output
    lines = [line for line in output.splitlines() if f"job {jobname} failed at" in line]
    assert len(lines) == 1, output
    assert "function perfmon.run_collectors(unknown) does not exist" in lines[0], lines[0]
    assert "cron.job_run_details" in lines[0], output
    assert output.splitlines()[-1] != "healthy"


# --------------------------------------------------------------------------- unstorable replies

@pytest.mark.parametrize("worker", ["deliver", "database"])
def test_a_nul_in_a_reason_phrase_is_a_failure_not_a_stuck_queue(conn: psycopg.Connection, installed: str,
                                                                 worker: str) -> None:
    """A receiver answering "503 busy\\0now": text may not hold NUL, and recording the attempt
    once failed, left the message unrecorded and pending, re-sent and failing on every start."""
    add_gauge_rule(conn, value=80)
    conn.execute("UPDATE perfmon.config SET value = 'true' WHERE key = 'alerting.channels.slack.enabled'")
    conn.execute("SELECT perfmon.analyze()")
    with http_receiver() as rx:
        rx.fail_status, rx.reason = 503, "busy\x00now\x1b[31m"
        if worker == "deliver":
            with psycopg.connect(installed) as w:
                assert alerting.deliver_due(w, "test", env={"PGPERFMON_SLACK_WEBHOOK_URL": rx.url}) == 1
        else:
            with psycopg.connect(installed, autocommit=True) as backend:
                backend.execute("DO $$ import os; os.environ['PGPERFMON_SLACK_WEBHOOK_URL'] = "
                                f"'{rx.url}' $$ LANGUAGE plpython3u")
                backend.execute("CALL perfmon.deliver_alerts()")
        assert rx.refused == 1
    row = conn.execute("SELECT status, attempts, last_error FROM perfmon.alert_outbox").fetchone()
    assert row == ("pending", 1, "HTTP 503 busy now [31m")
    assert conn.execute("SELECT ok, status_code, error FROM perfmon.delivery_log").fetchall() == \
        [(False, 503, "HTTP 503 busy now [31m")]


def test_an_outcome_that_cannot_be_stored_is_recorded_as_a_failure(conn: psycopg.Connection, installed: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever else makes recording an outcome fail (here a NUL let through on purpose), the
    worker records a plain failure and goes on with the next message."""
    delivery = alerting.delivery_module()
    monkeypatch.setattr(delivery, "scrub", lambda text, secrets=(): text)
    add_gauge_rule(conn, value=80)
    conn.execute("INSERT INTO public.test_gauge VALUES ('app2', 80)")
    conn.execute("UPDATE perfmon.config SET value = 'true' WHERE key = 'alerting.channels.slack.enabled'")
    conn.execute("SELECT perfmon.analyze()")
    with http_receiver() as rx, psycopg.connect(installed) as w:
        rx.fail_status, rx.reason = 503, "busy\x00now"
        assert alerting.deliver_due(w, "test", env={"PGPERFMON_SLACK_WEBHOOK_URL": rx.url}) == 2
    rows = conn.execute("SELECT status, attempts, last_error FROM perfmon.alert_outbox").fetchall()
    assert len(rows) == 2
    for status, attempts, error in rows:
        assert (status, attempts) == ("pending", 1)
        assert error.startswith("the outcome could not be recorded (DataError)"), error
