"""Every advisor check on a database prepared to trigger it, and silent on one that
should not trigger it; the refresh keeps one list."""

from __future__ import annotations

import json

import psycopg
from advisor_helpers import (
    dedicated_cluster,
    findings,
    installed_on,
    refresh,
    sampled,
    set_config,
    view,
    wait_for,
)
from click.testing import CliRunner
from psycopg import sql

from helpers import collect, flush
from pgperfmon import cli, config, deploy, resources


def test_fresh_database_refresh_runs_every_rule(conn: psycopg.Connection) -> None:
    collect(conn)
    result = refresh(conn)
    rules = [r[0] for r in conn.execute(
        "SELECT name FROM perfmon.advisor_rules WHERE enabled ORDER BY ordinal")]
    assert sorted(result["rules"]) == sorted(rules)
    assert len(rules) >= 15
    # Nothing in an empty database calls for an index, a vacuum, a drop, a fix.
    for rule in ("index_advice", "unused_index", "duplicate_index", "invalid_index", "table_bloat",
                 "index_bloat", "vacuum_health", "wraparound", "sequence", "connection_pool",
                 "cache_hit", "replication", "storage_forecast", "slow_query_plan"):
        assert findings(conn, rule) == [], rule
    timings = conn.execute("SELECT count(*), count(error) FROM perfmon.advisor_timings").fetchone()
    assert timings == (len(rules), 0)
    # every view of a rule says what it shows, in psql
    missing = conn.execute("""
        SELECT r.view_name FROM perfmon.advisor_rules r
        WHERE obj_description(r.view_name::regclass, 'pg_class') IS NULL""").fetchall()
    assert missing == []


def test_without_plpython_the_python_rules_are_unavailable_not_errors(
        server, dbname: str, dsn: str) -> None:
    deploy.install(dsn, config.load(None, env={}), skip_extensions=("plpython3u",))
    python_rules = ["index_advice", "slow_query_plan", "storage_forecast"]
    status = CliRunner().invoke(cli.main, ["status", "--dsn", dsn, "--json"])
    assert status.exit_code == 0, status.output  # degraded, not broken
    plpython = next(c for c in json.loads(status.output)["capabilities"]
                    if c["capability"] == "plpython3u")
    assert plpython["in_force"] is False
    assert f"advisor rules {', '.join(python_rules)} are unavailable" in plpython["detail"]
    server.pause_jobs(dbname)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'plpython3u'"
                            ).fetchone() == (0,)
        result = refresh(conn)  # fails on any rule's error
        stages = result["rules"]
        assert sorted(r for r, s in stages.items() if "unavailable" in s) == python_rules, stages
        for rule in python_rules:
            assert stages[rule]["unavailable"] == "plpython3u not installed"
            assert "findings" not in stages[rule] and "error" not in stages[rule]
        timings = {r[0]: r[1:] for r in conn.execute(
            "SELECT rule, error, unavailable, findings FROM perfmon.advisor_timings")}
        assert len(timings) == len(stages) >= 15
        for rule, (error, unavailable, found) in timings.items():
            assert error is None, (rule, error)
            if rule in python_rules:
                assert (unavailable, found) == ("plpython3u not installed", None)
            else:
                assert unavailable is None and found is not None, rule
        # The SQL rules still run: archiving is off and no backup is recorded here.
        assert {r["target"] for r in findings(conn, "backup")} == {"wal_archiving", "base_backup"}
        # plpython3u arrives later: the same rules run again, no longer unavailable.
        deploy.install(dsn, config.load(None, env={}))
        again = refresh(conn)["rules"]
        assert not [r for r, s in again.items() if "unavailable" in s], again
        assert again["index_advice"]["findings"] == 0


def test_unused_index(probe: psycopg.Connection) -> None:
    conn = probe
    conn.execute("CREATE INDEX probe_v ON probe (v)")
    conn.execute("CREATE INDEX probe_v_used ON probe (v, id)")
    sampled(conn, lambda: conn.execute("SELECT * FROM probe WHERE v = 'x1' AND id > 0 "
                                       "ORDER BY v, id").fetchall())
    used = conn.execute("SELECT pg_stat_get_numscans('probe_v_used'::regclass)").fetchone()[0]
    refresh(conn)
    assert findings(conn, "unused_index") == []  # observed for less than 14 days
    conn.execute("UPDATE perfmon.relations SET first_seen = now() - interval '20 days' "
                 "WHERE rel_name IN ('probe_v', 'probe_v_used', 'probe_pkey')")
    refresh(conn)
    rows = findings(conn, "unused_index")
    if used:  # the planner may pick either index for the probe query; the used one is kept
        assert [r["target"] for r in rows] == ["public.probe_v"], rows
    assert "public.probe_pkey" not in {r["target"] for r in rows}  # backs a constraint
    row = next(r for r in rows if r["target"] == "public.probe_v")
    assert row["apply_sql"] == "DROP INDEX CONCURRENTLY public.probe_v;"
    assert row["benefit"] > 0 and row["benefit_unit"] == "bytes reclaimable"
    assert row["evidence"]["scans_sampled"] == 0


def busy_and_rare(conn: psycopg.Connection, busy: int) -> None:
    """`busy` tables whose index reads 300 entries a scan, and one table with an index that is
    looked up once (rare_v, a single entry) and one never scanned (rare_w)."""
    for i in range(busy):
        conn.execute(f"CREATE TABLE busy_{i} (a int, b text)")
        conn.execute(f"INSERT INTO busy_{i} SELECT g, 'x' FROM generate_series(1, 1000) g")
        conn.execute(f"CREATE INDEX busy_{i}_a ON busy_{i} (a)")
        conn.execute(f"ANALYZE busy_{i}")
    conn.execute("CREATE TABLE rare (id int, v text, w text)")
    conn.execute("INSERT INTO rare SELECT g, 'x' || g, 'y' || g FROM generate_series(1, 2000) g")
    conn.execute("CREATE INDEX rare_v ON rare (v)")
    conn.execute("CREATE INDEX rare_w ON rare (w)")
    conn.execute("ANALYZE rare")


