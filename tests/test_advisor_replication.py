"""The WAL archiving and replication checks of the advisor, triggered for real.

Each test starts dedicated clusters of its own (archive_mode needs a restart; a
replica needs a primary it can copy), installs pgperfmon there, makes the problem
happen (a failing and a stalled archive_command; a replica whose replay is paused,
an unused slot, a slot whose consumer stops, a slot lost past max_slot_wal_keep_size),
checks the finding and its evidence, removes the cause and checks that the next
refresh resolves the same finding. The clusters are stopped and removed at the end.
"""

from __future__ import annotations

import psycopg
from advisor_helpers import (
    dedicated_cluster,
    findings,
    installed_on,
    refresh,
    set_config,
    start_standby,
    view,
    wait_for,
    write_wal,
)
from psycopg import sql
from psycopg.rows import dict_row

from pgperfmon import embedded


def one(rows: list[dict], target: str) -> dict:
    found = [r for r in rows if r["target"] == target]
    assert len(found) == 1, (target, rows)
    return found[0]


# ------------------------------------------------------------------- archiving


def set_archive_command(conn: psycopg.Connection, command: str) -> None:
    conn.execute(sql.SQL("ALTER SYSTEM SET archive_command = {}").format(sql.Literal(command)))
    conn.execute("SELECT pg_reload_conf()")


def archiver(conn: psycopg.Connection) -> dict:
    return conn.cursor(row_factory=dict_row).execute(
        "SELECT a.archived_count, a.failed_count, a.last_failed_wal, a.last_archived_wal, "
        "       r.ready_files "
        "FROM pg_stat_archiver AS a, perfmon.archive_ready_files() AS r").fetchone()


def test_wal_archiving_failure_and_lag_fire_and_resolve() -> None:
    with dedicated_cluster({"archive_mode": "on", "archive_command": "'false'"}) as cluster:
        # The archiver waits in this command until the file exists: a stalled archive
        # that succeeds, so that segments pile up without a failure.
        release = cluster.home / "archive-release"
        stall = f"while [ ! -e {release} ]; do sleep 0.1; done"
        try:
            with installed_on(cluster) as conn:
                write_wal(conn, 3)
                wait_for("archive_command 'false' failed", lambda: archiver(conn)["failed_count"] >= 2)
                refresh(conn)
                failing = one(findings(conn, "backup"), "wal_archiving")
                stats = archiver(conn)
                assert failing["severity"] == "critical"
                assert failing["finding"].startswith("WAL archiving is failing")
                assert "no WAL has been archived yet" in failing["finding"]
                evidence = failing["evidence"]
                assert evidence["failed_count"] >= 2 and evidence["last_failed_time"]
                assert evidence["last_failed_wal"] == stats["last_failed_wal"]
                assert evidence["last_archived_wal"] is None and evidence["ready_files"] >= 1
                assert view(conn, "backup_status", "component = 'wal_archiving'")[0]["state"] == "failing"

                # The command works again: the next refresh resolves the same finding.
                release.touch()
                set_archive_command(conn, stall)
                wait_for("the waiting segments archived",
                         lambda: archiver(conn)["ready_files"] == 0 and archiver(conn)["archived_count"] >= 3)
                refresh(conn)
                assert findings(conn, "backup", "open") and "wal_archiving" not in {
                    r["target"] for r in findings(conn, "backup", "open")}
                resolved = one(findings(conn, "backup", "resolved"), "wal_archiving")
                assert resolved["id"] == failing["id"]
                works = view(conn, "backup_status", "component = 'wal_archiving'")[0]
                assert (works["state"], works["severity"]) == ("ok", "ok")

                # Stalled: 20 segments wait, none has failed -> "lags", the same finding reopened.
                failures = archiver(conn)["failed_count"]
                release.unlink()
                write_wal(conn, 20)
                wait_for("segments waiting", lambda: archiver(conn)["ready_files"] >= 16)
                refresh(conn)
                lagging = one(findings(conn, "backup"), "wal_archiving")
                assert lagging["id"] == failing["id"] and lagging["status_reason"] == "seen again"
                assert lagging["severity"] == "warning"
                assert lagging["finding"].startswith("WAL archiving lags: ")
                assert lagging["evidence"]["ready_files"] >= 16 and lagging["benefit"] >= 16
                assert lagging["evidence"]["failed_count"] == failures
                assert view(conn, "backup_status", "component = 'wal_archiving'")[0]["state"] == "lagging"

                release.touch()
                wait_for("the stalled segments archived", lambda: archiver(conn)["ready_files"] == 0)
                refresh(conn)
                assert one(findings(conn, "backup", "resolved"), "wal_archiving")["id"] == failing["id"]
        finally:
            release.touch()  # a stalled archiver would hold up the shutdown


# ------------------------------------------------------------------- replication


def replication(conn: psycopg.Connection) -> dict[str, dict]:
    return {f"{r['kind']} {r['name']}": r for r in view(conn, "replication_advice")}


