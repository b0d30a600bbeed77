"""Host sampling (shared by the in-database sampler and `pgperfmon agent`), the spool, and
the agent: nothing sampled is lost while the database is down, nothing is stored twice."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from agent_login import agent_login
from psycopg.conninfo import make_conninfo

from helpers import RecordingAgent, tcp_settings
from perfmon_py import hostmetrics
from pgperfmon.agent import Agent
from pgperfmon.ingest import iso
from pgperfmon.spool import Spool


@pytest.fixture()
def agent_dsn(installed: str, server, dbname: str) -> Iterator[str]:
    with agent_login(server, dbname) as dsn:
        yield dsn


def test_samples_use_catalog_names_and_rates_are_never_negative(conn) -> None:
    first, state = hostmetrics.sample(None, host="t", postmaster_pid=os.getpid())
    time.sleep(0.3)
    second, _ = hostmetrics.sample(state, host="t")
    names = {m for m, _labels, _v in first + second}
    catalog = {r[0] for r in conn.execute("SELECT name FROM perfmon.metrics")}
    assert names <= catalog, names - catalog
    assert "host.cpu.user_pct" not in {m for m, _l, _v in first}  # a baseline has no rates
    assert {"host.cpu.user_pct", "host.memory.used_pct", "host.disk.used_pct"} <= {m for m, _l, _v in second}
    for metric, labels, value in second:
        assert math.isfinite(value) and labels["host"] == "t"
        assert value >= 0, (metric, labels, value)


def test_a_counter_that_went_back_gives_no_rate() -> None:
    _points, state = hostmetrics.sample(None, host="t")
    inflated = json.loads(json.dumps(state))
    for counters in list(inflated["disk"].values()) + list(inflated["net"].values()):
        counters[:] = [c + 10**15 for c in counters]  # as if the host rebooted since
    inflated["cpu"] = {k: v + 10**9 for k, v in inflated["cpu"].items()}
    inflated["t"] -= 1
    points, _ = hostmetrics.sample(inflated, host="t")
    names = {m for m, _l, _v in points}
    assert not names & {"host.cpu.total_pct", "host.diskio.read_bytes_per_s", "host.net.recv_bytes_per_s"}
    assert "host.memory.used_pct" in names


def test_in_database_sampler_fills_host_metrics(conn) -> None:
    first = conn.execute("SELECT perfmon.sample_host()").fetchone()[0]
    time.sleep(0.5)
    second = conn.execute("SELECT perfmon.sample_host()").fetchone()[0]
    assert first["stored"] > 0 and second["stored"] > first["stored"], (first, second)
    assert second["refused"] == 0, second
    rows = conn.execute("SELECT cpu_total_pct, memory_used_pct, disk_max_used_pct, postgres_processes, "
                        "postgres_rss_bytes FROM perfmon.host_metrics ORDER BY ts").fetchall()
    assert len(rows) == 2
    assert rows[0][0] is None and rows[1][0] is not None and 0 <= rows[1][0] <= 100
    assert 0 < rows[1][1] < 100 and 0 < rows[1][2] <= 100
    assert rows[1][3] >= 2 and rows[1][4] > 0  # the postmaster and its children, locally
    kinds = {r[0] for r in conn.execute("SELECT DISTINCT kind FROM perfmon.host_devices")}
    assert "mount" in kinds and "interface" in kinds
    assert conn.execute("SELECT enabled FROM perfmon.jobs WHERE name = 'sample_host'").fetchone() == (True,)


def test_spool_replays_in_order_and_survives_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=200)
    for i in range(10):
        spool.append({"key": str(i), "ts": i, "points": []})
    position, record = spool.peek()
    assert record["key"] == "0"
    spool.ack(position)
    spool.close()
    reopened = Spool(tmp_path, segment_bytes=200)
    keys = []
    while (item := reopened.peek()) is not None:
        keys.append(item[1]["key"])
        reopened.ack(item[0])
    # Acknowledged before the restart but still in its segment: sent again, harmless
    # (the batch key makes it a no-op); the order is kept.
    assert keys[-9:] == [str(i) for i in range(1, 10)]
    assert reopened.pending == 0 and not list(tmp_path.glob("*.jsonl"))


def test_a_full_spool_says_so_and_keeps_the_newest(tmp_path: Path, caplog) -> None:
    spool = Spool(tmp_path, max_bytes=4000, segment_bytes=1000)
    with caplog.at_level(logging.ERROR, logger="pgperfmon.spool"):
        for i in range(200):
            spool.append({"key": str(i), "ts": i, "points": [["m", {}, 1.0]]})
    assert spool.size <= 4000
    assert spool.dropped > 0 and "SPOOL FULL" in caplog.text
    keys = []
    while (item := spool.peek()) is not None:
        keys.append(int(item[1]["key"]))
        spool.ack(item[0])
    assert keys == list(range(200 - len(keys), 200))  # the newest, in order
    assert len(keys) + spool.dropped == 200


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append({"key": "a", "ts": 1, "points": []})
    spool.close()
    with open(next(tmp_path.glob("*.jsonl")), "ab") as f:
        f.write(b'{"key": "b", "ts"')  # a crash in the middle of a write
    reopened = Spool(tmp_path)
    item = reopened.peek()
    assert item[1]["key"] == "a"
    reopened.ack(item[0])
    assert reopened.peek() is None


def _drain(spool: Spool) -> list[str]:
    keys = []
    while (item := spool.peek()) is not None:
        keys.append(item[1]["key"])
        spool.ack(item[0])
    return keys


def test_a_deleted_segment_is_lost_and_the_spool_carries_on(tmp_path: Path, caplog) -> None:
    spool = Spool(tmp_path, segment_bytes=40)  # one batch per segment
    for i in range(4):
        spool.append({"key": str(i), "ts": i, "points": [["m", {}, 1.0]]})
    segments = sorted(tmp_path.glob("*.jsonl"))
    assert len(segments) == 4
    position, _record = spool.peek()
    segments[0].unlink()  # an operator or a tmp cleaner, while the flusher sends it
    with caplog.at_level(logging.ERROR, logger="pgperfmon.spool"):
        spool.ack(position)
        segments[1].unlink()
        assert _drain(spool) == ["2", "3"]
        spool.append({"key": "4", "ts": 4, "points": []})
        (writing,) = tmp_path.glob("*.jsonl")
        writing.unlink()  # the one being written: noticed at the next append
        spool.append({"key": "5", "ts": 5, "points": []})
    assert _drain(spool) == ["5"]
    assert spool.dropped == 3 and caplog.text.count("SPOOL SEGMENT LOST") == 3
    assert spool.pending == 0 and not list(tmp_path.glob("*.jsonl"))


def test_a_removed_spool_folder_is_created_again(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "spool"
    spool = Spool(folder)
    spool.append({"key": "1", "ts": 1, "points": []})
    spool.append({"key": "2", "ts": 2, "points": []})
    shutil.rmtree(folder)  # systemd-tmpfiles, an operator cleaning up
    with caplog.at_level(logging.ERROR, logger="pgperfmon.spool"):
        spool.append({"key": "3", "ts": 3, "points": []})
    assert "was removed; creating it again" in caplog.text and "SPOOL SEGMENT LOST" in caplog.text
    assert spool.dropped == 2 and spool.pending == 1
    assert len(list(folder.glob("*.jsonl"))) == 1  # written to disk, not into the deleted file
    assert _drain(spool) == ["3"]
    shutil.rmtree(folder)  # again, with no segment open
    assert spool.peek() is None
    spool.append({"key": "4", "ts": 4, "points": []})
    assert _drain(spool) == ["4"]


def test_database_down_60s_loses_nothing_and_stores_nothing_twice(server, installed: str, agent_dsn: str,
                                                                  tmp_path: Path) -> None:
    if server.cluster is None:
        pytest.fail("this test stops the server: it needs the session's embedded cluster")
    agent = RecordingAgent(agent_dsn, interval=1.0, spool_dir=tmp_path / "spool", host="outage-test")
    runner = threading.Thread(target=agent.run, kwargs={"install_signals": False})
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while agent.sent < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert agent.sent >= 3, "the agent sent nothing while the database was up"
        server.cluster.down()
        down_at = time.time()
        time.sleep(60)
        assert agent.spool.pending >= 50, agent.spool.pending  # kept sampling, into the spool
        server.cluster.up()
        up_at = time.time()
        deadline = time.monotonic() + 60
        while (agent.spool.pending or len(agent.records) < 70) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        agent.stop.set()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert agent.spool.pending == 0
    with psycopg.connect(installed) as check:
        stored = dict(check.execute(
            """SELECT v.ts, count(*) FROM perfmon.metric_values v
               WHERE v.labels ->> 'host' = 'outage-test' GROUP BY v.ts""").fetchall())
        keys = check.execute("SELECT batch_key::text FROM perfmon.ingest_batches "
                             "WHERE agent = 'pgperfmon-agent@outage-test'").fetchall()
    in_gap = [r for r in agent.records if down_at <= r["ts"] <= up_at]
    assert len(in_gap) >= 55, len(in_gap)
    for record in agent.records:
        ts = datetime.fromisoformat(iso(record["ts"]))  # the time the agent sent
        assert stored.get(ts) == len(record["points"]), (ts, stored.get(ts), len(record["points"]))
    assert sorted(k[0] for k in keys) == sorted(r["key"] for r in agent.records)


def test_sigterm_stops_the_agent_cleanly_with_its_spool_kept_then_flushed(agent_dsn: str, conn,
                                                                         tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    nowhere = "host=127.0.0.1 port=1 dbname=x user=x connect_timeout=2"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "pgperfmon", "agent", "--interval", "1", "--spool-dir", str(spool_dir),
           "--host", "sigterm-test"]
    offline = subprocess.Popen([*cmd, "--dsn", nowhere], env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    offline.send_signal(signal.SIGTERM)
    _out, err = offline.communicate(timeout=30)
    assert offline.returncode == 0, err
    assert "database unreachable" in err and "kept in the spool for the next start" in err
    kept = Spool(spool_dir).pending
    assert kept >= 3

    online = subprocess.Popen([*cmd, "--dsn", agent_dsn], env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    online.send_signal(signal.SIGTERM)
    _out, err = online.communicate(timeout=30)
    assert online.returncode == 0, err
    assert "spool empty" in err
    assert Spool(spool_dir).pending == 0
    batches = conn.execute("SELECT count(*) FROM perfmon.ingest_batches "
                           "WHERE agent = 'pgperfmon-agent@sigterm-test'").fetchone()[0]
    assert batches >= kept + 3
    health = conn.execute("SELECT health FROM perfmon.agent_health "
                          "WHERE agent = 'pgperfmon-agent@sigterm-test'").fetchone()
    assert health == ("up",)


def _a_mount_and_an_interface_not_in_utf8(monkeypatch) -> None:
    """psutil gives names that are not UTF-8 with surrogateescape: /mnt/caf<0xe9>."""
    import psutil

    real_usage, real_nics = psutil.disk_usage, psutil.net_io_counters
    monkeypatch.setattr(psutil, "disk_partitions",
                        lambda all=False: [SimpleNamespace(mountpoint="/mnt/caf\udce9")])
    monkeypatch.setattr(psutil, "disk_usage", lambda path: real_usage("/"))

    def nics(pernic: bool = False):
        counters = real_nics(pernic=True)
        return {**counters, "caf\udce9": next(iter(counters.values()))}
    monkeypatch.setattr(psutil, "net_io_counters", nics)


def test_names_that_are_not_utf8_are_kept_as_escapes(monkeypatch) -> None:
    _a_mount_and_an_interface_not_in_utf8(monkeypatch)
    _points, state = hostmetrics.sample(None, host="t")
    points, state = hostmetrics.sample(state, host="t", now=state["t"] + 1)
    labels = [labels for _m, labels, _v in points]
    assert {"host": "t", "mount": "/mnt/caf\\xe9"} in labels
    assert {"host": "t", "interface": "caf\\xe9"} in labels
    # jsonb takes UTF-8 only: the state (stored by the in-database sampler) too
    json.dumps([labels, state], ensure_ascii=False).encode()


def test_the_agent_stores_a_mount_that_is_not_utf8(agent_dsn: str, conn, monkeypatch,
                                                   tmp_path: Path) -> None:
    _a_mount_and_an_interface_not_in_utf8(monkeypatch)
    agent = Agent(agent_dsn, interval=1.0, spool_dir=tmp_path / "spool", host="not-utf8")
    agent.sample_once()
    agent.flush(deadline=time.monotonic() + 10)
    assert agent.spool.pending == 0 and agent.spool.dropped == 0
    mounts = conn.execute("SELECT DISTINCT labels ->> 'mount' FROM perfmon.metric_values "
                          "WHERE labels ->> 'host' = 'not-utf8' AND labels ? 'mount'").fetchall()
    assert mounts == [("/mnt/caf\\xe9",)]


def test_a_batch_the_database_refuses_is_set_aside_and_the_next_ones_flow(agent_dsn: str, conn, caplog,
                                                                       tmp_path: Path) -> None:
    agent = Agent(agent_dsn, interval=1.0, spool_dir=tmp_path / "spool", host="set-aside")
    now = time.time()
    good = {"host": "set-aside"}
    # A label jsonb refuses (a spool written before names were cleaned), a line that is
    # JSON but not a batch, then a good batch: it must get through.
    agent.spool.append({"key": str(uuid.uuid4()), "ts": now - 3,
                        "points": [["host.disk.used_bytes", {**good, "mount": "/mnt/caf\udce9"}, 1.0]]})
    agent.spool.append({"key": str(uuid.uuid4()), "ts": now - 2})
    agent.spool.append({"key": str(uuid.uuid4()), "ts": now - 1, "points": [["host.load.1m", good, 0.5]]})
    with caplog.at_level(logging.ERROR, logger="pgperfmon.agent"):
        assert agent.flush(deadline=time.monotonic() + 10) == 1
    assert agent.spool.pending == 0 and agent.spool.dropped == 2
    assert caplog.text.count("set aside") == 2 and "malformed batch (KeyError" in caplog.text
    assert "invalid input syntax for type json" in caplog.text
    stored = conn.execute("SELECT count(*) FROM perfmon.metric_values "
                          "WHERE labels ->> 'host' = 'set-aside'").fetchone()[0]
    assert stored == 1
    # the loss is reported with the next sample
    assert ["agent.spool.dropped_batches", good, 2.0] in agent.sample_once()["points"]


def test_a_session_ended_right_after_connecting_is_retried(agent_dsn: str, installed: str, monkeypatch,
                                                           tmp_path: Path) -> None:
    """The server ends the agent's session (a restart, pg_terminate_backend) right after it
    connected: like any other loss, the agent spools and connects again; it used to exit."""
    from pgperfmon import agent as agent_module

    real_connect = agent_module.db.connect
    ended: list[int] = []

    def connect_then_lose_it(dsn: str, **kwargs):
        conn = real_connect(dsn, **kwargs)
        if not ended:
            pid = conn.info.backend_pid
            with psycopg.connect(installed, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
            ended.append(pid)
        return conn

    monkeypatch.setattr(agent_module.db, "connect", connect_then_lose_it)
    agent = Agent(agent_dsn, interval=0.5, spool_dir=tmp_path / "spool", host="ended-at-connect")
    failure: list[BaseException] = []

    def run() -> None:
        try:
            agent.run(install_signals=False)
        except BaseException as exc:  # what ended the agent, for the assertion below
            failure.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while agent.sent < 2 and runner.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        agent.stop.set()
        runner.join(timeout=60)
    assert failure == [] and ended, failure
    assert agent.sent >= 2
    with psycopg.connect(installed) as check:
        stored = check.execute("SELECT count(*) FROM perfmon.ingest_batches "
                               "WHERE agent = 'pgperfmon-agent@ended-at-connect'").fetchone()[0]
    assert stored >= 2


def test_the_agents_session_gives_up_on_a_silent_server_and_keeps_the_dsns_settings(
        agent_dsn: str, tmp_path: Path) -> None:
    # Its long-lived session had no keepalives: with the network to the server blackholed it
    # waited the kernel's two hours. And it was named 'pgperfmon agent' whatever the DSN
    # said: an operator's name for it, the one their pg_stat_activity accounting groups by,
    # was replaced.
    ours = {"keepalive": 1, "idle_s": 30, "interval_s": 10, "count": 3, "user_timeout_ms": 60_000}
    for dsn, keepalive, name in [
            (agent_dsn, ours, "pgperfmon agent"),
            (make_conninfo(agent_dsn, keepalives_count="9", application_name="host-7"),
             {**ours, "count": 9}, "host-7")]:
        agent = Agent(dsn, interval=60, spool_dir=tmp_path / "spool", host="session")
        assert agent._connect() and agent._conn is not None
        try:
            assert tcp_settings(agent._conn) == keepalive
            assert agent._conn.execute("SHOW application_name").fetchone()[0] == name
        finally:
            agent._disconnect()
