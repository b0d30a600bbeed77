"""Index advice against known truths.

A workload of 34 query shapes over three tables of 1M rows: some need a
single-column index, some a two-column one, some are already well served (primary
key, an existing index, predicates too unselective to help, small tables), and
one table is write-heavy, where the indexes its rare reads would like are not
worth their write cost. The workload runs between two samples, then
perfmon.refresh_recommendations() advises. Prints precision and recall of the
recommended indexes against the truth, and the measured speed-up of each
recommended index once created. Targets (issue 5): precision 1.0, recall >= 0.9.

    python3 bench/advisor_precision.py            # throwaway cluster
    python3 bench/advisor_precision.py --dsn DSN  # an existing database (dropped objects!)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime, timedelta, timezone

import psycopg

from common import bench_cluster, fresh_database

ROWS = int(os.environ.get("ADVISOR_ROWS", "1000000"))

SETUP = f"""
DROP TABLE IF EXISTS orders, customers, events, regions;
CREATE TABLE regions (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO regions SELECT g, 'region ' || g FROM generate_series(1, 20) g;
CREATE TABLE customers (
    id int PRIMARY KEY, email text NOT NULL, phone text NOT NULL, country int NOT NULL,
    segment int NOT NULL, last_login timestamptz, note text);
INSERT INTO customers
SELECT g, 'c' || g || '@example.com', lpad((g::bigint * 7919 % {ROWS})::text, 10, '0'),
       (g * 31) % 50, (g * 17) % 10, now() - g * interval '1 minute', repeat('x', 40)
FROM generate_series(1, {ROWS}) g;
CREATE UNIQUE INDEX customers_email ON customers (email);
CREATE TABLE orders (
    id bigint PRIMARY KEY, customer_id int NOT NULL, product_id int NOT NULL,
    status int NOT NULL, region int NOT NULL, product_cat int NOT NULL, warehouse_id int NOT NULL,
    created_at timestamptz NOT NULL, shipped_at timestamptz NOT NULL, amount numeric NOT NULL);
INSERT INTO orders
SELECT g, (g * 7) % ({ROWS} / 10) + 1, (g * 13) % 10000, g % 5, (g * 3) % 20, (g * 11) % 50,
       (g * 19) % 100, now() - g * interval '10 seconds', now() - g * interval '10 seconds',
       (g % 1000) / 10.0
FROM generate_series(1, {ROWS}) g;
CREATE TABLE events (
    id bigserial PRIMARY KEY, user_id int NOT NULL, session_id int NOT NULL, kind int NOT NULL,
    ts timestamptz NOT NULL DEFAULT now(), processed boolean NOT NULL DEFAULT false);
INSERT INTO events (user_id, session_id, kind, ts)
SELECT g % 100000, (g * 7) % 200000, g % 10, now() - g * interval '1 second'
FROM generate_series(1, {ROWS}) g;
"""

N = ROWS
R = random.Random(5)


def cust() -> int:
    return R.randint(1, N // 10)


def phone() -> str:
    return str(R.randint(1, N - 1) * 7919 % N).rjust(10, "0")


def day() -> tuple[datetime, datetime]:
    """A day within the orders' shipping dates (the last ROWS * 10 seconds)."""
    start = datetime.now(timezone.utc) - timedelta(days=R.randint(2, max(3, ROWS * 10 // 86400)))
    return start, start + timedelta(days=1)


# (label, truth, sql, params factory, calls). truth: the index the shape needs,
# as (table, columns, ordered?) - None when it is well served or not worth an index.
Shape = tuple[str, tuple[str, tuple[str, ...], bool] | None, str, Callable[[], tuple], int]
NEED_CUSTOMER = ("orders", ("customer_id",), True)
NEED_PRODUCT = ("orders", ("product_id",), True)
NEED_PHONE = ("customers", ("phone",), True)
NEED_REGION_CAT = ("orders", ("region", "product_cat"), False)
NEED_WAREHOUSE_SHIPPED = ("orders", ("warehouse_id", "shipped_at"), True)
NEED_COUNTRY_SEGMENT = ("customers", ("country", "segment"), False)

SHAPES: list[Shape] = [
    # ---- single-column needs
    ("orders by customer", NEED_CUSTOMER, "SELECT * FROM orders WHERE customer_id = %s",
     lambda: (cust(),), 8),
    ("orders by customer+status", NEED_CUSTOMER,
     "SELECT id, amount FROM orders WHERE customer_id = %s AND status = %s",
     lambda: (cust(), R.randint(0, 4)), 5),
    ("customer order totals", NEED_CUSTOMER,
     "SELECT count(*), sum(amount) FROM orders WHERE customer_id = %s", lambda: (cust(),), 6),
    ("latest orders of customer", NEED_CUSTOMER,
     "SELECT * FROM orders WHERE customer_id = %s ORDER BY created_at DESC LIMIT 10",
     lambda: (cust(),), 6),
    ("orders of a customer joined", NEED_CUSTOMER,
     "SELECT c.email, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id "
     "WHERE c.id = %s", lambda: (cust(),), 5),
    ("orders by product", NEED_PRODUCT, "SELECT * FROM orders WHERE product_id = %s",
     lambda: (R.randint(0, 9999),), 6),
    ("max amount of product", NEED_PRODUCT,
     "SELECT max(amount) FROM orders WHERE product_id = %s", lambda: (R.randint(0, 9999),), 5),
    ("product orders of status", NEED_PRODUCT,
     "SELECT count(*) FROM orders WHERE product_id = %s AND status = %s",
     lambda: (R.randint(0, 9999), R.randint(0, 4)), 4),
    ("customer by phone", NEED_PHONE, "SELECT * FROM customers WHERE phone = %s",
     lambda: (phone(),), 8),
    ("customer by phone+segment", NEED_PHONE,
     "SELECT id FROM customers WHERE phone = %s AND segment = %s",
     lambda: (phone(), R.randint(0, 9)), 4),
    ("touch login by phone", NEED_PHONE,
     "UPDATE customers SET last_login = now() WHERE phone = %s", lambda: (phone(),), 4),
    # ---- two-column needs
    ("orders by region+category", NEED_REGION_CAT,
     "SELECT id, amount FROM orders WHERE region = %s AND product_cat = %s",
     lambda: (R.randint(0, 19), R.randint(0, 49)), 6),
    ("count by region+category", NEED_REGION_CAT,
     "SELECT count(*) FROM orders WHERE region = %s AND product_cat = %s",
     lambda: (R.randint(0, 19), R.randint(0, 49)), 6),
    ("shipments of a warehouse in a day", NEED_WAREHOUSE_SHIPPED,
     "SELECT * FROM orders WHERE warehouse_id = %s AND shipped_at >= %s "
     "AND shipped_at < %s",
     lambda: (R.randint(0, 99), *day()), 6),
    ("warehouse revenue in a day", NEED_WAREHOUSE_SHIPPED,
     "SELECT sum(amount) FROM orders WHERE warehouse_id = %s AND shipped_at >= %s "
     "AND shipped_at < %s",
     lambda: (R.randint(0, 99), *day()), 6),
    ("customers by country+segment", NEED_COUNTRY_SEGMENT,
     "SELECT id, email FROM customers WHERE country = %s AND segment = %s",
     lambda: (R.randint(0, 49), R.randint(0, 9)), 6),
    ("count by country+segment", NEED_COUNTRY_SEGMENT,
     "SELECT count(*) FROM customers WHERE country = %s AND segment = %s",
     lambda: (R.randint(0, 49), R.randint(0, 9)), 6),
    # ---- well served already, or no index would help
    ("order by id", None, "SELECT * FROM orders WHERE id = %s", lambda: (R.randint(1, N),), 20),
    ("orders id range", None, "SELECT sum(amount) FROM orders WHERE id BETWEEN %s AND %s",
     lambda: (lambda a: (a, a + 100))(R.randint(1, N - 200)), 10),
    ("customer by email", None, "SELECT * FROM customers WHERE email = %s",
     lambda: (f"c{R.randint(1, N)}@example.com",), 20),
    ("customer by email+country", None,
     "SELECT id FROM customers WHERE email = %s AND country = %s",
     lambda: (f"c{R.randint(1, N)}@example.com", R.randint(0, 49)), 10),
    ("customers by ids", None, "SELECT * FROM customers WHERE id = ANY(%s)",
     lambda: ([R.randint(1, N) for _ in range(5)],), 10),
    ("revenue of a status", None, "SELECT sum(amount) FROM orders WHERE status = %s",
     lambda: (R.randint(0, 4),), 3),
    ("all orders count", None, "SELECT count(*) FROM orders", lambda: (), 3),
    ("status histogram", None, "SELECT status, count(*) FROM orders GROUP BY status",
     lambda: (), 3),
    ("big spenders", None, "SELECT count(*) FROM orders WHERE amount > %s",
     lambda: (R.randint(0, 50),), 3),
    ("region by name", None, "SELECT * FROM regions WHERE name = %s",
     lambda: (f"region {R.randint(1, 20)}",), 20),
    ("region list", None, "SELECT * FROM regions ORDER BY name", lambda: (), 10),
    ("customer by id", None, "SELECT * FROM customers WHERE id = %s",
     lambda: (R.randint(1, N),), 20),
    # ---- the write-heavy table: reads too rare for an index to pay for its writes
    ("events of a session", None, "SELECT * FROM events WHERE session_id = %s",
     lambda: (R.randint(0, 199999),), 2),
    ("events of a user and kind", None,
     "SELECT count(*) FROM events WHERE user_id = %s AND kind = %s",
     lambda: (R.randint(0, 99999), R.randint(0, 9)), 1),
    ("event ingest", None,
     "INSERT INTO events (user_id, session_id, kind) SELECT g %% 100000, g %% 200000, g %% 10 "
     "FROM generate_series(1, %s) g", lambda: (100000,), 15),
    ("mark event processed", None, "UPDATE events SET processed = true WHERE id = %s",
     lambda: (R.randint(1, N),), 200),
    ("recent events", None, "SELECT * FROM events WHERE id > %s ORDER BY id LIMIT 50",
     lambda: (R.randint(1, N),), 20),
]


def key(table: str, columns: tuple[str, ...], ordered: bool) -> tuple[str, tuple[str, ...]]:
    return (table, columns if ordered else tuple(sorted(columns)))


def matches(rec: tuple[str, tuple[str, ...]], truth: set[tuple[str, tuple[str, ...], bool]]) -> bool:
    table, columns = rec
    return any(key(t, c, o) == key(table, columns, o) for t, c, o in truth)


def run_workload(conn: psycopg.Connection) -> None:
    for _label, _truth, sql, params, calls in SHAPES:
        for _ in range(calls):
            conn.execute(sql, params())


def mean_ms(conn: psycopg.Connection, sql: str, params: Callable[[], tuple], n: int = 5) -> float:
    conn.execute(sql, params())  # warm the cache
    times = []
    for _ in range(n):
        start = time.perf_counter()
        conn.execute(sql, params())
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.perf_counter()
        conn.execute(SETUP)
        conn.execute("VACUUM ANALYZE regions, customers, orders, events")
        print(f"setup: customers, orders, events of {ROWS} rows each in "
              f"{time.perf_counter() - start:.1f} s; {len(SHAPES)} query shapes")
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT perfmon.collect()")
        time.sleep(1)
        conn.execute("SELECT perfmon.collect()")
        start = time.perf_counter()
        run_workload(conn)
        print(f"workload: {sum(s[4] for s in SHAPES)} statements in "
              f"{time.perf_counter() - start:.1f} s")
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT perfmon.collect()")
        start = time.perf_counter()
        result = conn.execute("SELECT perfmon.refresh_recommendations()").fetchone()[0]
        print(f"refresh_recommendations(): {time.perf_counter() - start:.2f} s; index advice: "
              f"{result['rules']['index_advice']}")
        advice = conn.execute(
            """SELECT table_name, columns, recommended, improvement_pct, reason, queries
               FROM perfmon.index_recommendations ORDER BY table_name, columns""").fetchall()
        truth = {s[1] for s in SHAPES if s[1] is not None}
        recommended = [(t, tuple(c)) for t, c, ok, *_ in advice if ok]
        hits = [r for r in recommended if matches(r, truth)]
        found = {t for t in truth if any(key(*t) == key(r[0], r[1], t[2]) for r in recommended)}
        precision = len(hits) / len(recommended) if recommended else 1.0
        recall = len(found) / len(truth)
        print("advice:")
        for table, columns, ok, pct, reason, _q in advice:
            verdict = "TRUE " if matches((table, tuple(columns)), truth) else "FALSE"
            print(f"  {'recommended' if ok else 'withheld   '} {verdict if ok else '     '} "
                  f"{table}({', '.join(columns)}) -{pct}%: {reason}")
            if ok and verdict == "FALSE":
                for q in _q:
                    print(f"      serves: {q['query']}")
        for t in sorted(truth - found):
            print(f"  missed: {t[0]}({', '.join(t[1])})")
        print(f"precision {precision:.2f}  recall {recall:.2f}  "
              f"({len(hits)} of {len(recommended)} recommended are true; {len(found)} of "
              f"{len(truth)} true indexes found)  (target precision 1.0, recall >= 0.9)")

        print("measured speed-up of each recommended index (median of 5 runs per statement):")
        for table, columns, ok, _pct, _reason, _queries in advice:
            if not ok:
                continue
            served = [s for s in SHAPES if s[1] is not None
                      and key(*s[1]) == key(table, tuple(columns), s[1][2])
                      and not s[2].startswith("UPDATE")]
            if not served:
                served = [s for s in SHAPES if s[1] is None and table in s[2]][:1]
            before = {s[0]: mean_ms(conn, s[2], s[3]) for s in served}
            conn.execute(f"CREATE INDEX ON {table} ({', '.join(columns)})")
            conn.execute(f"ANALYZE {table}")
            after = {s[0]: mean_ms(conn, s[2], s[3]) for s in served}
            for label in before:
                print(f"  {table}({', '.join(columns)}) {label}: {before[label]:.2f} ms -> "
                      f"{after[label]:.2f} ms ({before[label] / max(after[label], 0.001):.0f}x)")
        conn.execute("SELECT perfmon.collect()")
        again = conn.execute("SELECT perfmon.refresh_recommendations()").fetchone()[0]
        left = conn.execute(
            "SELECT target, improvement_pct, cost_before, cost_after "
            "FROM perfmon.index_recommendations WHERE recommended").fetchall()
        print(f"after creating them: {len(left)} index recommendations left "
              f"({again['rules']['index_advice']})")
        for target, pct, before, after in left:
            print(f"  {target}: cost {before} -> {after} (-{pct}%)")
        resolved = conn.execute("SELECT count(*) FROM perfmon.recommendations "
                                "WHERE rule = 'index_advice' AND status = 'resolved'").fetchone()[0]
        print(f"recommendations of the created indexes resolved by the next refresh: {resolved}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", help="run in this database instead of a throwaway cluster")
    args = parser.parse_args()
    with (nullcontext() if args.dsn else bench_cluster()) as cluster:
        dsn = args.dsn or fresh_database(cluster, "advisor")
        bench(dsn)


if __name__ == "__main__":
    main()
