"""Index advice: hypopg-checked candidates from generic plans, identity across refreshes,
dismissal, resolution once applied, write-heavy tables, the no-hypopg fallback."""

from __future__ import annotations

import psycopg
from advisor_helpers import findings, refresh, sampled, view

from perfmon_py import plans


def make_orders(conn: psycopg.Connection, rows: int = 200_000) -> None:
    conn.execute("""
        CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, region int NOT NULL,
                             category int NOT NULL, status int NOT NULL, amount numeric NOT NULL)""")
    conn.execute(f"""
        INSERT INTO orders SELECT g, g % 20000, (g * 3) % 20, (g * 11) % 50, g % 5, g % 1000
        FROM generate_series(1, {rows}) g""")
    conn.execute("ANALYZE orders")


def order_workload(conn: psycopg.Connection) -> None:
    for i in range(5):
        conn.execute("SELECT * FROM orders WHERE customer_id = %s", (i,))
        conn.execute("SELECT count(*) FROM orders WHERE region = %s AND category = %s", (i, i))
        conn.execute("SELECT * FROM orders WHERE id = %s", (i,))  # served by the primary key
        conn.execute("SELECT sum(amount) FROM orders WHERE status = %s", (i,))  # unselective


def index_advice(conn: psycopg.Connection) -> dict[tuple[str, ...], dict]:
    return {tuple(r["columns"]): r for r in view(conn, "index_recommendations")}


def test_advice_finds_single_and_two_column_indexes_and_nothing_else(probe: psycopg.Connection) -> None:
    conn = probe
    make_orders(conn)
    sampled(conn, lambda: order_workload(conn))
    result = refresh(conn)
    assert result["rules"]["index_advice"]["findings"] == 2, result
    advice = index_advice(conn)
    assert set(advice) == {("customer_id",), ("region", "category")}, advice
    single = advice[("customer_id",)]
    assert single["recommended"] and single["method"] == "hypopg" and single["confidence"] == "high"
    assert single["improvement_pct"] >= 20
    assert single["cost_after"] < single["cost_before"]
    assert single["est_size_bytes"] > 0
    assert single["calls"] == 5 and single["statements_served"] == 1
    assert "customer_id = $1" in single["queries"][0]["query"]
    assert single["apply_sql"] == "CREATE INDEX CONCURRENTLY ON public.orders (customer_id);"
    recs = findings(conn, "index_advice")
    assert {r["target"] for r in recs} == {"public.orders(customer_id)",
                                           "public.orders(region, category)"}
    assert all(r["kind"] == "index" and r["benefit_unit"] == "% cost reduction" for r in recs)


def test_identity_is_stable_dismissed_stays_and_applying_resolves(probe: psycopg.Connection) -> None:
    conn = probe
    make_orders(conn)
    sampled(conn, lambda: order_workload(conn))
    refresh(conn)
    first = {r["target"]: r for r in findings(conn, "index_advice")}
    refresh(conn)
    second = {r["target"]: r for r in findings(conn, "index_advice")}
    assert set(first) == set(second)
    for target, row in first.items():
        assert second[target]["id"] == row["id"]
        assert second[target]["first_seen"] == row["first_seen"]
        assert second[target]["last_seen"] > row["last_seen"]
    assert conn.execute("SELECT count(*) FROM perfmon.recommendation_log "
                        "WHERE rule = 'index_advice'").fetchone() == (2,)

    pair = first["public.orders(region, category)"]
    conn.execute("SELECT perfmon.dismiss(%s, 'reporting query, runs at night')", (pair["id"],))
    single = first["public.orders(customer_id)"]
    conn.execute("CREATE INDEX ON orders (customer_id)")  # the DBA applies the advice
    refresh(conn)
    rows = {r["target"]: r for r in findings(conn, "index_advice", status=None)}
    assert rows[pair["target"]]["status"] == "dismissed"
    assert rows[pair["target"]]["status_reason"] == "reporting query, runs at night"
    assert rows[pair["target"]]["last_seen"] > pair["last_seen"]  # still tracked
    assert rows[single["target"]]["status"] == "resolved"
    assert ("customer_id",) not in index_advice(conn)
    refresh(conn)
    assert findings(conn, "index_advice", status="dismissed")[0]["id"] == pair["id"]