def rare_work(conn: psycopg.Connection, busy: int) -> None:
    for i in range(busy):
        conn.execute(f"SELECT * FROM busy_{i} ORDER BY a LIMIT 300").fetchall()
    conn.execute("SELECT * FROM rare WHERE v = 'x5'").fetchall()


def test_an_index_scanned_but_never_among_the_busiest_is_not_unused(probe: psycopg.Connection) -> None:
    """index_history keeps only the relation_top_n busiest indexes of a sample: an index
    scanned a little every sample, never among them, was advised dropped as unused."""
    conn = probe
    busy = 12
    set_config(conn, "collection.relation_top_n", 10)
    busy_and_rare(conn, busy)
    collect(conn)
    for _ in range(3):
        sampled(conn, lambda: rare_work(conn, busy))
    assert conn.execute("SELECT pg_stat_get_numscans('rare_v'::regclass)").fetchone()[0] >= 3
    stored = conn.execute("""SELECT count(*) FROM perfmon.index_history h
                             JOIN perfmon.relations r USING (rel_id) WHERE r.rel_name = 'rare_v'""")
    assert stored.fetchone() == (0,), "rare_v made the top N: the test shows nothing"
    conn.execute("UPDATE perfmon.relations SET first_seen = now() - interval '20 days' "
                 "WHERE rel_name IN ('rare_v', 'rare_w')")
    refresh(conn)
    assert [r["target"] for r in findings(conn, "unused_index")] == ["public.rare_w"]
    rare = {r["index_name"]: r for r in view(conn, "unused_indexes", "table_name = 'rare'")}
    assert rare["rare_v"]["severity"] == "ok" and rare["rare_v"]["last_scan_seen"] is not None
    assert rare["rare_w"]["last_scan_seen"] is None and rare["rare_w"]["unscanned_days"] >= 19.9


def test_a_scan_after_a_statistics_reset_counts(probe: psycopg.Connection) -> None:
    """The sample after pg_stat_reset() is a baseline for the deltas and stored none, but what
    the counters hold then was scanned since the reset, after the previous sample: the index is
    used. The span from that sample to the reset cannot be accounted for: not observed time."""
    conn = probe
    busy_and_rare(conn, 0)
    sampled(conn, lambda: None)
    conn.execute("SELECT pg_stat_reset()")
    rare_work(conn, 0)
    flush(conn)
    collect(conn)
    conn.execute("UPDATE perfmon.relations SET first_seen = now() - interval '20 days' "
                 "WHERE rel_name IN ('rare_v', 'rare_w')")
    refresh(conn)
    assert [r["target"] for r in findings(conn, "unused_index")] == ["public.rare_w"]
    gaps = conn.execute("SELECT count(*) FROM perfmon.index_stats_gaps").fetchone()[0]
    assert gaps == 1
    # A span it could not see, as long as the index was watched, leaves it unobserved.
    conn.execute("UPDATE perfmon.index_stats_gaps SET gap_from = now() - interval '19 days'")
    refresh(conn)
    assert findings(conn, "unused_index") == []
    rare_w = view(conn, "unused_indexes", "index_name = 'rare_w'")[0]
    assert 0.9 <= rare_w["unscanned_days"] <= 1.1 and rare_w["observed_days"] == rare_w["unscanned_days"]


def test_the_index_behind_a_foreign_key_is_not_advised_dropped(probe: psycopg.Connection) -> None:
    """A foreign key's check on a parent DELETE scans the child's index only when a parent row
    goes: never scanned is not unused. Dropping the only covering index would make each parent
    delete read the whole child. Of two covering indexes that both look unused, one is kept."""
    conn = probe
    conn.execute("CREATE TABLE parent (id int PRIMARY KEY, a int, b int, UNIQUE (a, b))")
    conn.execute("""CREATE TABLE child (id int, p int REFERENCES parent, q int REFERENCES parent,
                                        a int, b int, FOREIGN KEY (a, b) REFERENCES parent (a, b))""")
    conn.execute("CREATE INDEX child_p ON child (p)")                   # the only one for p
    conn.execute("CREATE INDEX child_q ON child (q)")                   # two for q
    conn.execute("CREATE INDEX child_q_id ON child (q, id)")
    conn.execute("CREATE INDEX child_b_a ON child (b, a)")              # (a, b), in another order
    conn.execute("CREATE INDEX child_p_partial ON child (p) WHERE p > 0")  # cannot serve the check
    conn.execute("CREATE INDEX child_id ON child (id)")                 # serves no foreign key
    collect(conn)
    conn.execute("UPDATE perfmon.relations SET first_seen = now() - interval '20 days' "
                 "WHERE rel_name LIKE 'child%'")
    refresh(conn)
    advised = {r["target"] for r in findings(conn, "unused_index")}
    assert advised == {"public.child_q_id", "public.child_p_partial", "public.child_id"}, advised
    kept = {r["index_name"]: r["kept_for_foreign_keys"]
            for r in view(conn, "unused_indexes", "table_name = 'child'")}
    assert kept == {"child_p": ["child_p_fkey"], "child_q": ["child_q_fkey"],
                    "child_b_a": ["child_a_b_fkey"], "child_q_id": None, "child_p_partial": None,
                    "child_id": None}, kept
    # Once one of the two for q is scanned, the other is no longer needed for it.
    sampled(conn, lambda: conn.execute(
        "SET enable_seqscan = off; SELECT * FROM child WHERE q = 1 AND id = 1; RESET enable_seqscan"))
    refresh(conn)
    advised = {r["target"] for r in findings(conn, "unused_index")}
    assert "public.child_q_id" not in advised and "public.child_q" in advised, advised


