"""Advisor checks that need a server of their own, each triggered for real and silent
where it should be: autovacuum throttled so that it cannot keep up, archive_mode on
with nothing to archive with, a standby without a slot that disconnects, and a real
multixact ID age past autovacuum_multixact_freeze_max_age.

One dedicated server serves the module (archive_mode and
autovacuum_multixact_freeze_max_age need a restart); each test installs pgperfmon in a
database of its own. The multixact test runs last: it leaves every database of the
server due for an anti-wraparound vacuum until it ends.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from advisor_helpers import (
    dedicated_cluster,
    findings,
    installed_on,
    refresh,
    start_standby,
    view,
    wait_for,
    write_wal,
)
from psycopg import sql

from helpers import collect, flush
from pgperfmon import embedded

# autovacuum_multixact_freeze_max_age at its minimum (10000): the wraparound check's
# warning level is optimization.wraparound_warning_pct (default 100) of it, so a real
# MXID age of some 12000 crosses it within a second of work. Pushing the next multixact
# ID two billion ahead with pg_resetwal -m would show the same check, at the cost of
# hand-made pg_multixact segment files; the threshold scales with the setting, so
# lowering the setting tests the same code path on real multixacts.
SETTINGS = {
    "autovacuum_naptime": "1",
    "autovacuum_multixact_freeze_max_age": "10000",
    "archive_mode": "on",
    "archive_command": "''",
    "wal_keep_size": "0",
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[embedded.Cluster]:
    with dedicated_cluster(SETTINGS) as server:
        yield server


def sample(conn: psycopg.Connection) -> None:
    flush(conn)
    collect(conn)


def one(rows: list[dict], target: str) -> dict:
    found = [r for r in rows if r["target"] == target]
    assert len(found) == 1, (target, rows)
    return found[0]


# ------------------------------------------------------------------- vacuum


def test_throttled_autovacuum_cannot_keep_up(cluster: embedded.Cluster) -> None:
    with installed_on(cluster, "vacuum") as conn:
        # slow: autovacuum may read 1 cost unit per 100 ms, about 10 pages a second, so a
        # run over its 900 pages outlasts the test; fast: the same table, default settings.
        for table, options in (("slow", ", autovacuum_vacuum_cost_delay = 100, "
                                        "autovacuum_vacuum_cost_limit = 1"),
                               ("fast", "")):
            conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v int) WITH "
                         f"(autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0"
                         f"{options})")
            conn.execute(f"INSERT INTO {table} SELECT g, g FROM generate_series(1, 200000) g")
            flush(conn)  # its inserts counted before VACUUM sets the live tuples
            conn.execute(f"VACUUM ANALYZE {table}")
        sample(conn)
        refresh(conn)
        assert findings(conn, "vacuum_health") == []  # nothing dead yet

        running = ("SELECT p.relid::regclass::text FROM pg_stat_progress_vacuum AS p "
                   "JOIN pg_stat_activity AS a USING (pid) WHERE a.backend_type = 'autovacuum worker'")
        dead = "SELECT pg_stat_get_dead_tuples(%s::regclass)"
        for batch in range(3):  # 20000 more dead tuples in each, by ranges of new pages
            for table in ("slow", "fast"):
                conn.execute(f"DELETE FROM {table} WHERE id > %s AND id <= %s",
                             (batch * 20000, (batch + 1) * 20000))
            if batch == 0:
                wait_for("autovacuum at work on slow",
                         lambda: "slow" in [r[0] for r in conn.execute(running)])
            sample(conn)
        assert "slow" in [r[0] for r in conn.execute(running)]  # still: it cannot finish
        # fast keeps up: autovacuum removed its dead tuples (the sample then says so).
        wait_for("autovacuum cleaned fast", lambda: conn.execute(dead, ("fast",)).fetchone()[0] == 0)
        sample(conn)
        refresh(conn)

        row = one(findings(conn, "vacuum_health"), "public.slow")
        assert [r["target"] for r in findings(conn, "vacuum_health")] == ["public.slow"]
        assert row["severity"] == "critical", row
        assert "to 60000 across" in row["finding"], row["finding"]
        assert "while autovacuum has been working on it for" in row["finding"]
        assert ("it cannot keep up, throttled by autovacuum_vacuum_cost_delay = 100 ms and "
                "autovacuum_vacuum_cost_limit = 1 (table settings") in row["finding"]
        assert "at most 10 pages a second" in row["finding"]
        assert "snapshot" not in row["finding"]  # no session holds one: not the other case
        ev = row["evidence"]
        assert ev["throttled"] is True and ev["xmin_held_by"] is None
        assert (ev["autovacuum_cost_delay_ms"], ev["autovacuum_cost_limit"]) == (100, 1)
        assert ev["autovacuum_running_since"] is not None
        assert row["apply_sql"] == ("ALTER TABLE public.slow RESET (autovacuum_vacuum_cost_delay, "
                                    "autovacuum_vacuum_cost_limit); VACUUM (ANALYZE) public.slow;")
        health = {r["table_name"]: r for r in view(conn, "vacuum_health")}
        assert health["slow"]["cannot_keep_up"] and not health["fast"]["cannot_keep_up"]
        assert health["fast"]["autovacuum_cost_delay_ms"] == 2  # the server's default

        # Applied: the manual VACUUM cancels the throttled worker (it waits on its lock)
        # and runs unthrottled; the next refresh resolves the same finding.
        conn.execute("SET deadlock_timeout = '100ms'")
        for statement in row["apply_sql"].split("; "):
            conn.execute(statement.rstrip(";"))
        sample(conn)
        refresh(conn)
        assert findings(conn, "vacuum_health") == []
        assert [r["id"] for r in findings(conn, "vacuum_health", "resolved")] == [row["id"]]


# ------------------------------------------------------------------- archiving


def test_archive_mode_on_without_archive_command(cluster: embedded.Cluster) -> None:
    with installed_on(cluster, "archiving") as conn:
        # At once: no failure, no pile of segments is needed to see it.
        refresh(conn)
        row = one(findings(conn, "backup"), "wal_archiving")
        assert row["severity"] == "critical"
        assert row["finding"].startswith("WAL archiving is not configured: archive_mode = on but "
                                         "archive_command and archive_library are empty"), row
        assert row["evidence"]["archive_command"] is None and row["evidence"]["failed_count"] == 0
        assert "ALTER SYSTEM SET archive_command" in row["apply_sql"]
        status = view(conn, "backup_status", "component = 'wal_archiving'")[0]
        assert status["state"] == "not configured"
        # Readers see it too (archive_command is read with their rights).
        conn.execute("SET ROLE perfmon_reader")
        assert conn.execute("SELECT state FROM perfmon.backup_status "
                            "WHERE component = 'wal_archiving'").fetchone() == ("not configured",)
        conn.execute("RESET ROLE")

        # Segments do wait for it: the server keeps them, the archiver never runs.
        write_wal(conn, 2)
        wait_for("segments marked ready", lambda: conn.execute(
            "SELECT ready_files FROM perfmon.archive_ready_files()").fetchone()[0] >= 2)

        # Configured: they are archived and the same finding resolves.
        target = cluster.home / "archive"
        target.mkdir()
        cluster._chown(target)
        conn.execute(sql.SQL("ALTER SYSTEM SET archive_command = {}").format(
            sql.Literal(f"cp %p {target}/%f")))
        conn.execute("SELECT pg_reload_conf()")
        wait_for("the waiting segments archived", lambda: conn.execute(
            "SELECT ready_files FROM perfmon.archive_ready_files()").fetchone()[0] == 0)
        refresh(conn)
        assert "wal_archiving" not in {r["target"] for r in findings(conn, "backup")}
        assert one(findings(conn, "backup", "resolved"), "wal_archiving")["id"] == row["id"]
        status = view(conn, "backup_status", "component = 'wal_archiving'")[0]
        assert (status["state"], status["severity"]) == ("ok", "ok")


# ------------------------------------------------------------------- replication


def test_standby_without_slot_that_disconnects(cluster: embedded.Cluster) -> None:
    standby = embedded.Cluster(cluster.home / "standby", cluster.binaries,
                               settings={"wal_receiver_status_interval": "1"})
    try:
        with installed_on(cluster, "replication") as conn:
            start_standby(cluster, standby, None)
            replicas = ("SELECT name, state, active, last_seen_at FROM perfmon.replication_status "
                        "WHERE kind = 'replica'")
            name = wait_for("the standby streams", lambda: [
                r[0] for r in conn.execute(replicas) if r[1] == "streaming"])[0]
            assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)
            collect(conn)
            refresh(conn)
            assert findings(conn, "replication") == []  # connected: silent

            standby.down()
            wait_for("the primary lost the standby", lambda: conn.execute(
                "SELECT count(*) FROM pg_stat_replication").fetchone()[0] == 0)
            seen = conn.execute("SELECT max(ts) FROM perfmon.replication_history "
                                "WHERE kind = 'replica' AND name = %s", (name,)).fetchone()[0]
            collect(conn)  # a sample without it
            gone = [r for r in conn.execute(replicas) if r[0] == name]
            assert gone == [(name, "disconnected", False, seen)], gone
            refresh(conn)
            row = one(findings(conn, "replication"), f"replica {name}")
            assert row["severity"] == "warning"
            assert row["finding"].startswith(f"replica {name} is no longer connected: it was last "
                                             "seen streaming at "), row
            assert "the primary keeps no WAL for it beyond wal_keep_size (0)" in row["finding"]
            assert row["evidence"]["state"] == "disconnected" and row["evidence"]["last_seen_at"]
            assert row["benefit_unit"] == "seconds disconnected"

            assert (failure := standby._start()) is None, failure
            wait_for("the standby streams again", lambda: [
                r for r in conn.execute(replicas) if r[0] == name and r[1] == "streaming"])
            refresh(conn)
            assert findings(conn, "replication") == []
            assert one(findings(conn, "replication", "resolved"), f"replica {name}")["id"] == row["id"]
    finally:
        standby.down()


# ------------------------------------------------------------------- wraparound


def test_multixact_age_past_its_freeze_max_age(cluster: embedded.Cluster) -> None:
    with installed_on(cluster, "multixact") as conn, \
            psycopg.connect(cluster.dsn("multixact")) as holder:
        me = "database multixact"
        conn.execute("CREATE TABLE locked (id int PRIMARY KEY)")
        conn.execute("INSERT INTO locked VALUES (1)")
        # Every FOR SHARE lock taken in its own transaction, while another transaction
        # holds one on the same row, makes a new multixact (the two lockers).
        conn.execute("""
            CREATE PROCEDURE make_multixacts(n int) LANGUAGE plpgsql AS $$
            BEGIN
                FOR i IN 1 .. n LOOP
                    PERFORM FROM locked WHERE id = 1 FOR SHARE;
                    COMMIT;
                END LOOP;
            END $$""")
        refresh(conn)
        assert me not in {r["target"] for r in findings(conn, "wraparound")}  # silent
        before = view(conn, "wraparound_risk", "database = current_database()")[0]
        assert before["mxid_age"] < 1000 and before["severity"] == "ok"

        # The holder keeps its lock, and so the oldest multixact it is a member of: no
        # vacuum (autovacuum tries every second) can advance the tables' relminmxid.
        holder.execute("SELECT FROM locked WHERE id = 1 FOR SHARE")
        conn.execute("CALL make_multixacts(12000)")
        risk = view(conn, "wraparound_risk", "database = current_database()")[0]
        assert risk["mxid_freeze_max_age"] == 10000
        assert 12000 <= risk["mxid_age"] < 13000, risk
        assert risk["mxid_pct_of_freeze_max"] >= 100 and risk["xid_age"] < risk["freeze_max_age"]
        assert risk["severity"] == "warning"
        refresh(conn)
        row = one(findings(conn, "wraparound"), me)
        assert row["severity"] == "warning"
        assert (f"oldest multixact ID {risk['mxid_age']} multixacts old "
                f"({risk['mxid_pct_of_freeze_max']}% of autovacuum_multixact_freeze_max_age") \
            in row["finding"], row["finding"]
        assert row["evidence"]["mxid_age"] == risk["mxid_age"]
        assert row["evidence"]["autovacuum_multixact_freeze_max_age"] == 10000
        oldest = row["evidence"]["oldest_tables"][0]
        assert oldest["mxid_age"] >= 12000, row["evidence"]["oldest_tables"]
        assert row["apply_sql"].startswith("VACUUM (FREEZE, VERBOSE) ")

        # The holder ends; a database-wide freeze advances datminmxid: resolved.
        holder.rollback()
        conn.execute("VACUUM (FREEZE)")
        risk = view(conn, "wraparound_risk", "database = current_database()")[0]
        assert risk["mxid_age"] < 1000 and risk["severity"] == "ok", risk
        refresh(conn)
        assert me not in {r["target"] for r in findings(conn, "wraparound")}
        assert one(findings(conn, "wraparound", "resolved"), me)["id"] == row["id"]