def test_existing_index_and_unpreparable_statements(probe: psycopg.Connection) -> None:
    conn = probe
    make_orders(conn)
    conn.execute("CREATE INDEX orders_customer ON orders (customer_id, status)")

    def work() -> None:
        for i in range(4):
            conn.execute("SELECT * FROM orders WHERE customer_id = %s", (i,))
            conn.execute("SELECT * FROM orders WHERE customer_id = %s AND status = %s", (i, 1))
        conn.execute("CREATE TEMP TABLE scratch AS SELECT * FROM orders LIMIT 10")
        conn.execute("SELECT * FROM scratch WHERE customer_id = 1")  # gone at refresh time
        conn.execute("VACUUM orders")
        conn.execute("SELECT %s::text || 'x'", ("a",))

    sampled(conn, work)
    conn.execute("DROP TABLE scratch")
    result = conn.execute("SELECT perfmon.advise_indexes()").fetchone()[0]
    assert result["method"] == "hypopg"
    assert result["explained"] >= 2
    assert any(k.startswith("cannot be planned") for k in result["skipped"]), result
    assert result["skipped"].get("not a query or DML statement", 0) >= 1, result
    assert view(conn, "index_recommendations") == []


def test_write_heavy_table_gets_no_index(probe: psycopg.Connection) -> None:
    conn = probe
    conn.execute("CREATE TABLE events (id bigserial PRIMARY KEY, session_id int, kind int)")
    conn.execute("INSERT INTO events (session_id, kind) "
                 "SELECT g % 50000, g % 10 FROM generate_series(1, 200000) g")
    conn.execute("ANALYZE events")

    def work() -> None:
        for _ in range(10):
            conn.execute("INSERT INTO events (session_id, kind) SELECT g %% 50000, g %% 10 "
                         "FROM generate_series(1, %s) g", (100_000,))
        conn.execute("SELECT * FROM events WHERE session_id = %s", (7,))

    sampled(conn, work)
    refresh(conn)
    advice = index_advice(conn)
    assert list(advice) == [("session_id",)], advice
    row = advice[("session_id",)]
    assert row["recommended"] is False and row["severity"] == "ok"
    assert row["reason"].startswith("writes dominate")
    assert row["write_rows"] >= 1_000_000 and row["write_overhead_ms"] > row["saved_ms"]
    assert findings(conn, "index_advice") == []


def test_without_hypopg_statistics_give_low_confidence_advice(probe: psycopg.Connection) -> None:
    conn = probe
    make_orders(conn)
    conn.execute("DROP EXTENSION hypopg")
    sampled(conn, lambda: order_workload(conn))
    refresh(conn)
    advice = index_advice(conn)
    assert ("customer_id",) in advice, advice
    row = advice[("customer_id",)]
    assert row["method"] == "statistics" and row["confidence"] == "low" and row["recommended"]
    assert ("status",) not in advice  # 5 distinct values: not selective
    assert findings(conn, "index_advice")[0]["confidence"] == "low"


def test_plan_reading_finds_filter_join_and_sort_columns() -> None:
    found = plans.predicates("((o.customer_id = $1) AND ((o.note)::text = $2) AND (o.total > $3) "
                             "AND (lower(o.email) = $4) AND ($5 <= o.created))")
    assert found.equality == {"o": ["customer_id", "note"]}
    assert found.range == {"o": ["total", "created"]}
    joined = plans.predicates("(o.customer_id = c.id)")
    assert joined.join == {"o": ["customer_id"], "c": ["id"]}
    assert plans.predicates('(t."Mixed Case" = ANY ($1))').equality == {"t": ["Mixed Case"]}
    rel = plans.Relation("public", "orders", equality=["a", "b"], range=["r"], sort=["s"])
    assert plans.candidates(rel) == [("a",), ("b",), ("s",), ("a", "b"), ("a", "r"), ("a", "s"),
                                     ("b", "r"), ("b", "s")]
    assert plans.covered(("a",), [["a", "b"]]) and not plans.covered(("b",), [["a", "b"]])