def test_names_that_read_alike_unquoted_are_two_targets(probe: psycopg.Connection) -> None:
    """Schema "a.b" table "c" and schema "a" table "b.c" were both target a.b.c: their findings
    were one row, each refresh overwriting the other's. Targets quote names as a DBA pastes them.
    A finding stored unquoted before goes on under its new target (status, id, alert) when its
    object is certain; one of two such objects cannot be told, and is resolved."""
    conn = probe
    migration = resources.path("sql", "migrations") / "024_advisor_index_scans_and_targets.sql"
    conn.execute('CREATE SCHEMA "a.b"')
    conn.execute("CREATE SCHEMA a")
    for table in ('"a.b".c', 'a."b.c"', 'public."Orders"'):
        conn.execute(f"CREATE TABLE {table} (id int, v text) WITH (autovacuum_enabled = false)")
        conn.execute(f"INSERT INTO {table} SELECT g, 'x' FROM generate_series(1, 20000) g")
        conn.execute(f"DELETE FROM {table} WHERE id % 2 = 0")
    conn.execute('CREATE INDEX i ON "a.b".c (v)')
    conn.execute('CREATE INDEX "b.i" ON a."b.c" (v)')
    conn.execute('CREATE INDEX "Orders_v" ON public."Orders" (v)')
    flush(conn)
    collect(conn)
    conn.execute("UPDATE perfmon.relations SET first_seen = now() - interval '20 days' "
                 "WHERE rel_name IN ('i', 'b.i', 'Orders_v')")
    # What the release before stored: unquoted targets, one alert raised from one of them.
    set_config(conn, "alerting.recommendation_min_level", "info")
    old = [("vacuum_health", "vacuum", "a.b.c", "open"),
           ("vacuum_health", "vacuum", "public.Orders", "dismissed"),
           ("unused_index", "index", "public.Orders_v", "open"),
           ("index_advice", "index", "public.Orders(Customer Id, v)", "open")]
    for rule, kind, target, status in old:
        conn.execute("""INSERT INTO perfmon.recommendation_log (fingerprint, rule, kind, severity, target,
                            finding, confidence, first_seen, last_seen, status, status_changed)
                        VALUES (md5(%(rule)s || ':' || %(target)s), %(rule)s, %(kind)s, 'warning', %(target)s,
                                'found before', 'high', now() - interval '1 day', now() - interval '1 day',
                                %(status)s, now() - interval '1 day')""",
                     {"rule": rule, "kind": kind, "target": target, "status": status})
    ids = dict(conn.execute("SELECT target, id FROM perfmon.recommendation_log").fetchall())
    conn.execute("SELECT perfmon.analyze()")
    alert = conn.execute("SELECT alert_id FROM perfmon.alert_log "
                         "WHERE target = 'unused_index: public.Orders_v'").fetchone()[0]
    conn.execute(migration.read_text(encoding="utf-8"))  # the upgrade's migration (again)
    assert dict(conn.execute("SELECT id, target FROM perfmon.recommendation_log").fetchall()) == {
        ids["a.b.c"]: "a.b.c", ids["public.Orders"]: 'public."Orders"',
        ids["public.Orders_v"]: 'public."Orders_v"',
        ids["public.Orders(Customer Id, v)"]: 'public."Orders"("Customer Id", v)'}
    refresh(conn)
    vacuum = {r["target"]: r for r in findings(conn, "vacuum_health", None)}
    assert {t: (r["status"], r["id"]) for t, r in vacuum.items()} == {
        '"a.b".c': ("open", vacuum['"a.b".c']["id"]), 'a."b.c"': ("open", vacuum['a."b.c"']["id"]),
        'public."Orders"': ("dismissed", ids["public.Orders"]), "a.b.c": ("resolved", ids["a.b.c"])}
    for target in ('"a.b".c', 'a."b.c"'):
        assert vacuum[target]["finding"].count("dead tuples") == 1
        conn.execute(f"VACUUM {target}")  # the target is a name to paste
    unused = {r["target"]: r for r in findings(conn, "unused_index")}
    assert set(unused) == {'"a.b".i', 'a."b.i"', 'public."Orders_v"'}, unused
    assert unused['public."Orders_v"']["id"] == ids["public.Orders_v"]
    conn.execute("SELECT perfmon.analyze()")
    assert conn.execute("SELECT alert_id, state <> 'resolved' FROM perfmon.alert_log "
                        "WHERE target = 'unused_index: public.\"Orders_v\"'").fetchall() == [(alert, True)]
    flush(conn)
    refresh(conn)
    assert {r["target"] for r in findings(conn, "vacuum_health")} == set()


def test_duplicate_overlapping_and_invalid_indexes(probe: psycopg.Connection) -> None:
    conn = probe
    refresh(conn)
    assert findings(conn, "duplicate_index") == [] and findings(conn, "invalid_index") == []
    conn.execute("CREATE INDEX probe_id_again ON probe (id)")       # duplicate of the pkey
    conn.execute("CREATE INDEX probe_v ON probe (v)")               # leads probe_v_id
    conn.execute("CREATE INDEX probe_v_id ON probe (v, id)")
    conn.execute("CREATE INDEX probe_lower_v ON probe (lower(v))")  # an expression: different
    conn.execute("INSERT INTO probe VALUES (1000, 'dup'), (1001, 'dup')")
    try:
        conn.execute("CREATE UNIQUE INDEX CONCURRENTLY probe_v_unique ON probe (v)")
    except psycopg.errors.UniqueViolation:
        pass  # leaves an invalid index behind
    refresh(conn)
    dup = {r["target"]: r for r in findings(conn, "duplicate_index")}
    assert set(dup) == {"public.probe_id_again", "public.probe_v"}, dup
    assert dup["public.probe_id_again"]["severity"] == "warning"
    assert dup["public.probe_id_again"]["evidence"]["covered_by"] == "probe_pkey"
    assert dup["public.probe_v"]["evidence"]["covered_by"] == "probe_v_id"
    invalid = findings(conn, "invalid_index")
    assert [r["target"] for r in invalid] == ["public.probe_v_unique"]
    assert invalid[0]["apply_sql"].startswith("REINDEX INDEX CONCURRENTLY public.probe_v_unique;")
    conn.execute("DROP INDEX probe_id_again")
    refresh(conn)
    assert [r["target"] for r in findings(conn, "duplicate_index", "resolved")] == [
        "public.probe_id_again"]