def test_replica_lag_and_inactive_slots_fire_and_resolve() -> None:
    with dedicated_cluster({}) as primary, installed_on(primary) as conn:
        # Replies every second, so that its lag is seen (and cleared) soon.
        standby = embedded.Cluster(primary.home / "standby", primary.binaries,
                                   settings={"wal_receiver_status_interval": "1"})
        try:
            start_standby(primary, standby, "standby_slot")
            with psycopg.connect(standby.dsn(), autocommit=True) as replica:
                _replica_lag_and_slots(conn, standby, replica)
        finally:
            standby.down()


def _replica_lag_and_slots(conn: psycopg.Connection, standby: embedded.Cluster,
                           replica: psycopg.Connection) -> None:
    set_config(conn, "database.performance_thresholds.replication_lag_seconds", 2)
    streaming = wait_for("the replica streams through its slot", lambda: [
        r for r in view(conn, "replication_status") if r["kind"] == "replica"
        and r["state"] == "streaming" and r["replay_lag_bytes"] == 0])
    name = streaming[0]["name"]
    # Silent: a replica that keeps up, its slot in use.
    refresh(conn)
    assert findings(conn, "replication") == []
    assert replication(conn)["slot standby_slot"]["active"] is True

    # An unused slot holds WAL: warning, with what it retains.
    conn.execute("SELECT pg_create_physical_replication_slot('idle_slot', true)")
    write_wal(conn, 2)
    refresh(conn)
    idle = one(findings(conn, "replication"), "slot idle_slot")
    assert idle["severity"] == "warning" and idle["evidence"]["active"] is False
    assert idle["evidence"]["retained_wal_bytes"] > 16 * 1024 * 1024  # two segments switched
    assert idle["benefit"] == idle["evidence"]["retained_wal_bytes"]
    assert idle["apply_sql"] == "SELECT pg_drop_replication_slot('idle_slot');"

    # Replay paused while the primary writes: the replica falls behind.
    replica.execute("SELECT pg_wal_replay_pause()")
    wait_for("replay paused", lambda: replica.execute(
        "SELECT pg_get_wal_replay_pause_state() = 'paused'").fetchone()[0])

    def behind() -> bool:
        conn.execute("INSERT INTO churn SELECT generate_series(1, 1000)")
        row = replication(conn)[f"replica {name}"]
        return (row["replay_lag_s"] or 0) >= 2.5

    wait_for("the replica's replay lag passes the threshold", behind)
    refresh(conn)
    lag = one(findings(conn, "replication"), f"replica {name}")
    assert lag["severity"] == "warning", lag  # critical from 5x the threshold
    assert lag["evidence"]["replay_lag_s"] >= 2.5 and lag["evidence"]["replay_lag_bytes"] > 0
    assert "above the 2 s threshold" in lag["finding"]
    assert lag["benefit_unit"] == "seconds of lag"

    # Replay resumes: the replica catches up, the finding resolves; the idle slot stays.
    replica.execute("SELECT pg_wal_replay_resume()")
    wait_for("the replica catches up",
             lambda: replication(conn)[f"replica {name}"]["severity"] == "ok")
    refresh(conn)
    assert one(findings(conn, "replication", "resolved"), f"replica {name}")["id"] == lag["id"]
    assert [r["target"] for r in findings(conn, "replication")] == ["slot idle_slot"]

    # The replica stops: its slot is inactive and holds WAL; it returns: resolved.
    standby.down()
    write_wal(conn, 1)
    refresh(conn)
    stopped = one(findings(conn, "replication"), "slot standby_slot")
    assert stopped["severity"] == "warning" and stopped["evidence"]["retained_wal_bytes"] > 0
    assert (failure := standby._start()) is None, failure
    wait_for("the replica streams again",
             lambda: replication(conn)["slot standby_slot"]["active"])
    refresh(conn)
    assert one(findings(conn, "replication", "resolved"), "slot standby_slot")["id"] == stopped["id"]

    # Past max_slot_wal_keep_size a checkpoint removes the idle slot's WAL: lost, critical.
    conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '32MB'")
    conn.execute("SELECT pg_reload_conf()")
    write_wal(conn, 4)
    # The replica's own slot must not fall behind that far before the checkpoint.
    wait_for("the replica has received the new WAL", lambda: replication(conn)[
        "slot standby_slot"]["retained_wal_bytes"] < 16 * 1024 * 1024)
    conn.execute("CHECKPOINT")
    wait_for("the idle slot is lost",
             lambda: replication(conn)["slot idle_slot"]["wal_status"] == "lost")
    refresh(conn)
    lost = one(findings(conn, "replication"), "slot idle_slot")
    assert lost["id"] == idle["id"] and lost["severity"] == "critical"
    assert "lost" in lost["finding"] and "cannot resume" in lost["finding"]
    assert lost["evidence"]["wal_status"] == "lost"
    assert replication(conn)["slot standby_slot"]["severity"] == "ok"  # its consumer kept up

    conn.execute("SELECT pg_drop_replication_slot('idle_slot')")
    refresh(conn)
    assert findings(conn, "replication") == []
    assert one(findings(conn, "replication", "resolved"), "slot idle_slot")["id"] == idle["id"]