def test_advice_on_columns_named_after_keywords_runs(probe: psycopg.Connection) -> None:
    """CREATE INDEX ... (order) is a syntax error and (user) the USER function: the advice
    quotes them, in a schema and table with hostile names too."""
    conn = probe
    conn.execute('CREATE SCHEMA "Sch.""x"')
    tables = ("public.kw", '"Sch.""x"."Tbl"')
    for table in tables:
        conn.execute(f'CREATE TABLE {table} (id int, "order" int, "user" int, pad text)')
        conn.execute(f"INSERT INTO {table} SELECT g, g % 20000, g % 19999, 'x' "
                     "FROM generate_series(1, 200000) g")
        conn.execute(f"ANALYZE {table}")

    def work() -> None:
        for i in range(5):
            for table in tables:
                conn.execute(f'SELECT * FROM {table} WHERE "order" = %s', (i,))
                conn.execute(f'SELECT * FROM {table} WHERE "user" = %s', (i,))

    sampled(conn, work)
    refresh(conn)
    advice = [r["apply_sql"] for r in view(conn, "index_recommendations")]
    assert len(advice) == 4, advice
    for apply_sql in advice:
        conn.execute(apply_sql)  # each runs as written


def test_planning_runs_no_users_code_with_the_advisors_rights(probe: psycopg.Connection) -> None:
    """Planning folds an argument-less IMMUTABLE function: a user's, calling code that
    writes, ran as perfmon_admin under pg_cron, and as the superuser refreshing by hand."""
    conn = probe
    conn.execute("DROP ROLE IF EXISTS mallory")
    conn.execute("CREATE ROLE mallory LOGIN")
    conn.execute("CREATE SCHEMA mallory AUTHORIZATION mallory")
    conn.execute("SET ROLE mallory")
    conn.execute("CREATE TABLE mallory.log (who text)")
    conn.execute("GRANT INSERT, SELECT ON mallory.log TO PUBLIC")
    conn.execute("GRANT USAGE ON SCHEMA mallory TO PUBLIC")
    conn.execute("CREATE FUNCTION mallory.record() RETURNS void LANGUAGE plpgsql VOLATILE AS "
                 "$$ BEGIN INSERT INTO mallory.log VALUES (current_user); END $$")
    conn.execute("CREATE FUNCTION mallory.evil() RETURNS int LANGUAGE plpgsql IMMUTABLE AS "
                 "$$ BEGIN PERFORM mallory.record(); RETURN 1; END $$")
    conn.execute("CREATE TABLE mallory.big AS SELECT g AS a FROM generate_series(1, 100000) g")
    conn.execute("GRANT SELECT ON mallory.big TO PUBLIC")
    conn.execute("RESET ROLE")
    try:
        def work() -> None:
            conn.execute("SET ROLE mallory")
            for _ in range(3):
                conn.execute("SELECT count(*) FROM mallory.big WHERE a = mallory.evil()")
            conn.execute("DELETE FROM mallory.log")
            conn.execute("RESET ROLE")

        sampled(conn, work)
        conn.execute("SET ROLE perfmon_admin")  # as pg_cron runs it
        refresh(conn)
        conn.execute("RESET ROLE")
        refresh(conn)  # as a superuser, by hand
        assert conn.execute("SELECT who FROM mallory.log").fetchall() == []
    finally:
        conn.execute("RESET ROLE")
        conn.execute("DROP SCHEMA mallory CASCADE")
        conn.execute("DROP ROLE mallory")