def test_indexes_that_only_look_alike_are_not_duplicates(probe: psycopg.Connection) -> None:
    """Another collation, sort order, NULLS NOT DISTINCT, or the replica identity: each index
    does what the other cannot, and was advised dropped. A partitioned table's duplicate is
    reported once, on the parent, with a DROP that runs."""
    conn = probe
    conn.execute("CREATE TABLE t (a int, b int, name text)")
    conn.execute("CREATE INDEX t_name ON t (name)")
    conn.execute('CREATE INDEX t_name_c ON t (name COLLATE "C")')    # serves LIKE 'x%'
    conn.execute("CREATE INDEX t_a_b ON t (a, b)")
    conn.execute("CREATE INDEX t_a_bdesc ON t (a, b DESC)")          # serves ORDER BY a, b DESC
    conn.execute("CREATE UNIQUE INDEX t_b ON t (b)")
    conn.execute("CREATE UNIQUE INDEX t_b_nnd ON t (b) NULLS NOT DISTINCT")  # one NULL at most
    conn.execute("CREATE TABLE r (a int PRIMARY KEY)")
    conn.execute("CREATE UNIQUE INDEX r_a ON r (a)")
    conn.execute("ALTER TABLE r REPLICA IDENTITY USING INDEX r_a")  # logical replication needs it
    conn.execute("CREATE TABLE pt (a int, b int) PARTITION BY RANGE (a)")
    conn.execute("CREATE TABLE pt1 PARTITION OF pt FOR VALUES FROM (0) TO (1000)")
    conn.execute("CREATE INDEX pt_a ON pt (a)")
    conn.execute("CREATE INDEX pt_a_b ON pt (a, b)")
    refresh(conn)
    dup = {r["target"]: r for r in findings(conn, "duplicate_index")}
    assert set(dup) == {"public.pt_a"}, sorted(dup)
    conn.execute(dup["public.pt_a"]["apply_sql"])


def test_an_unused_index_of_a_partition_is_not_advised_dropped(probe: psycopg.Connection) -> None:
    """DROP INDEX on a partition's index fails: its parent index requires it."""
    conn = probe
    set_config(conn, "optimization.unused_index_min_days", 0)
    conn.execute("CREATE TABLE pt (a int, b int) PARTITION BY RANGE (a)")
    conn.execute("CREATE TABLE pt1 PARTITION OF pt FOR VALUES FROM (0) TO (100000)")
    conn.execute("CREATE INDEX pt_b ON pt (b)")
    conn.execute("CREATE INDEX probe_v_unused ON probe (v)")  # the control: advised
    sampled(conn, lambda: conn.execute(
        "INSERT INTO pt SELECT g, g FROM generate_series(1, 1000) g; "
        "INSERT INTO probe SELECT g, 'x' FROM generate_series(5000, 5100) g"))
    unused = [r["index_name"] for r in view(conn, "unused_indexes", "severity <> 'ok'")]
    assert "probe_v_unused" in unused and "pt1_b_idx" not in unused, unused


def test_table_and_index_bloat(conn: psycopg.Connection) -> None:
    set_config(conn, "optimization.bloat_min_bytes", 1_000_000)
    conn.execute("CREATE TABLE lean (id int PRIMARY KEY, t text)")
    conn.execute("CREATE TABLE bloated (id int PRIMARY KEY, t text)")
    for table in ("lean", "bloated"):
        conn.execute(f"INSERT INTO {table} SELECT g, repeat('x', 60) FROM generate_series(1, 100000) g")
    conn.execute("DELETE FROM bloated WHERE id % 10 <> 0")
    conn.execute("VACUUM ANALYZE lean")
    conn.execute("VACUUM ANALYZE bloated")
    refresh(conn)
    tables = {r["target"]: r for r in findings(conn, "table_bloat")}
    assert list(tables) == ["public.bloated"], tables
    row = view(conn, "table_bloat", "table_name = 'bloated'")[0]
    assert row["bloat_pct"] >= 80 and row["bloat_bytes"] > 5_000_000
    lean = view(conn, "table_bloat", "table_name = 'lean'")[0]
    assert lean["bloat_pct"] < 15 and lean["severity"] == "ok"
    indexes = [r["target"] for r in findings(conn, "index_bloat")]
    assert indexes == ["public.bloated_pkey"], indexes


def test_vacuum_health(conn: psycopg.Connection) -> None:
    for table in ("healthy", "neglected"):
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, t text) "
                     "WITH (autovacuum_enabled = false)")
        conn.execute(f"INSERT INTO {table} SELECT g, 'x' FROM generate_series(1, 20000) g")
    conn.execute("DELETE FROM neglected WHERE id % 2 = 0")
    flush(conn)
    refresh(conn)
    rows = findings(conn, "vacuum_health")
    assert [r["target"] for r in rows] == ["public.neglected"], rows
    assert rows[0]["severity"] == "critical"  # autovacuum is disabled for it
    assert "autovacuum is disabled" in rows[0]["finding"]
    assert rows[0]["evidence"]["n_dead_tup"] == 10000
    assert "RESET (autovacuum_enabled)" in rows[0]["apply_sql"]
    conn.execute("VACUUM neglected")
    flush(conn)
    refresh(conn)
    assert findings(conn, "vacuum_health") == []
    assert findings(conn, "vacuum_health", "resolved")[0]["target"] == "public.neglected"


def _sample(conn: psycopg.Connection) -> None:
    flush(conn)
    collect(conn)


