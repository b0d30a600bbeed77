"""perfmon.executive_report(period): figures checked against the views they come from, the
cost model, savings only from applied recommendations, and a clear error for a bad period."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from health_helpers import (
    add_recommendation,
    add_samples,
    add_server_history,
    add_statement,
    add_statement_history,
    anchor,
    ensure_partitions,
    minutes,
    set_config,
)


def report(conn: psycopg.Connection, period: str) -> dict:
    return conn.execute("SELECT perfmon.executive_report(%s)", (period,)).fetchone()[0]


def figures(node: object, path: str = "") -> list[tuple[str, dict]]:
    """Every {value, ...} object of the report, with where it is."""
    found = []
    if isinstance(node, dict):
        if "value" in node:
            found.append((path, node))
        for key, child in node.items():
            if key != "items":
                found.extend(figures(child, f"{path}.{key}"))
    return found


def add_alert(conn: psycopg.Connection, fingerprint: str, level: str, fired_at, state: str = "resolved",
              rule: str = "cpu") -> None:
    conn.execute(
        "INSERT INTO perfmon.alert_log (fingerprint, rule, target, state, level, value, first_seen, "
        "fired_at, last_seen, resolved_at) VALUES (%s, %s, 'db1', %s, %s, 97, %s, %s, %s, %s)",
        (fingerprint, rule, state, level, fired_at, fired_at, fired_at + timedelta(minutes=5),
         fired_at + timedelta(minutes=5) if state == "resolved" else None))


def add_episode(conn: psycopg.Connection, feature: str, started_at, score: float) -> None:
    conn.execute(
        "INSERT INTO perfmon.anomaly_episodes (server_id, detector, feature, started_at, last_seen_at, "
        "ended_at, samples, peak_score, peak_at, observed_value, expected_low, expected_high) "
        "VALUES (1, 'envelope', %s, %s, %s, %s, 3, %s, %s, 10, 1, 2)",
        (feature, started_at, started_at + timedelta(minutes=3), started_at + timedelta(minutes=10),
         score, started_at + timedelta(minutes=1)))


def test_bad_period_names_the_allowed_values(conn: psycopg.Connection) -> None:
    for bad in ("yearly", "Weekly", "", None):
        with pytest.raises(psycopg.errors.InvalidParameterValue,
                           match="expected one of daily, weekly, monthly"):
            report(conn, bad)


def test_every_figure_has_value_unit_and_how(conn: psycopg.Connection) -> None:
    for period, days in (("daily", 1), ("weekly", 7), ("monthly", 30)):
        r = report(conn, period)
        assert r["period"]["name"] == period and r["period"]["days"] == days
        assert set(r) >= {"period", "executive_summary", "financial_impact", "technical_performance",
                          "recommendations"}
        assert set(r["executive_summary"]) >= {"health", "availability_pct", "apdex", "incidents",
                                               "headline"}
        assert set(r["financial_impact"]) == {"infrastructure_cost", "cost_per_1k_transactions",
                                              "revenue_at_risk", "savings_from_applied_recommendations"}
        assert set(r["technical_performance"]) >= {"transactions", "tps_avg", "mean_query_ms",
                                                   "cache_hit_pct", "top_queries", "anomalies", "alerts",
                                                   "health_trend"}
        found = figures(r)
        assert len(found) >= 25
        for path, fig in found:
            assert {"value", "unit", "how"} <= set(fig), path
            assert fig["how"], f"{path} does not say how it was computed"
        # nothing configured, nothing measured: null with the reason, never an invented figure
        fin = r["financial_impact"]
        assert fin["infrastructure_cost"]["value"] is None
        assert "business.instance_cost_per_hour is not configured" in fin["infrastructure_cost"]["how"]
        assert fin["revenue_at_risk"]["value"] is None
        assert "business.revenue_per_hour is not configured" in fin["revenue_at_risk"]["how"]
        assert fin["savings_from_applied_recommendations"]["value"] == 0
        assert "marked applied" in fin["savings_from_applied_recommendations"]["how"]
        assert r["executive_summary"]["availability_pct"]["value"] is None
        assert "perfmon.collect()" in r["executive_summary"]["availability_pct"]["how"]


def test_daily_figures_match_the_views(conn: psycopg.Connection) -> None:
    ensure_partitions(conn, 3)
    end = anchor(conn)
    set_config(conn, business__instance_cost_per_hour=2.5, business__revenue_per_hour=3600.0,
               business__currency="EUR")
    times = minutes(end, 120)
    sampled = times[:50] + times[55:]                          # a 360 s gap: 300 s down
    add_samples(conn, sampled)
    add_server_history(conn, sampled, xact_commit=[100 + i for i in range(len(sampled))],
                       xact_rollback=2, blks_hit=950, blks_read=50)
    ids = [add_statement(conn, f"SELECT q{i}", 1000 + i) for i in range(12)]
    for i, sid in enumerate(ids):
        add_statement_history(conn, sid, times[10 + i], 10 * (i + 1), 100.0 * (i + 1) ** 2)
    add_statement_history(conn, ids[0], end - timedelta(days=2), 5, 5)    # outside the day
    add_alert(conn, "a1", "critical", end - timedelta(hours=3))
    add_alert(conn, "a2", "critical", end - timedelta(hours=2))
    add_alert(conn, "a3", "warning", end - timedelta(hours=1), state="firing")
    add_alert(conn, "a4", "emergency", end - timedelta(days=3))            # outside the day
    add_episode(conn, "db.transactions_per_s", end - timedelta(hours=5), 5.0)
    add_episode(conn, "db.connections.total", end - timedelta(hours=4), 2.5)
    add_episode(conn, "db.cache_hit_pct", end - timedelta(days=4), 9.0)   # outside the day
    for target, sev, benefit in [("t.a(x)", "warning", 40), ("t.b(y)", "critical", 10),
                                 ("t.c(z)", "warning", 70)]:
        add_recommendation(conn, target, severity=sev, benefit=benefit)
    gone = add_recommendation(conn, "t.d(w)", severity="critical")
    conn.execute("SELECT perfmon.dismiss(%s, 'not for us')", (gone,))
    for hours_ago, score in [(5.5, 80), (5.2, 90), (3.5, 60), (0.5, 70)]:
        conn.execute("INSERT INTO perfmon.health_history (server_id, ts, period_s, overall, coverage_pct, "
                     "risk_level) VALUES (1, %s, 3600, %s, 50, 'medium')",
                     (end - timedelta(hours=hours_ago), score))

    r = report(conn, "daily")
    frm, to = r["period"]["from"], r["period"]["to"]
    assert r["currency"] == "EUR"
    tech = r["technical_performance"]

    # database_series: time-weighted tps, commits, cache hit
    tps, commits, hit = conn.execute(
        "SELECT sum(tps * interval_s) / sum(interval_s), sum(commits_per_s * interval_s), avg(cache_hit_pct) "
        "FROM perfmon.database_series WHERE ts > %s AND ts <= %s", (frm, to)).fetchone()
    assert tech["tps_avg"]["value"] == pytest.approx(float(tps), rel=1e-3)
    assert tech["transactions"]["value"] == pytest.approx(float(commits), abs=len(sampled))
    assert tech["transactions"]["value"] == sum(100 + i for i in range(len(sampled)))
    assert tech["cache_hit_pct"]["value"] == pytest.approx(float(hit)) == 95

    # top_queries: the daily report's top 10 are perfmon.top_queries' (also the last 24 h)
    view = conn.execute("SELECT stmt_id, calls, total_ms, mean_ms, rank FROM perfmon.top_queries "
                        "ORDER BY rank, stmt_id").fetchall()
    got = [(q["stmt_id"], q["calls"], Decimal(str(q["total_ms"])), Decimal(str(q["mean_ms"])), q["rank"])
           for q in tech["top_queries"]]
    assert got == [tuple(v) for v in view[:10]]
    assert got[0][0] == ids[-1]
    calls, total = conn.execute("SELECT sum(calls), sum(total_ms) FROM perfmon.top_queries").fetchone()
    assert tech["mean_query_ms"]["value"] == pytest.approx(float(total / calls), abs=1e-3)

    # alerts that fired in the period, by level, as perfmon.alerts has them
    by_level = dict(conn.execute("SELECT level, count(*) FROM perfmon.alerts WHERE fired_at > %s "
                                 "AND fired_at <= %s GROUP BY level", (frm, to)).fetchall())
    inc = r["executive_summary"]["incidents"]
    assert by_level == {"critical": 2, "warning": 1}
    assert inc["total"]["value"] == 3 and inc["critical"]["value"] == 2 and inc["warning"]["value"] == 1
    assert inc["emergency"]["value"] == 0
    assert tech["alerts"]["open_now"]["value"] == conn.execute(
        "SELECT count(*) FROM perfmon.alerts WHERE state = 'firing'").fetchone()[0] == 1
    assert tech["alerts"]["mttr_s"]["value"] == 300
    assert [a["level"] for a in tech["alerts"]["items"]] == ["warning", "critical", "critical"]
    # each with what it costs the business, shown in the report's alerts table
    impacts = dict(conn.execute("SELECT alert_id, business_impact FROM perfmon.alerts").fetchall())
    assert all(a["business_impact"] == impacts[a["alert_id"]] for a in tech["alerts"]["items"])
    assert any(a["business_impact"] for a in tech["alerts"]["items"])

    # anomalies active in the period, from perfmon.anomalies
    view = conn.execute("SELECT episode_id, severity, duration_s FROM perfmon.anomalies "
                        "WHERE started_at <= %s AND last_seen_at > %s ORDER BY score DESC",
                        (to, frm)).fetchall()
    an = tech["anomalies"]
    got = [(i["episode_id"], i["severity"], i["duration_s"]) for i in an["items"]]
    assert got == [tuple(v) for v in view]
    assert an["episodes"]["value"] == 2 and an["critical"]["value"] == 1 and an["warning"]["value"] == 1

    # open recommendations in perfmon.recommendations' order (worst first, then benefit)
    view = conn.execute("SELECT id FROM perfmon.recommendations WHERE status = 'open'").fetchall()
    assert [x["id"] for x in r["recommendations"]] == [v[0] for v in view]
    assert [x["target"] for x in r["recommendations"]] == ["t.b(y)", "t.c(z)", "t.a(x)"]
    assert r["recommendations"][0]["benefit"] == {"value": 10, "unit": "% cost reduction"}

    # health from perfmon.health; the trend is its hourly mean
    h = r["executive_summary"]["health"]
    assert h["latest"]["value"] == 70 and h["min"]["value"] == 60
    assert h["average"]["value"] == 75 and h["risk_level"]["value"] == "medium"
    trend = conn.execute(
        "SELECT date_bin('1 hour', ts, '2000-01-01 00:00+00'), round(avg(overall_score), 1) "
        "FROM perfmon.health WHERE ts > %s AND ts <= %s GROUP BY 1 ORDER BY 1", (frm, to)).fetchall()
    assert [(p[1]) for p in tech["health_trend"]] == [float(t[1]) for t in trend]
    assert len(tech["health_trend"]) in (3, 4)    # 5.5 h and 5.2 h ago may share an hour

    # availability: 300 s down over the observed part of the day (from the first sample)
    s = r["executive_summary"]
    observed = conn.execute("SELECT extract(epoch FROM %s::timestamptz - %s::timestamptz)",
                            (to, sampled[0])).fetchone()[0]
    assert s["downtime_s"]["value"] == 300
    assert s["availability_pct"]["value"] == pytest.approx(100 * (1 - 300 / float(observed)), abs=1e-4)

    # money: configured cost x time, revenue per hour x measured downtime
    fin = r["financial_impact"]
    assert fin["infrastructure_cost"] == {
        "value": 60.0, "unit": "EUR", "how": "business.instance_cost_per_hour (2.5) x 24 h"}
    assert fin["revenue_at_risk"]["value"] == 3600.0 * 300 / 3600
    covered = 60 * len(sampled)
    per_1k = 2.5 * covered / 3600 / (sum(100 + i for i in range(len(sampled))) / 1000)
    assert fin["cost_per_1k_transactions"]["value"] == pytest.approx(per_1k, abs=1e-6)

    assert s["headline"].startswith("Daily: health 75/100 on average (medium risk), availability ")
    assert "3 incident(s) of which 2 critical or worse, 3 open recommendation(s)" in s["headline"]


def test_savings_only_from_applied_recommendations_measured_before_and_after(
        conn: psycopg.Connection) -> None:
    end = anchor(conn)
    fixed = add_statement(conn, "SELECT * FROM orders WHERE customer = $1", 501)
    other = add_statement(conn, "SELECT * FROM items WHERE sku = $1", 502)
    add_statement_history(conn, fixed, end - timedelta(hours=3), 100, 5000)   # before: 50 ms
    add_statement_history(conn, fixed, end - timedelta(hours=1), 100, 1000)   # after: 10 ms
    add_statement_history(conn, other, end - timedelta(hours=3), 10, 100)
    add_statement_history(conn, other, end - timedelta(hours=1), 10, 50)
    applied = add_recommendation(conn, "public.orders(customer)",
                                 evidence={"statements": [{"stmt_id": fixed, "queryid": 501, "calls": 100}]})
    not_applied = add_recommendation(conn, "public.items(sku)",
                                     evidence={"statements": [{"stmt_id": other}]})
    no_statement = add_recommendation(conn, "public.big", rule="table_bloat")

    marked = conn.execute("SELECT applied_at FROM perfmon.mark_applied(%s, 'done')", (applied,)).fetchone()
    assert marked[0] is not None
    conn.execute("SELECT perfmon.mark_applied(%s)", (no_statement,))
    # the index went in two hours ago
    conn.execute("UPDATE perfmon.recommendation_log SET applied_at = %s WHERE id IN (%s, %s)",
                 (end - timedelta(hours=2), applied, no_statement))

    sav = report(conn, "daily")["financial_impact"]["savings_from_applied_recommendations"]
    assert sav["value"] == pytest.approx((50 - 10) * 100 / 1000)   # 4 s of execution time
    assert sav["unit"] == "s of statement execution time"
    items = {i["id"]: i for i in sav["items"]}
    assert set(items) == {applied, no_statement}                    # never the open one
    assert not_applied not in items
    assert items[applied]["mean_ms_before"] == 50 and items[applied]["mean_ms_after"] == 10
    assert items[applied]["calls_after"] == 100 and items[applied]["stmt_ids"] == [fixed]
    assert items[no_statement]["saved_s"] is None
    assert "names no statement" in items[no_statement]["not_measured"]
    assert "1 of 2 applied recommendation(s) measured" in sav["how"]

    # a resolved-after-applied recommendation still counts: applied_at is kept
    conn.execute("UPDATE perfmon.recommendation_log SET status = 'resolved', "
                 "status_reason = 'applied, no longer found' WHERE id = %s", (applied,))
    sav = report(conn, "daily")["financial_impact"]["savings_from_applied_recommendations"]
    assert sav["value"] == pytest.approx(4.0)


def test_weekly_and_monthly_read_older_history(conn: psycopg.Connection) -> None:
    ensure_partitions(conn, 12)
    end = anchor(conn)
    old = end - timedelta(days=5)
    add_server_history(conn, minutes(old, 10), xact_commit=7)
    add_server_history(conn, minutes(end, 10), xact_commit=1)
    add_alert(conn, "old", "critical", end - timedelta(days=10))
    assert report(conn, "daily")["technical_performance"]["transactions"]["value"] == 10
    assert report(conn, "weekly")["technical_performance"]["transactions"]["value"] == 80
    monthly = report(conn, "monthly")
    assert monthly["executive_summary"]["incidents"]["critical"]["value"] == 1
    assert monthly["technical_performance"]["health_trend_step_s"] == 6 * 3600


def test_days_whose_raw_samples_retention_dropped_are_read_from_the_rollups(
        conn: psycopg.Connection) -> None:
    # collection.retention_days 2: the hourly rollup keeps what the raw days of 5 days ago
    # held, and the weekly report counts it (as its top queries and charts do).
    ensure_partitions(conn, 12)
    end = anchor(conn)
    old, new = minutes(end - timedelta(days=5), 10), minutes(end, 10)
    add_samples(conn, old + new)
    add_server_history(conn, old + new, xact_commit=[7] * 10 + [1] * 10, xact_rollback=1,
                       blks_hit=90, blks_read=10)
    conn.cursor().executemany(
        "INSERT INTO perfmon.database_history (server_id, ts, datid, xact_commit, xact_rollback, blks_hit, "
        "blks_read) VALUES (1, %s, (SELECT oid FROM pg_database WHERE datname = current_database()), "
        "%s, 1, 90, 10)", [(t, 7 if t in old else 1) for t in old + new])
    conn.execute("SELECT perfmon.rollup(%s)", (end,))
    set_config(conn, collection__retention_days=2, business__instance_cost_per_hour=1.0)
    conn.execute("SELECT count(*) FROM perfmon.maintain_partitions()")
    assert conn.execute("SELECT count(*) FROM perfmon.server_history WHERE ts < %s",
                        (end - timedelta(days=3),)).fetchone()[0] == 0, "retention dropped the old raw days"
    tp = report(conn, "weekly")["technical_performance"]
    assert (tp["transactions"]["value"], tp["rollbacks"]["value"]) == (80, 20)
    assert tp["cache_hit_pct"]["value"] == 90
    assert "perfmon.database_rollup" in tp["transactions"]["how"]
    cost = report(conn, "weekly")["financial_impact"]["cost_per_1k_transactions"]
    assert cost["value"] == pytest.approx(1.0 * 20 * 60 / 3600 / (80 / 1000), abs=1e-6)


def test_an_alert_and_an_anomaly_on_the_boundary_of_two_adjacent_periods_count_once(
        conn: psycopg.Connection) -> None:
    # The alerts and anomalies were read (from, to] while the rest of the report, as the health
    # score, reads [from, to): on the boundary of yesterday's period and today's, they went to
    # yesterday's while the samples of that instant went to today's.
    def counted() -> tuple[int, int, list, list]:
        tech = report(conn, "daily")["technical_performance"]
        alerts, anomalies = tech["alerts"], tech["anomalies"]
        return (alerts["fired"]["value"], anomalies["episodes"]["value"],
                [a["rule"] for a in alerts["items"]], [e["metrics"] for e in anomalies["items"]])

    with conn.transaction():  # one now(): the report's period ends at it
        boundary = conn.execute("SELECT now()").fetchone()[0]
        add_alert(conn, "edge", "critical", boundary, rule="edge_rule")
        conn.execute(
            "INSERT INTO perfmon.anomaly_episodes (server_id, detector, feature, started_at, last_seen_at, "
            "ended_at, samples, peak_score, peak_at) VALUES (1, 'envelope', 'db.connections.total', now(), "
            "now(), now(), 1, 3, now())")
        # Today's period ends at the boundary: neither is in it.
        assert counted() == (0, 0, [], [])
        # Tomorrow's begins there: the same report with both a day earlier (as the clock a day on).
        conn.execute("UPDATE perfmon.alert_log SET fired_at = fired_at - interval '1 day', "
                     "first_seen = first_seen - interval '1 day', last_seen = last_seen - interval '1 day', "
                     "resolved_at = resolved_at - interval '1 day' WHERE fingerprint = 'edge'")
        conn.execute("UPDATE perfmon.anomaly_episodes SET started_at = started_at - interval '1 day', "
                     "last_seen_at = last_seen_at - interval '1 day', "
                     "ended_at = ended_at - interval '1 day', peak_at = peak_at - interval '1 day'")
        assert counted() == (1, 1, ["edge_rule"], [["db.connections.total"]])


def test_the_period_is_24_hours_a_day_whatever_the_sessions_time_zone(conn: psycopg.Connection) -> None:
    # A POSIX time zone whose clocks went forward 6 hours ago: "1 day" before now in it
    # is 23 h; the report's day is 24 h (and its cost days x 24 h) for every reader.
    day, hour = conn.execute(
        "SELECT extract(doy FROM now() AT TIME ZONE 'UTC' - interval '6 hours')::int - 1, "
        "extract(hour FROM now() AT TIME ZONE 'UTC' - interval '6 hours')::int").fetchone()
    conn.execute("SELECT set_config('TimeZone', %s, false)", (f"AAA0BBB,{day}/{hour},{(day + 5) % 365}/0",))
    assert conn.execute("SELECT now() - (now() - interval '1 day')").fetchone()[0] == timedelta(hours=23)
    for name, days in (("daily", 1), ("weekly", 7)):
        p = report(conn, name)["period"]
        span = datetime.fromisoformat(p["to"]) - datetime.fromisoformat(p["from"])
        assert span == timedelta(days=days), name


def test_the_reader_runs_the_report(conn: psycopg.Connection) -> None:
    conn.execute("SET ROLE perfmon_reader")
    try:
        r = report(conn, "weekly")
        assert r["period"]["name"] == "weekly"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM perfmon.recommendation_log")
    finally:
        conn.execute("RESET ROLE")
    assert conn.execute("SELECT p.prosecdef, p.proconfig FROM pg_proc p "
                        "WHERE p.oid = 'perfmon.executive_report(text)'::regprocedure").fetchone() == (
        True, ["search_path=pg_catalog, pg_temp"])