def test_vacuum_that_cannot_keep_up_names_the_snapshot_holding_it_back() -> None:
    # Autovacuum must really run, again and again: a server of its own that looks every second.
    with dedicated_cluster({"autovacuum_naptime": "1"}) as cluster, installed_on(cluster) as conn, \
            psycopg.connect(cluster.dsn(conn.info.dbname)) as holder:
        conn.execute("CREATE TABLE queue (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO queue SELECT g, 'x' FROM generate_series(1, 20000) g")
        conn.execute("ANALYZE queue")
        _sample(conn)
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM queue")  # its snapshot: rows deleted later stay
        stats = ("SELECT pg_stat_get_dead_tuples('queue'::regclass), "
                 "pg_stat_get_autovacuum_count('queue'::regclass)")
        refresh(conn)
        assert findings(conn, "vacuum_health") == []
        conn.execute("DELETE FROM queue WHERE id <= 6000")
        _sample(conn)
        runs = conn.execute(stats).fetchone()[1]  # it may have run after the INSERT already
        wait_for("autovacuum ran on queue after the snapshot",
                 lambda: conn.execute(stats).fetchone()[1] > runs)
        for last in (8000, 10000):  # more deletes; autovacuum runs and cannot remove them
            conn.execute("DELETE FROM queue WHERE id <= %s", (last,))
            _sample(conn)
        refresh(conn)
        row = one_finding(conn, "vacuum_health", "public.queue")
        pid = holder.info.backend_pid
        assert row["severity"] == "critical", row
        assert "dead tuples grew from 6000 to 10000" in row["finding"]
        assert f"cannot remove them while session {pid}" in row["finding"]
        assert row["evidence"]["xmin_held_by"].startswith(f"session {pid} ")
        assert f"pg_terminate_backend({pid})" in row["apply_sql"]
        health = view(conn, "vacuum_health", "table_name = 'queue'")[0]
        assert health["cannot_keep_up"] and health["autovacuum_runs_in_window"] >= 1
        # The snapshot goes: autovacuum removes the dead rows, the finding resolves.
        holder.rollback()
        wait_for("autovacuum removed the dead rows", lambda: conn.execute(stats).fetchone()[0] == 0)
        _sample(conn)
        refresh(conn)
        assert findings(conn, "vacuum_health") == []
        assert [r["id"] for r in findings(conn, "vacuum_health", "resolved")] == [row["id"]]

        # Autovacuum off for the whole server (only here: the server is this test's own).
        assert "autovacuum" not in {r["target"] for r in findings(conn, "configuration")}
        for value in ("off", "on"):
            conn.execute(f"ALTER SYSTEM SET autovacuum = {value}")
            conn.execute("SELECT pg_reload_conf()")
            wait_for(f"autovacuum = {value}",
                     lambda v=value: conn.execute("SHOW autovacuum").fetchone()[0] == v)
            refresh(conn)
            off = [r for r in findings(conn, "configuration") if r["target"] == "autovacuum"]
            if value == "off":
                assert [(r["severity"], r["apply_sql"]) for r in off] == [
                    ("critical", "ALTER SYSTEM SET autovacuum = 'on'; SELECT pg_reload_conf();")], off
            else:
                assert off == []


def one_finding(conn: psycopg.Connection, rule: str, target: str) -> dict:
    rows = [r for r in findings(conn, rule) if r["target"] == target]
    assert len(rows) == 1, (target, findings(conn, rule))
    return rows[0]


def test_wraparound_risk(conn: psycopg.Connection) -> None:
    refresh(conn)
    assert findings(conn, "wraparound") == []
    me = view(conn, "wraparound_risk", "database = current_database()")[0]
    assert 0 < me["xid_age"] < me["freeze_max_age"]
    # Warn from a tiny share of autovacuum_freeze_max_age: every database is past it.
    set_config(conn, "optimization.wraparound_warning_pct", 0.00001)
    refresh(conn)
    rows = {r["target"]: r for r in findings(conn, "wraparound")}
    mine = rows[f"database {conn.info.dbname}"]
    assert mine["severity"] == "warning"
    assert mine["evidence"]["oldest_tables"] and "VACUUM (FREEZE" in mine["apply_sql"]
    # A sampled consumption of 667M XIDs a day leaves days, not years.
    set_config(conn, "optimization.wraparound_warning_pct", 100)
    collect(conn)
    conn.execute("""
        INSERT INTO perfmon.server_history (server_id, ts, max_connections, sessions_total,
            sessions_active, sessions_idle, sessions_idle_in_xact, sessions_waiting,
            blocked_sessions, max_xid_age)
        SELECT 1, now() - g * interval '30 minutes', 100, 1, 1, 0, 0, 0, 0,
               1000 + (3 - g) * 20833333
        FROM generate_series(1, 3) g""")
    # 41.7M XIDs over the 90 minutes since the first of these samples (the drop to the
    # real age at the latest sample is a freeze, not consumption): 667M a day.
    risk = view(conn, "wraparound_risk", "database = current_database()")[0]
    assert 600_000_000 < risk["xids_per_day"] < 700_000_000
    assert 2.5 < risk["xid_days_left"] < 4
    refresh(conn)
    rows = findings(conn, "wraparound")
    assert rows and all(r["severity"] == "critical" for r in rows)
    assert rows[0]["benefit_unit"] == "days of headroom"


def test_sequence_exhaustion(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE tickets (id serial PRIMARY KEY, big bigserial)")
    conn.execute("INSERT INTO tickets DEFAULT VALUES")
    refresh(conn)
    assert findings(conn, "sequence") == []
    # The sequence is bigint-capable, but its column is an integer.
    conn.execute("SELECT setval('tickets_id_seq', 2000000000)")
    refresh(conn)
    rows = findings(conn, "sequence")
    assert [r["target"] for r in rows] == ["public.tickets_id_seq"]
    assert rows[0]["severity"] == "critical"
    assert "ALTER TABLE public.tickets ALTER COLUMN id TYPE bigint" in rows[0]["apply_sql"]
    assert rows[0]["benefit"] == 2147483647 - 2000000000


def _server_rows(conn: psycopg.Connection, total: int, active: int, idle: int) -> None:
    collect(conn)  # today's partition exists
    conn.execute("""
        INSERT INTO perfmon.server_history (server_id, ts, max_connections, sessions_total,
            sessions_active, sessions_idle, sessions_idle_in_xact, sessions_waiting, blocked_sessions)
        SELECT 1, now() - g * interval '1 minute', current_setting('max_connections')::int,
               %s, %s, %s, 0, 0, 0
        FROM generate_series(1, 30) g""", (total, active, idle))


def test_connection_pool_advice(conn: psycopg.Connection) -> None:
    _server_rows(conn, total=5, active=2, idle=3)
    refresh(conn)
    assert findings(conn, "connection_pool") == []
    max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
    _server_rows(conn, total=int(max_connections * 0.9), active=6, idle=int(max_connections * 0.8))
    refresh(conn)
    rows = findings(conn, "connection_pool")
    assert len(rows) == 1 and rows[0]["severity"] == "warning", rows
    pool = view(conn, "connection_pool_advice")[0]
    assert pool["peak_active_sessions"] >= 6
    assert pool["suggested_pool_size"] == -(-pool["peak_active_sessions"] * 5 // 4)
    assert f"default_pool_size = {pool['suggested_pool_size']}" in rows[0]["apply_sql"]
    # Half of max_connections open, two active: not near the limit, but mostly idle -> info.
    conn.execute("DELETE FROM perfmon.server_history")
    _server_rows(conn, total=max_connections // 2, active=2, idle=max_connections // 2 - 2)
    refresh(conn)
    idle = findings(conn, "connection_pool")
    assert [(r["id"], r["severity"]) for r in idle] == [(rows[0]["id"], "info")], idle
    assert "a pooler" in idle[0]["finding"]


def test_cache_hit_ratio(probe: psycopg.Connection) -> None:
    conn = probe
    collect(conn)
    rel_id = conn.execute("SELECT rel_id FROM perfmon.relations WHERE rel_name = 'probe'").fetchone()[0]
    insert = """INSERT INTO perfmon.table_history (server_id, ts, rel_id, heap_blks_hit, heap_blks_read)
                VALUES (1, now(), %s, %s, %s)"""
    conn.execute(insert, (rel_id, 100_000, 500))  # 99.5%: fine
    refresh(conn)
    assert findings(conn, "cache_hit") == []
    conn.execute(insert, (rel_id, 10_000, 60_000))  # now 55%
    refresh(conn)
    rows = findings(conn, "cache_hit")
    assert [r["target"] for r in rows] == ["table public.probe"]
    assert rows[0]["evidence"]["blocks_read"] == 60_500
    # Its index, read from disk for 80% of its blocks, too.
    index_id = conn.execute("SELECT rel_id FROM perfmon.relations "
                            "WHERE rel_name = 'probe_pkey'").fetchone()[0]
    conn.execute("INSERT INTO perfmon.index_history (server_id, ts, rel_id, idx_blks_hit, idx_blks_read) "
                 "VALUES (1, now(), %s, 2000, 8000)", (index_id,))
    refresh(conn)
    rows = {r["target"]: r for r in findings(conn, "cache_hit")}
    assert set(rows) == {"table public.probe", "index public.probe_pkey"}
    assert rows["index public.probe_pkey"]["evidence"]["hit_pct"] == 20


def test_config_advice_work_mem_and_checkpoints(conn: psycopg.Connection) -> None:
    def quiet() -> None:
        conn.execute("SELECT count(*) FROM generate_series(1, 10) g")

    sampled(conn, quiet)
    refresh(conn)
    targets = {r["target"] for r in findings(conn, "configuration")}
    assert not targets & {"work_mem", "max_wal_size"}, targets

    def spill_and_checkpoint() -> None:
        conn.execute("SET work_mem = '64kB'")
        for _ in range(2):
            conn.execute("SELECT g FROM generate_series(1, 200000) g ORDER BY g DESC").fetchall()
        conn.execute("RESET work_mem")
        for _ in range(3):
            conn.execute("CHECKPOINT")

    sampled(conn, spill_and_checkpoint)
    refresh(conn)
    rows = {r["target"]: r for r in findings(conn, "configuration")}
    assert rows["work_mem"]["evidence"]["max_temp_bytes_per_call"] > 1_000_000
    assert "ALTER SYSTEM SET work_mem" in rows["work_mem"]["apply_sql"]
    assert rows["max_wal_size"]["evidence"]["checkpoints_requested"] >= 3
    advice = {r["setting_name"]: r for r in view(conn, "config_advice")}
    wal = advice["max_wal_size"]
    assert wal["suggested_value"].replace(" ", "") != wal["current_value"]


def test_config_advice_shared_buffers_against_ram(conn: psycopg.Connection) -> None:
    collect(conn)
    refresh(conn)  # reads the real host: RAM, disk
    ram = conn.execute("SELECT ram_bytes FROM perfmon.host_capacity").fetchone()[0]
    assert ram and ram > 0
    shared = conn.execute("SELECT setting::bigint * 8192 FROM pg_settings "
                          "WHERE name = 'shared_buffers'").fetchone()[0]
    # Pretend the host has 4x shared_buffers of RAM: 25%, nothing to say.
    conn.execute("ALTER TABLE perfmon.advisor_rules DISABLE TRIGGER ALL")
    conn.execute("UPDATE perfmon.advisor_rules SET refresh_function = NULL WHERE name = 'storage_forecast'")
    conn.execute("UPDATE perfmon.host_capacity SET ram_bytes = %s", (shared * 4,))
    refresh(conn)
    assert "shared_buffers" not in {r["target"] for r in findings(conn, "configuration")}
    conn.execute("UPDATE perfmon.host_capacity SET ram_bytes = %s", (shared * 40,))
    refresh(conn)
    row = next(r for r in findings(conn, "configuration") if r["target"] == "shared_buffers")
    assert row["severity"] == "info" and "2.5%" in row["finding"]


def test_config_advice_autovacuum_scale_factor_for_hot_tables(conn: psycopg.Connection) -> None:
    # Autovacuum off: a vacuum or analyze of its own after the churn would re-estimate
    # reltuples (148,934 once, in CI), the row count the advice quotes.
    for table in ("hot", "cool"):
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, n int) WITH (autovacuum_enabled = off)")
        conn.execute(f"INSERT INTO {table} SELECT g, 0 FROM generate_series(1, 120000) g")
    conn.execute("ANALYZE hot, cool")

    def churn() -> None:
        conn.execute("UPDATE hot SET n = n + 1 WHERE id <= 30000")  # 25%: past the default 20%
        conn.execute("UPDATE cool SET n = n + 1 WHERE id <= 1000")

    sampled(conn, churn)
    refresh(conn)
    hot = "autovacuum_vacuum_scale_factor on public.hot"
    rows = {r["target"]: r for r in findings(conn, "configuration")
            if r["target"].startswith("autovacuum_vacuum_scale_factor")}
    assert list(rows) == [hot], rows
    assert rows[hot]["evidence"] == {"rows": 120000, "churn_rows": 30000}
    assert rows[hot]["apply_sql"] == ("ALTER TABLE public.hot SET (autovacuum_vacuum_scale_factor = "
                                      "0.02, autovacuum_vacuum_threshold = 1000);")
    conn.execute(rows[hot]["apply_sql"])  # the DBA applies it: the next refresh resolves it
    refresh(conn)
    assert hot not in {r["target"] for r in findings(conn, "configuration")}
    assert hot in {r["target"] for r in findings(conn, "configuration", "resolved")}


def test_inactive_replication_slot(conn: psycopg.Connection) -> None:
    name = f"perfmon_test_{conn.info.dbname}"
    refresh(conn)
    assert findings(conn, "replication") == []
    conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (name,))
    try:
        conn.execute("CREATE TABLE w AS SELECT g FROM generate_series(1, 10000) g")
        conn.execute("SELECT pg_switch_wal()")
        refresh(conn)
        rows = findings(conn, "replication")
        assert [r["target"] for r in rows] == [f"slot {name}"]
        assert rows[0]["evidence"]["retained_wal_bytes"] > 0
        assert rows[0]["apply_sql"] == f"SELECT pg_drop_replication_slot('{name}');"
    finally:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
    refresh(conn)
    assert findings(conn, "replication") == []


def test_storage_forecast(conn: psycopg.Connection) -> None:
    conn.execute("SELECT perfmon.collect_sizes()")
    datid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]
    insert = """INSERT INTO perfmon.size_history (server_id, ts, kind, object_id, size_bytes)
                SELECT 1, now() - g * interval '5 minutes', 'd', %s, %s::bigint - g * %s::bigint
                FROM generate_series(1, 12) g"""
    conn.execute(insert, (datid, 10_000_000, 0))  # flat
    refresh(conn)
    assert findings(conn, "storage_forecast") == []
    forecast = view(conn, "storage_forecast")[0]
    assert forecast["free_space_known"] and forecast["disk_free_bytes"] > 0
    free = forecast["disk_free_bytes"]
    conn.execute("DELETE FROM perfmon.size_history WHERE kind = 'd' AND object_id = %s", (datid,))
    # Growing by 1% of the free space every 5 minutes: full in about 8 hours.
    conn.execute(insert, (datid, 10 * free, free // 100))
    refresh(conn)
    rows = findings(conn, "storage_forecast")
    assert len(rows) == 1 and rows[0]["severity"] == "critical", rows
    assert 0.25 < rows[0]["benefit"] < 0.45 and rows[0]["benefit_unit"] == "days of headroom"


def test_backup_status(conn: psycopg.Connection) -> None:
    refresh(conn)
    rows = {r["target"]: r for r in findings(conn, "backup")}
    assert rows["base_backup"]["severity"] == "warning"
    assert "no successful backup" in rows["base_backup"]["finding"]
    conn.execute("SELECT perfmon.record_backup('pgbackrest', true, now() - interval '1 hour', now(), "
                 "123456, 'full', true, false)")
    refresh(conn)
    assert "base_backup" not in {r["target"] for r in findings(conn, "backup")}
    status = {r["component"]: r for r in view(conn, "backup_status")}
    assert status["base_backup"]["state"] == "ok"
    assert status["base_backup"]["details"]["tool"] == "pgbackrest"
    assert status["wal_archiving"]["state"] == "off"
    conn.execute("UPDATE perfmon.backup_log SET finished_at = now() - interval '3 days'")
    refresh(conn)
    stale = next(r for r in findings(conn, "backup") if r["target"] == "base_backup")
    assert "more than 26 hours" in stale["finding"]


def test_slow_query_insights(probe: psycopg.Connection) -> None:
    conn = probe
    # grp_again always equals grp: the planner, taking them as independent, expects 1 row of
    # "grp = $1 AND grp_again = $2" where 150 come back.
    conn.execute("CREATE TABLE big (id int, grp int, grp_again int, payload text)")
    conn.execute("INSERT INTO big SELECT g, g % 1000, g % 1000, 'x' || g FROM generate_series(1, 150000) g")
    conn.execute("ANALYZE big")
    set_config(conn, "database.performance_thresholds.slow_query_ms", 1)

    def work() -> None:
        for i in range(3):
            conn.execute("SELECT * FROM big WHERE grp = %s", (i,)).fetchall()
            conn.execute("SELECT * FROM big WHERE grp = %s AND grp_again = %s", (i, i)).fetchall()
        conn.execute("SET work_mem = '64kB'")
        conn.execute("SELECT id, payload FROM big ORDER BY payload DESC").fetchall()  # sorts on disk
        conn.execute("RESET work_mem")
        conn.execute("SELECT count(*) FROM probe WHERE id = %s", (1,))

    sampled(conn, work)
    refresh(conn)
    insights = view(conn, "slow_query_insights")
    problems: dict[str, set[str]] = {}
    for i in insights:
        problems.setdefault(i["query"], set()).add(i["problem"])
    assert problems == {
        "SELECT * FROM big WHERE grp = $1": {"seq_scan_large_table"},
        "SELECT * FROM big WHERE grp = $1 AND grp_again = $2": {"seq_scan_large_table",
                                                                 "row_misestimate"},
        "SELECT id, payload FROM big ORDER BY payload DESC": {"seq_scan_large_table",
                                                               "spill_to_disk"},
    }, insights
    seq = [i for i in insights if i["problem"] == "seq_scan_large_table"]
    assert {i["relation"] for i in seq} == {"public.big"}
    assert all("grp" in i["advice"] and "index_recommendations" in i["advice"]
               for i in seq if "WHERE" in i["query"])
    wrong = next(i for i in insights if i["problem"] == "row_misestimate")
    assert wrong["evidence"]["plan_rows"] <= 1 and wrong["evidence"]["rows_per_call"] == 150
    assert "CREATE STATISTICS" in wrong["advice"]
    spill = next(i for i in insights if i["problem"] == "spill_to_disk")
    assert spill["evidence"]["temp_bytes_per_call"] > 1_000_000
    assert "SET LOCAL work_mem" in spill["advice"]
    recs = findings(conn, "slow_query_plan")
    assert any("sequential scan of public.big" in r["finding"] for r in recs)
    assert {r["severity"] for r in recs if "row_misestimate" in r["target"]
            or "spill_to_disk" in r["target"]} == {"info"}


def test_slow_query_insights_on_names_that_read_alike_unquoted(probe: psycopg.Connection) -> None:
    """One query reading all of "a.b".c and all of a."b.c": two sequential scans, two findings;
    unquoted both were relation a.b.c, and one was dropped."""
    conn = probe
    conn.execute('CREATE SCHEMA "a.b"')
    conn.execute("CREATE SCHEMA a")
    for table in ('"a.b".c', 'a."b.c"'):
        conn.execute(f"CREATE TABLE {table} (id int, v text)")
        conn.execute(f"INSERT INTO {table} SELECT g, 'x' || g FROM generate_series(1, 120000) g")
        conn.execute(f"ANALYZE {table}")
    set_config(conn, "database.performance_thresholds.slow_query_ms", 1)
    sampled(conn, lambda: [conn.execute('SELECT count(*) FROM "a.b".c JOIN a."b.c" USING (id) '
                                        "WHERE c.v <> %s", ("y",)).fetchall() for _ in range(3)])
    refresh(conn)
    seq = view(conn, "slow_query_insights", "problem = 'seq_scan_large_table'")
    assert sorted(i["relation"] for i in seq) == ['"a.b".c', 'a."b.c"'], seq
    targets = sorted(r["target"] for r in findings(conn, "slow_query_plan"))
    assert [t.split(" on ")[1] for t in targets] == ['"a.b".c', 'a."b.c"'], targets


def test_scheduled_refresh_runs_as_perfmon_admin_and_readers_read(probe: psycopg.Connection) -> None:
    conn = probe
    conn.execute("CREATE TABLE private (id int, secret int)")
    conn.execute("INSERT INTO private SELECT g, g FROM generate_series(1, 20000) g")
    sampled(conn, lambda: [conn.execute("SELECT * FROM private WHERE secret = %s", (i,))
                           for i in range(3)])
    job = conn.execute("SELECT command FROM perfmon.job_plan "
                       "WHERE name = 'refresh_recommendations'").fetchone()
    assert job == ("SELECT perfmon.refresh_recommendations()",)
    conn.execute("SET ROLE perfmon_admin")  # whom pg_cron runs the job as
    try:
        refresh(conn)
        result = conn.execute("SELECT perfmon.advise_indexes()").fetchone()[0]
    finally:
        conn.execute("RESET ROLE")
    # perfmon_admin may not read the table, so it cannot plan queries on it: skipped, said so.
    assert result["skipped"].get("cannot be planned: InsufficientPrivilege", 0) >= 1, result
    views = [v for (v,) in conn.execute("SELECT view_name FROM perfmon.advisor_rules")]
    conn.execute("SET ROLE perfmon_reader")
    try:
        for name in views:
            conn.execute(f"SELECT * FROM {name}").fetchall()
        conn.execute("SELECT * FROM perfmon.recommendations").fetchall()
    finally:
        conn.execute("RESET ROLE")


def test_every_sql_example_of_the_advisor_docs_runs(conn: psycopg.Connection) -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "advisor.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", text, re.S)
    assert len(blocks) >= 8
    collect(conn)
    for block in blocks:
        conn.execute(block)
    assert conn.execute("SELECT count(*) FROM perfmon.backup_log "
                        "WHERE tool = 'pgbackrest' AND ok").fetchone() == (1,)


def test_wraparound_advice_for_another_database_stays_one_comment_line(conn: psycopg.Connection,
                                                                      server) -> None:
    """A newline in a database's name ended apply_sql's comment, and the rest of the name ran
    as a statement; template0, which accepts no connections, was told to be connected to."""
    hostile = "evil\nDROP TABLE important; --"
    server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(hostile)).as_string(None))
    try:
        advice = dict(conn.execute("SELECT database, apply_sql FROM perfmon.wraparound_risk").fetchall())
        assert advice[hostile].startswith("-- connect to ") and "\n" not in advice[hostile], advice[hostile]
        assert advice["template0"].startswith("-- template0 accepts no connections"), advice["template0"]
    finally:
        server.drop_database(hostile)


def test_a_temporary_table_among_the_oldest_is_named_not_vacuumed(conn: psycopg.Connection,
                                                                   installed: str) -> None:
    """VACUUM skips another session's temporary table: the freeze advice listed one it could
    not process. It is named in the evidence, left out of apply_sql."""
    with psycopg.connect(installed) as other:
        other.execute("CREATE TEMP TABLE held_back (a int)")
        other.commit()
        for _ in range(3):
            conn.execute("SELECT txid_current()")
        conn.execute("VACUUM (FREEZE)")  # every table gets younger but the other session's
        evidence, apply_sql = conn.execute(
            "SELECT evidence, apply_sql FROM perfmon.wraparound_risk WHERE database = current_database()"
        ).fetchone()
    oldest = evidence["oldest_tables"][0]
    assert oldest["table"].endswith(".held_back") and oldest["temporary"] is True, evidence
    assert "held_back" not in apply_sql and apply_sql.startswith("VACUUM (FREEZE, VERBOSE) "), apply_sql
