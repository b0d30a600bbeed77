"""perfmon.health_score(), record_health() and perfmon.health on prepared data whose
right answer is known (docs/health.md has the rules these numbers follow)."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from health_helpers import (
    add_agent,
    add_heartbeat,
    add_host_metric,
    add_recommendation,
    add_samples,
    add_server_history,
    add_statement,
    add_statement_history,
    anchor,
    ensure_partitions,
    health,
    minutes,
    set_config,
)

from pgperfmon import config

README = Path(__file__).resolve().parents[1] / "README.md"


def band(value: float, warning: float, critical: float, worst: float) -> float:
    """The documented bands, written out independently of the SQL."""
    lower_is_worse = worst < warning
    if lower_is_worse:
        value, warning, critical, worst = -value, -warning, -critical, -worst
    if value <= warning:
        return 100.0
    if value <= critical:
        return 100 - 50 * (value - warning) / (critical - warning)
    if value < worst:
        return 50 - 50 * (value - critical) / (worst - critical)
    return 0.0


def r1(x: float) -> float:
    return float(round(x + 1e-9, 1))


def test_bands() -> None:
    assert band(87.5, 80, 95, 100) == 75
    assert band(87.5, 95, 80, 50) == pytest.approx(75)
    assert band(97.5, 80, 95, 100) == 25


def test_health_points_follow_the_documented_bands(conn: psycopg.Connection) -> None:
    for args in [(50, 80, 95, 100), (87.5, 80, 95, 100), (97.5, 80, 95, 100), (100, 80, 95, 100),
                 (90, 95, 80, 50), (40, 95, 80, 50), (75, 100, 50, 0), (10, 1, 5, 25)]:
        got = conn.execute("SELECT perfmon.health_points(%s, %s, %s, %s)", args).fetchone()[0]
        assert float(got) == r1(band(*args)), args
    assert conn.execute("SELECT perfmon.health_points(NULL, 1, 2, 3)").fetchone()[0] is None


def test_nothing_measured_gives_no_score_and_says_why(conn: psycopg.Connection) -> None:
    h = health(conn, anchor(conn))
    assert h["overall"] is None and h["technical"] is None and h["business"] is None
    assert h["risk_level"] == "unknown"
    assert h["coverage_pct"] == 0
    assert set(h["components"]) == {"database", "system", "agents", "availability",
                                    "user_satisfaction", "cost_efficiency"}
    for name, c in h["components"].items():
        assert c["score"] is None, name
        assert c["missing"], f"{name} has no score but does not say why"
    assert "perfmon.collect()" in " ".join(h["components"]["database"]["missing"])
    assert "pgperfmon agent" in " ".join(h["components"]["system"]["missing"])
    assert "perfmon.agent_heartbeat()" in " ".join(h["components"]["agents"]["missing"])
    assert "business.instance_cost_per_hour" in h["components"]["cost_efficiency"]["missing"][0]
    impact = h["business_impact"]
    assert impact["revenue_at_risk"]["value"] is None
    assert "business.revenue_per_hour is not configured" in impact["revenue_at_risk"]["how"]
    assert impact["infrastructure_cost"]["value"] is None
    # weights are the seed's
    assert {n: c["weight"] for n, c in h["components"].items()} == {
        "database": 0.3, "system": 0.2, "agents": 0.1, "availability": 0.2,
        "user_satisfaction": 0.1, "cost_efficiency": 0.1}


def test_system_component_from_known_host_samples(conn: psycopg.Connection) -> None:
    end = anchor(conn)
    # 4 samples, 10 minutes apart, within the hour [end - 1 h, end): one at end is the next hour's
    times = minutes(end - timedelta(minutes=1), 4, 600)
    cpu = [80, 95, 80, 95]        # mean 87.5
    mem = [40, 50, 60, 50]        # mean 50
    disk = [70, 85, 80, 75]       # fullest 85
    for t, c, m, d in zip(times, cpu, mem, disk, strict=True):
        add_host_metric(conn, "host.cpu.total_pct", c, t)
        add_host_metric(conn, "host.memory.used_pct", m, t)
        add_host_metric(conn, "host.disk.used_pct", d, t, mount="/")
        add_host_metric(conn, "host.disk.used_pct", d - 30, t, mount="/boot")
    # a sample outside the period is not counted
    add_host_metric(conn, "host.cpu.total_pct", 100, end - timedelta(hours=2))
    s = health(conn, end)["components"]["system"]
    expected = {"cpu": band(87.5, 80, 95, 100), "memory": band(50, 85, 95, 100),
                "disk": band(85, 80, 90, 100)}
    assert s["checks"] == {k: r1(v) for k, v in expected.items()}
    assert s["inputs"]["cpu_avg_pct"] == 87.5
    assert s["inputs"]["memory_avg_pct"] == 50
    assert s["inputs"]["disk_max_used_pct"] == 85
    assert s["score"] == r1(sum(r1(v) for v in expected.values()) / 3)
    assert s["missing"] == []


def test_agents_and_apdex_from_known_heartbeats(conn: psycopg.Connection) -> None:
    end = anchor(conn)
    set_config(conn, business__apdex_target_ms=500)
    web = add_agent(conn, "web", end)                                                # up
    batch = add_agent(conn, "batch", end - timedelta(minutes=10), last_status="down")  # down
    add_agent(conn, "retired", end - timedelta(days=3))     # not heard from in the period: left out
    responses = [100, 200, 300, 400, 500, 600, 1000, 2000, 2500, 5000]
    for i, ms in enumerate(responses):            # a minute apart, the last a minute before the end
        add_heartbeat(conn, web, end - timedelta(minutes=10 - i), ms, errors=1 if i == 3 else 0)
    add_heartbeat(conn, batch, end - timedelta(minutes=10), None, status="down")
    h = health(conn, end)

    # Apdex by hand: satisfied <= 500 (5), tolerating <= 2000 (3), frustrated: 2500, 5000 and the
    # 'down' heartbeat (3) -> (5 + 3/2) / 11
    u = h["components"]["user_satisfaction"]
    assert u["inputs"]["source"] == "agent_heartbeats"
    assert (u["inputs"]["satisfied"], u["inputs"]["tolerating"], u["inputs"]["frustrated"]) == (5, 3, 3)
    apdex = (5 + 3 / 2) / 11
    assert u["inputs"]["apdex"] == pytest.approx(apdex, abs=5e-5)
    assert u["score"] == r1(100 * apdex)

    a = h["components"]["agents"]
    assert a["inputs"]["agents"] == 2 and a["inputs"]["agents_up"] == 1
    p95 = 2500 + 0.55 * (5000 - 2500)  # percentile_cont(0.95) of the 10 response times
    assert a["inputs"]["p95_response_ms"] == pytest.approx(p95)
    error_rate = 100 * 2 / 11          # one heartbeat with errors, one reporting down
    checks = {"up": r1(band(50, 100, 50, 0)), "errors": r1(band(error_rate, 1, 5, 25)),
              "response": r1(band(p95, 500, 2000, 5000))}
    assert a["checks"] == checks
    assert a["score"] == r1(sum(checks.values()) / 3)


def test_agents_of_a_past_period_are_judged_by_their_heartbeats_then(conn: psycopg.Connection) -> None:
    """A score of last week judges each agent as its heartbeats then say, not as it is now."""
    end = anchor(conn)
    ensure_partitions(conn, 8)
    week_ago, days_ago = end - timedelta(days=7), end - timedelta(days=3)

    def beats(agent: int, last: datetime, count: int, status: str = "ok") -> None:
        for t in minutes(last, count):
            add_heartbeat(conn, agent, t, 20, status=status)

    steady = add_agent(conn, "steady", end)
    beats(steady, week_ago, 60)
    beats(steady, days_ago, 60)
    beats(steady, end, 5)
    # down at the end of the week-old period (reported down 10 minutes before it), up now
    flaky = add_agent(conn, "flaky", end)
    beats(flaky, week_ago - timedelta(minutes=11), 50)
    beats(flaky, week_ago - timedelta(minutes=10), 1, status="down")
    beats(flaky, days_ago, 60)
    beats(flaky, end, 5)
    # first heard of 3 days ago and up all that hour; down since yesterday
    gone = add_agent(conn, "gone", end - timedelta(days=1), last_status="down")
    beats(gone, days_ago, 60)
    beats(gone, end - timedelta(days=1), 1, status="down")

    def judged(ending: datetime) -> tuple[int, int, int]:
        a = health(conn, ending)["components"]["agents"]["inputs"]
        return a["agents"], a["agents_up"], a["agents_down"]

    assert judged(week_ago) == (2, 1, 1)        # steady up, flaky down; gone not heard of yet
    assert judged(days_ago) == (3, 3, 0)
    assert judged(end) == (2, 2, 0)             # gone: silent a day, no longer judged
    # All three went silent after their heartbeats 3 days ago: down within the half hour after.
    assert conn.execute("SELECT perfmon.health_agents(%s, %s) -> 'inputs'",
                        (days_ago + timedelta(minutes=1), days_ago + timedelta(minutes=30))
                        ).fetchone()[0] == {"agents": 3, "agents_up": 0, "agents_down": 3, "up_pct": 0,
                                            "heartbeats": 0, "apdex_target_ms": 500}


def test_apdex_source_can_change_within_one_session(conn: psycopg.Connection) -> None:
    """PL/pgSQL caches plans per session: the statement path, then the heartbeat path."""
    end = anchor(conn)
    sid = add_statement(conn, "SELECT 1", 1)
    add_statement_history(conn, sid, end - timedelta(minutes=5), 4, 40)
    first = health(conn, end)["components"]["user_satisfaction"]
    assert first["inputs"]["source"] == "statements" and first["score"] == 100
    agent = add_agent(conn, "web", end)
    add_heartbeat(conn, agent, end - timedelta(minutes=1), 3000)      # over 4T: frustrated
    second = health(conn, end)["components"]["user_satisfaction"]
    assert second["inputs"]["source"] == "agent_heartbeats" and second["score"] == 0


def test_apdex_from_statements_uses_hourly_means_once_rolled_up(conn: psycopg.Connection) -> None:
    end = anchor(conn)
    hour = end.replace(minute=0, second=0) - timedelta(hours=2)
    add_samples(conn, [hour, hour + timedelta(minutes=30), end])  # a sample after: the hour is complete
    sid = add_statement(conn, "SELECT 1", 1)
    add_statement_history(conn, sid, hour + timedelta(minutes=10), 9, 90)     # 10 ms: satisfied
    add_statement_history(conn, sid, hour + timedelta(minutes=20), 1, 5000)   # 5 s: frustrated
    u = health(conn, end, "4 hours")["components"]["user_satisfaction"]
    assert u["inputs"]["apdex"] == 0.9
    conn.execute("SELECT perfmon.rollup()")
    # rolled up: 10 calls with a mean of 509 ms, all tolerating (T = 500 ms)
    u = health(conn, end, "4 hours")["components"]["user_satisfaction"]
    assert (u["inputs"]["satisfied"], u["inputs"]["tolerating"]) == (0, 10)
    assert u["inputs"]["apdex"] == 0.5


def test_availability_from_sample_gaps(conn: psycopg.Connection) -> None:
    end = anchor(conn) - timedelta(minutes=3)    # (what is after now is not judged)
    set_config(conn, business__availability_target_pct=95)
    times = minutes(end, 61)                     # one sample a minute over the hour
    del times[20:25]                             # five missing: a 360 s gap = 300 s down
    add_samples(conn, times)
    a = health(conn, end)["components"]["availability"]
    assert a["inputs"]["downtime_s"] == 300
    assert a["inputs"]["gaps"] == 1
    assert a["inputs"]["observed_s"] == 3600
    uptime = 100 * (1 - 300 / 3600)
    assert a["inputs"]["uptime_pct"] == pytest.approx(uptime, abs=1e-4)
    assert a["score"] == r1(band(100 - uptime, 5, 10, 50))

    # a collector silent at the end of the period counts too: 3 more minutes without a sample
    later = end + timedelta(minutes=3)
    a = health(conn, later)["components"]["availability"]
    assert a["inputs"]["downtime_s"] == 300 + 120
    assert a["inputs"]["gaps"] == 2


def test_availability_of_a_period_older_than_the_samples_kept_says_so(conn: psycopg.Connection) -> None:
    end = anchor(conn)
    add_samples(conn, minutes(end, 10))
    a = health(conn, end - timedelta(days=60))["components"]["availability"]
    assert a["score"] is None
    assert "no sample kept from the period" in a["missing"][0]
    assert "collection.retention_days, 30 days" in a["missing"][0]
    assert "has not run" not in a["missing"][0]


def test_availability_judges_a_gap_by_the_interval_its_samples_were_taken_at(
        conn: psycopg.Connection) -> None:
    # Six samples taken by perfmon.collect() at the 60 s interval, placed a minute apart
    # with one 4-minute gap: 180 s down (the last a minute before the end, which is the next
    # period's: [from, to)). Changing collection.interval_seconds afterwards
    # changes neither: at 10 s the minute-apart samples are not gaps, at 300 s the 4 minutes
    # still are one.
    end = anchor(conn)
    set_config(conn, collection__interval_seconds=60)
    for _ in range(6):
        conn.execute("SELECT perfmon.collect()")
    moved = conn.execute(
        "UPDATE perfmon.samples AS s SET ts = %s - make_interval(mins => o.minutes_before) "
        "FROM (SELECT ts, (ARRAY[9, 8, 7, 6, 5, 1])[row_number() OVER (ORDER BY ts)] AS minutes_before "
        "      FROM perfmon.samples WHERE kind = 'sample') AS o "
        "WHERE s.kind = 'sample' AND s.ts = o.ts", (end,)).rowcount
    assert moved == 6
    for interval in (60, 10, 300):
        set_config(conn, collection__interval_seconds=interval)
        a = health(conn, end, "8 minutes")["components"]["availability"]["inputs"]
        assert (a["downtime_s"], a["gaps"], a["observed_s"]) == (180, 1, 480), interval


def test_availability_counts_a_restart_once(conn: psycopg.Connection) -> None:
    end = anchor(conn) - timedelta(hours=2)      # a window before this cluster started
    times = minutes(end, 61)
    add_samples(conn, times)
    restart = times[30] + timedelta(seconds=40)  # between two samples: 40 s down at most
    conn.execute("INSERT INTO perfmon.server_starts (server_id, started_at) VALUES (1, %s), (1, %s)",
                 (end - timedelta(days=10), restart))
    a = conn.execute("SELECT perfmon.health_availability(%s, %s)",
                     (end - timedelta(hours=1), end)).fetchone()[0]
    assert a["inputs"]["restarts"] == 1
    assert a["inputs"]["downtime_s"] == 40
    # A restart inside a sample gap is not counted twice: the gap times[29] -> times[33] is
    # down from times[29] + 60 s, the restart from times[29] (the last sample before it):
    # merged, times[29] -> times[33] = 240 s (not 180 + 100).
    conn.execute("DELETE FROM perfmon.samples WHERE ts > %s AND ts < %s", (times[29], times[33]))
    a = conn.execute("SELECT perfmon.health_availability(%s, %s)",
                     (end - timedelta(hours=1), end)).fetchone()[0]
    assert a["inputs"]["downtime_s"] == 240
    assert a["inputs"]["gaps"] == 1 and a["inputs"]["restarts"] == 1


def test_database_component_from_known_history(conn: psycopg.Connection) -> None:
    end = anchor(conn)
    times = minutes(end - timedelta(minutes=1), 60)   # [end - 1 h, end)
    add_server_history(conn, times, blks_hit=900, blks_read=100,   # cache hit 90 %
                       sessions_total=[85 if i == 7 else 20 for i in range(60)],  # peak 85 of 100
                       blocked_sessions=[1 if i % 10 == 0 else 0 for i in range(60)],  # 6 of 60 samples
                       max_xid_age=1000, max_mxid_age=10)
    fast = add_statement(conn, "SELECT fast", 1)
    slow = add_statement(conn, "SELECT slow", 2)
    add_statement_history(conn, fast, times[10], 90, 900)      # mean 10 ms
    add_statement_history(conn, slow, times[20], 10, 20000)    # mean 2000 ms > slow_query_ms 1000
    h = health(conn, end)
    d = h["components"]["database"]
    checks = {"cache_hit": r1(band(90, 95, 80, 50)), "connections": r1(band(85, 80, 90, 100)),
              "blocking": r1(band(10, 0, 10, 50)), "slow_queries": r1(band(10, 1, 5, 25)),
              "wraparound": 100.0}
    assert d["checks"] == checks
    assert d["inputs"]["cache_hit_pct"] == 90
    assert d["inputs"]["slow_calls_pct"] == 10
    assert d["inputs"]["peak_connections_pct"] == 85
    assert d["inputs"]["blocked_samples_pct"] == 10
    assert d["inputs"]["replicas"] == 0 and "replication_lag" not in d["checks"]
    assert d["score"] == r1(sum(checks.values()) / 5)

    # Without agents, Apdex is approximated from the statements' interval means:
    # 90 calls at 10 ms satisfied, 10 at 2000 ms tolerating (T = 500, 4T = 2000).
    u = h["components"]["user_satisfaction"]
    assert u["inputs"]["source"] == "statements"
    assert u["score"] == r1(100 * (90 + 10 / 2) / 100)

    # A lagging replica is judged; none is not applicable.
    conn.execute("INSERT INTO perfmon.replication_history (server_id, ts, kind, name, replay_lag_s) "
                 "VALUES (1, %s, 'replica', 'r1', 90), (1, %s, 'replica', 'r1', 30)",
                 (times[5], times[6]))
    d = health(conn, end)["components"]["database"]
    assert d["checks"]["replication_lag"] == r1(band(90, 60, 120, 600))
    assert d["inputs"]["max_replay_lag_s"] == 90


def test_statement_totals_are_this_servers_only(conn: psycopg.Connection) -> None:
    """Every history table carries server_id (1 = this server): another server's statements,
    raw or rolled up, are not this one's calls (they were in its slow-query share)."""
    end = anchor(conn)
    hour = end.replace(minute=0, second=0) - timedelta(hours=3)
    sid = add_statement(conn, "SELECT 1", 1)
    add_statement_history(conn, sid, end - timedelta(minutes=5), 4, 40)
    conn.execute("INSERT INTO perfmon.statement_history (server_id, ts, stmt_id, calls, exec_ms) "
                 "VALUES (2, %s, %s, 100, 900000)", (end - timedelta(minutes=5), sid))
    conn.execute("INSERT INTO perfmon.statement_hourly (server_id, ts, stmt_id, calls, exec_ms) "
                 "VALUES (1, %s, %s, 6, 60), (2, %s, %s, 1000, 9000000)", (hour, sid, hour, sid))
    conn.execute("INSERT INTO perfmon.meta (key, value) VALUES ('rollup_hourly_until', %s) "
                 "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                 ((hour + timedelta(hours=1)).isoformat(),))
    got = conn.execute("SELECT calls, exec_ms FROM perfmon.statement_totals(%s, %s)",
                       (end - timedelta(hours=4), end)).fetchall()
    assert got == [(10, 100)]
    d = health(conn, end, "4 hours")["components"]["database"]
    assert d["inputs"]["calls"] == 10 and d["inputs"]["slow_calls"] == 0


def test_adjacent_periods_count_a_sample_on_their_boundary_once(conn: psycopg.Connection) -> None:
    """Every component reads [from, to), as perfmon.server_totals and the rollups do: a sample
    exactly at the boundary of two adjacent periods (yesterday, today) is the later one's, in
    every component, and one at a period's start is its own. Each sample carries its own
    value, so which period counted it shows."""
    set_config(conn, business__apdex_target_ms=500)
    b = anchor(conn) - timedelta(hours=2)
    edges = [b - timedelta(hours=1), b, b + timedelta(hours=1)]  # the edges of two 1-hour periods
    add_samples(conn, edges)
    add_server_history(conn, edges, sessions_total=[10, 20, 30], xact_commit=[1, 10, 100])
    sid = add_statement(conn, "SELECT 1", 1)
    for t, calls in zip(edges, [1, 10, 100], strict=True):
        add_statement_history(conn, sid, t, calls, calls)
    conn.cursor().executemany(
        "INSERT INTO perfmon.replication_history (server_id, ts, kind, name, replay_lag_s) "
        "VALUES (1, %s, 'replica', 'r1', %s)", list(zip(edges, [1, 2, 4], strict=True)))
    web = add_agent(conn, "web", edges[-1])
    for t, cpu, ms in zip(edges, [10, 20, 40], [100, 1000, 5000], strict=True):
        add_host_metric(conn, "host.cpu.total_pct", cpu, t)
        add_heartbeat(conn, web, t, ms)
    conn.execute("INSERT INTO perfmon.server_starts (server_id, started_at) VALUES (1, %s), (1, %s)",
                 (b - timedelta(days=10), b))

    def counted(ending: datetime) -> dict:
        c = health(conn, ending)["components"]
        d, a, u = c["database"]["inputs"], c["agents"]["inputs"], c["user_satisfaction"]["inputs"]
        return {"database samples": d["samples"], "peak_connections_pct": d["peak_connections_pct"],
                "calls": d["calls"], "max_replay_lag_s": d["max_replay_lag_s"],
                "commits": c["cost_efficiency"]["inputs"]["commits"],
                "host samples": c["system"]["inputs"]["samples"],
                "cpu_avg_pct": c["system"]["inputs"]["cpu_avg_pct"],
                "heartbeats": a["heartbeats"], "p95_response_ms": a["p95_response_ms"],
                "apdex responses": u["total"], "satisfied": u["satisfied"], "tolerating": u["tolerating"],
                "availability samples": c["availability"]["inputs"]["samples"],
                "restarts": c["availability"]["inputs"]["restarts"]}

    yesterday, today = counted(b), counted(b + timedelta(hours=1))
    assert yesterday == {"database samples": 1, "peak_connections_pct": 10, "calls": 1, "max_replay_lag_s": 1,
                         "commits": 1, "host samples": 1, "cpu_avg_pct": 10, "heartbeats": 1,
                         "p95_response_ms": 100, "apdex responses": 1, "satisfied": 1, "tolerating": 0,
                         "availability samples": 1, "restarts": 0}
    assert today == {"database samples": 1, "peak_connections_pct": 20, "calls": 10, "max_replay_lag_s": 2,
                     "commits": 10, "host samples": 1, "cpu_avg_pct": 20, "heartbeats": 1,
                     "p95_response_ms": 1000, "apdex responses": 1, "satisfied": 0, "tolerating": 1,
                     "availability samples": 1, "restarts": 1}
    # The two periods together: each of the samples in [b - 1 h, b + 1 h) once, the restart once.
    two = health(conn, b + timedelta(hours=1), "2 hours")["components"]
    assert two["database"]["inputs"]["samples"] == 2 and two["database"]["inputs"]["calls"] == 11
    assert two["cost_efficiency"]["inputs"]["commits"] == 11
    assert two["system"]["inputs"]["samples"] == 2 and two["agents"]["inputs"]["heartbeats"] == 2
    assert two["user_satisfaction"]["inputs"]["total"] == 2
    assert two["availability"]["inputs"]["samples"] == 2 and two["availability"]["inputs"]["restarts"] == 1


def test_cost_efficiency_from_configured_cost_and_commits(conn: psycopg.Connection) -> None:
    end = anchor(conn)
    # perfmon.server_totals reads [from, to), as the rollups and perfmon.workload_trend do
    add_server_history(conn, minutes(end - timedelta(minutes=1), 60), xact_commit=1000, xact_rollback=5)
    h = health(conn, end)
    c = h["components"]["cost_efficiency"]
    assert c["score"] is None
    assert c["inputs"]["commits"] == 60000
    assert "business.instance_cost_per_hour is not configured" in c["missing"][0]

    set_config(conn, business__instance_cost_per_hour=2.0, business__revenue_per_hour=1200.0)
    c = health(conn, end)["components"]["cost_efficiency"]
    per_1k = 2.0 * 3600 / 3600 / (60000 / 1000)
    assert c["inputs"]["cost_per_1k_transactions"] == pytest.approx(per_1k, abs=1e-6)
    assert c["score"] is None and "target_cost_per_1k_transactions" in c["missing"][0]

    set_config(conn, business__target_cost_per_1k_transactions=0.01)
    h = health(conn, end)
    c = h["components"]["cost_efficiency"]
    assert c["checks"] == {"cost": r1(band(per_1k, 0.01, 0.02, 0.04))}
    impact = h["business_impact"]
    assert impact["infrastructure_cost"]["value"] == 2.0
    assert impact["transactions"]["value"] == 60000
    assert impact["cost_per_1k_transactions"]["value"] == pytest.approx(per_1k, abs=1e-6)
    assert impact["cost_per_1k_transactions"]["unit"] == "USD"


def test_period_s_and_infrastructure_cost_are_the_window_the_calendar_spans(conn: psycopg.Connection) -> None:
    # '1 month' ending 31 March starts on 29 February: 31 days, not the 30 of
    # extract(epoch FROM interval '1 month'); '1 day' across the spring DST change is 23 h.
    set_config(conn, business__instance_cost_per_hour=1.0)
    h = health(conn, datetime(2024, 3, 31, tzinfo=timezone.utc), "1 month")
    assert (h["from"], h["period_s"]) == ("2024-02-29T00:00:00+00:00", 31 * 86400)
    assert h["business_impact"]["infrastructure_cost"]["value"] == 31 * 24
    conn.execute("SET TimeZone = 'Europe/Paris'")
    h = health(conn, datetime(2024, 3, 31, 12, tzinfo=timezone.utc), "1 day")
    assert h["period_s"] == 23 * 3600
    assert h["business_impact"]["infrastructure_cost"]["value"] == 23


def test_overall_is_renormalised_over_the_present_components(conn: psycopg.Connection) -> None:
    end = anchor(conn)
    set_config(conn, business__availability_target_pct=95)
    times = minutes(end, 61)
    add_samples(conn, times[:20] + times[25:])          # availability: 300 s down
    for t in times[::10]:
        add_host_metric(conn, "host.cpu.total_pct", 87.5, t)
        add_host_metric(conn, "host.memory.used_pct", 50, t)
        add_host_metric(conn, "host.disk.used_pct", 50, t, mount="/")
    h = health(conn, end)
    c = h["components"]
    present = {n: v["score"] for n, v in c.items() if v["score"] is not None}
    assert set(present) == {"system", "availability"}
    system = r1((band(87.5, 80, 95, 100) + 100 + 100) / 3)
    avail = r1(band(100 * 300 / 3600, 5, 10, 50))
    assert present == {"system": system, "availability": avail}
    assert h["overall"] == r1((0.2 * system + 0.2 * avail) / 0.4)
    assert h["technical"] == system and h["business"] == avail
    assert h["coverage_pct"] == 40
    expected_risk = ("low" if h["overall"] >= 80 else "medium" if h["overall"] >= 60
                     else "high" if h["overall"] >= 40 else "critical")
    assert h["risk_level"] == expected_risk


def test_risk_and_recommendations(conn: psycopg.Connection) -> None:
    end = anchor(conn)
    for t in minutes(end, 6, 600):
        add_host_metric(conn, "host.cpu.total_pct", 20, t)
        add_host_metric(conn, "host.memory.used_pct", 20, t)
        add_host_metric(conn, "host.disk.used_pct", 99.5, t, mount="/")   # past critical: 0 < x < 50
    add_samples(conn, minutes(end, 61))
    h = health(conn, end)
    disk = r1(band(99.5, 80, 90, 100))
    assert h["components"]["system"]["checks"]["disk"] == disk
    titles = [r["title"] for r in h["recommendations"]]
    assert any(t.startswith(f"system disk scores {disk}") and "perfmon.storage_forecast" in t
               for t in titles), titles
    assert h["risk_level"] == "low"   # overall (0.2 x 73.3 + 0.2 x 100) / 0.4 = 86.7

    # A check at 0 raises the risk to at least high, whatever the mean.
    add_host_metric(conn, "host.disk.used_pct", 100, end - timedelta(minutes=1), mount="/data")
    h = health(conn, end)
    assert h["components"]["system"]["checks"]["disk"] == 0
    assert h["overall"] >= 60 and h["risk_level"] == "high"

    # Open advisor findings come first (critical first), with their id and SQL.
    found = end - timedelta(minutes=10)
    rid = add_recommendation(conn, "public.t(a)", severity="critical", benefit=80, seen=found)
    add_recommendation(conn, "public.u(b)", severity="info", benefit=10, seen=found)
    recs = health(conn, end)["recommendations"]
    assert recs[0]["source"] == "perfmon.recommendations" and recs[0]["id"] == rid
    assert recs[0]["severity"] == "critical" and recs[0]["component"] == "database"
    assert recs[1]["source"] == "perfmon.health_score" and recs[1]["severity"] == "critical"
    assert len(recs) <= 5
    assert {"title", "severity", "source", "component"} <= set(recs[0])


def test_recommendations_of_a_past_period_are_what_was_open_then(conn: psycopg.Connection) -> None:
    """A score of yesterday lists the findings and alerts open yesterday, not those open now."""
    end = anchor(conn)
    past = end - timedelta(days=1)                # yesterday's hour: [past - 1 h, past)
    before = past - timedelta(hours=2)
    still_open = add_recommendation(conn, "public.a(x)", seen=before)
    found_now = add_recommendation(conn, "public.b(y)", seen=end - timedelta(minutes=10))
    found_then = add_recommendation(conn, "public.c(z)", seen=past - timedelta(minutes=30))
    conn.execute("UPDATE perfmon.recommendation_log SET status = 'resolved', status_changed = %s, "
                 "status_reason = 'no longer found' WHERE id = %s",
                 (past - timedelta(minutes=10), found_then))

    def alert(rule: str, fired: datetime, resolved: datetime | None) -> int:
        return conn.execute(
            "INSERT INTO perfmon.alert_log (fingerprint, rule, target, state, level, value, first_seen, "
            "fired_at, last_seen, resolved_at) VALUES (%s, %s, 'db', %s, 'warning', 1, %s, %s, %s, %s) "
            "RETURNING alert_id", (rule + ":db", rule, "resolved" if resolved else "firing", fired, fired,
                                   resolved or end, resolved)).fetchone()[0]

    firing_now = alert("fired_now", end - timedelta(minutes=5), None)
    resolved_then = alert("resolved_then", past - timedelta(minutes=50), past - timedelta(minutes=20))
    # firing now, and an episode yesterday before it was reopened (kept in its 'reopened' event)
    reopened = alert("reopened", end - timedelta(minutes=10), None)
    conn.execute(
        "INSERT INTO perfmon.alert_events (alert_id, event, level, details) "
        "VALUES (%s, 'reopened', 'warning', jsonb_build_object('previous', jsonb_build_object("
        "'fired_at', %s::timestamptz, 'resolved_at', %s::timestamptz, 'level', 'critical')))",
        (reopened, past - timedelta(minutes=40), past - timedelta(minutes=30)))

    def listed(ending: datetime) -> tuple[set[int], set[int]]:
        recs = health(conn, ending)["recommendations"]
        return ({r["id"] for r in recs if r["source"] == "perfmon.recommendations"},
                {r["id"] for r in recs if r["source"] == "perfmon.alerts"})

    assert listed(past) == ({still_open, found_then}, {resolved_then, reopened})
    assert listed(end) == ({still_open, found_now}, {firing_now, reopened})
    # yesterday's episode of the reopened alert at the level it had then
    recs = health(conn, past)["recommendations"]
    episode = next(r for r in recs if r["id"] == reopened)
    assert episode["severity"] == "critical" and "(resolved at " in episode["title"]
    assert "first sighting and last status change only" in health(conn, past)["recommendations_how"]
    # a day before anything was found or fired: nothing
    assert listed(before - timedelta(hours=1)) == (set(), set())


def test_a_period_reaching_into_the_future_is_judged_up_to_now(conn: psycopg.Connection) -> None:
    """What has not happened yet is neither downtime nor a silent agent nor a cost spent."""
    end = anchor(conn)
    set_config(conn, business__revenue_per_hour=3600.0, business__instance_cost_per_hour=1.0)
    add_samples(conn, minutes(end, 61))
    web = add_agent(conn, "web", end)
    for t in minutes(end, 10):
        add_heartbeat(conn, web, t, 20)
    with conn.transaction():                 # one now() for the test and the score
        now = conn.execute("SELECT now()").fetchone()[0]
        h = health(conn, now + timedelta(minutes=30))
        a = h["components"]["availability"]["inputs"]
        assert (a["downtime_s"], a["observed_s"]) == (0, 1800)
        assert h["components"]["agents"]["inputs"]["agents_up"] == 1
        assert h["business_impact"]["revenue_at_risk"]["value"] == 0
        assert datetime.fromisoformat(h["judged_to"]) == now
        assert h["business_impact"]["infrastructure_cost"]["value"] == pytest.approx(0.5, abs=0.01)
        # wholly in the future: nothing measured, no outage
        h = health(conn, now + timedelta(days=1))
        assert h["overall"] is None and h["risk_level"] == "unknown"
        assert h["components"]["availability"]["score"] is None
        assert "has not begun" in h["components"]["availability"]["missing"][0]
        assert h["business_impact"]["revenue_at_risk"]["value"] is None
        assert h["business_impact"]["infrastructure_cost"]["value"] == 0


def test_bad_period_is_refused(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="positive interval"):
        conn.execute("SELECT perfmon.health_score('-1 hour')")
    for ending in ("infinity", "-infinity"):   # was "cannot subtract infinite timestamps"
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="ending must be a finite time"):
            conn.execute("SELECT perfmon.health_score('1 hour', %s::timestamptz)", (ending,))


def test_a_failing_component_is_reported_not_fatal(conn: psycopg.Connection) -> None:
    conn.execute("""CREATE FUNCTION perfmon.health_broken(timestamptz, timestamptz) RETURNS jsonb
                    LANGUAGE sql AS $$ SELECT (1 / 0)::text::jsonb $$""")
    conn.execute("INSERT INTO perfmon.health_components VALUES "
                 "('broken', 0.1, 'technical', 'perfmon.health_broken', 99, true, 'test')")
    h = health(conn, anchor(conn))
    assert h["components"]["broken"]["score"] is None
    assert "division by zero" in h["components"]["broken"]["missing"][0]
    assert h["components"]["database"]["missing"]  # the others still ran


def test_record_health_through_analyze_is_readable_by_the_reader(conn: psycopg.Connection) -> None:
    end = anchor(conn)
    add_samples(conn, minutes(end, 30))
    for t in minutes(end, 3, 300):
        add_host_metric(conn, "host.cpu.total_pct", 87.5, t)
    result = conn.execute("SELECT perfmon.analyze()").fetchone()[0]
    assert result["health"] == "recorded", result
    conn.execute("SELECT perfmon.analyze()")
    rows = conn.execute("SELECT * FROM perfmon.health ORDER BY ts").fetchall()
    assert len(rows) == 2
    cols = [c.name for c in conn.execute("SELECT * FROM perfmon.health LIMIT 0").description]
    assert cols[:13] == ["ts", "overall_score", "technical_score", "business_score", "database_score",
                         "system_score", "agents_score", "availability_score",
                         "user_satisfaction_score", "cost_efficiency_score", "coverage_pct",
                         "risk_level", "missing"]
    row = dict(zip(cols, rows[-1], strict=True))
    live = health(conn, anchor(conn))
    assert row["system_score"] == pytest.approx(live["components"]["system"]["score"])
    assert row["availability_score"] == 100
    assert "cost_efficiency" in row["missing"] and "agents" in row["missing"]
    assert "system.memory" in row["missing"]        # a check of a present component
    assert row["inputs"]["cpu_avg_pct"] == 87.5
    assert row["period_s"] == 3600
    # restart bookkeeping: this server's start time is recorded
    assert conn.execute("SELECT count(*) FROM perfmon.server_starts "
                        "WHERE started_at = pg_postmaster_start_time()").fetchone()[0] == 1

    conn.execute("SET ROLE perfmon_reader")
    try:
        assert conn.execute("SELECT count(*) FROM perfmon.health").fetchone()[0] == 2
        assert conn.execute("SELECT perfmon.health_score() ->> 'risk_level'").fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM perfmon.health_history")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT perfmon.record_health()")
    finally:
        conn.execute("RESET ROLE")


def test_health_history_is_partitioned_with_a_retention_key(conn: psycopg.Connection) -> None:
    assert conn.execute("SELECT granularity, retention_key FROM perfmon.partitioned_tables "
                        "WHERE table_name = 'health_history'").fetchone() == (
        "month", "business.health_retention_days")
    assert conn.execute("SELECT perfmon.setting('business.health_retention_days')::int").fetchone()[0] == 90
    # an old partition past retention is dropped whole by maintain_partitions
    conn.execute("SELECT count(*) FROM perfmon.maintain_partitions(now() - interval '200 days')")
    old = conn.execute("SELECT count(*) FROM pg_inherits "
                       "WHERE inhparent = 'perfmon.health_history'::regclass "
                       "AND inhrelid::regclass::text LIKE %s",
                       (f"%{(anchor(conn) - timedelta(days=200)).strftime('%Y%m')}",)).fetchone()[0]
    assert old == 1
    dropped = conn.execute("SELECT partition_name FROM perfmon.maintain_partitions() "
                           "WHERE action = 'dropped' AND partition_name LIKE 'health_history%'").fetchall()
    assert len(dropped) >= 1


def test_a_recorded_row_is_small(conn: psycopg.Connection) -> None:
    """Everything measured (the largest row): one row per interval must stay compact."""
    end = anchor(conn)
    set_config(conn, business__instance_cost_per_hour=1.0, business__target_cost_per_1k_transactions=1.0)
    times = minutes(end, 30)
    add_samples(conn, times)
    add_server_history(conn, times, blks_hit=900, blks_read=100, xact_commit=10, max_xid_age=5)
    sid = add_statement(conn, "SELECT 1", 1)
    add_statement_history(conn, sid, times[3], 10, 10)
    agent = add_agent(conn, "web", end)
    add_heartbeat(conn, agent, end, 12)
    for metric, value, labels in [("host.cpu.total_pct", 10, {}), ("host.memory.used_pct", 10, {}),
                                  ("host.disk.used_pct", 10, {"mount": "/"})]:
        add_host_metric(conn, metric, value, end, **labels)
    conn.execute("SELECT perfmon.record_health()")
    size, overall = conn.execute("SELECT pg_column_size(h.*), overall FROM perfmon.health_history AS h"
                                 ).fetchone()
    assert overall is not None
    print(f"a health_history row with everything measured: {size} bytes")
    assert size < 1000, f"a health_history row takes {size} bytes"


def test_business_configuration_is_validated(tmp_path: Path) -> None:
    defaults = config.load(None, env={})
    assert defaults.business.instance_cost_per_hour is None
    assert defaults.business.revenue_per_hour is None
    for key in ("instance_cost_per_hour", "revenue_per_hour", "target_cost_per_1k_transactions"):
        bad = tmp_path / f"{key}.yml"
        bad.write_text(f"business:\n  {key}: -5\n")
        with pytest.raises(config.ConfigError, match=re.escape(f"business.{key}: got -5")):
            config.load(bad, env={})
    bad = tmp_path / "target.yml"
    bad.write_text("business:\n  availability_target_pct: 100\n")
    with pytest.raises(config.ConfigError, match=re.escape("business.availability_target_pct: got 100")):
        config.load(bad, env={})


# --------------------------------------------------------------------------- BI


def bi_section() -> str:
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## BI tools\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no 'BI tools' section"
    return section.group(1)


def test_readme_bi_section_works_as_a_reader_login(conn: psycopg.Connection, server) -> None:
    """The README's CREATE ROLE / GRANT run as written (role renamed), and every example query
    runs through that login's privileges."""
    blocks = re.findall(r"```sql\n(.*?)```", bi_section(), re.S)
    assert len(blocks) >= 2
    setup, *queries = blocks
    assert "GRANT perfmon_reader TO" in setup
    login = f"bi_{secrets.token_hex(4)}"
    roles = set(re.findall(r"CREATE ROLE (\w+)", setup))
    assert len(roles) == 1
    setup_sql = setup.replace(roles.pop(), login)
    end = anchor(conn)
    add_samples(conn, minutes(end, 180))
    add_server_history(conn, minutes(end - timedelta(hours=2), 60), xact_commit=100, blks_hit=10,
                       blks_read=1)
    conn.execute("INSERT INTO perfmon.databases VALUES (1, 1, 'appdb') ON CONFLICT DO NOTHING")
    conn.execute("INSERT INTO perfmon.database_history "
                 "(server_id, ts, datid, xact_commit, blks_hit, blks_read) "
                 "SELECT 1, t, 1, 100, 10, 1 FROM unnest(%s::timestamptz[]) AS t",
                 (minutes(end - timedelta(hours=2), 60),))
    conn.execute("SELECT perfmon.rollup()")
    conn.execute("SELECT perfmon.record_health()")
    try:
        for statement in [s for s in setup_sql.split(";") if s.strip()]:
            conn.execute(statement)
        conn.execute(f"SET ROLE {login}")
        ran = 0
        for block in queries:
            for statement in [s for s in block.split(";") if s.strip()]:
                if "$__" in statement:   # Grafana macros: replaced with plain SQL for the test
                    statement = (statement.replace("$__timeFilter(ts)", "ts > now() - interval '1 day'")
                                 .replace("$__timeGroupAlias(ts, '1h')", "date_trunc('hour', ts) AS time"))
                rows = conn.execute(statement).fetchall()
                assert rows, f"the README example returned no row: {statement}"
                ran += 1
        assert ran >= 3
    finally:
        conn.execute("RESET ROLE")
        server.execute(f"DROP OWNED BY {login}; DROP ROLE IF EXISTS {login}")


def test_reader_reads_the_rollups(conn: psycopg.Connection) -> None:
    end = anchor(conn)
    hours_ago = end - timedelta(hours=3)
    add_samples(conn, [*minutes(hours_ago, 60), end])  # a sample after: the hours are complete
    add_server_history(conn, minutes(hours_ago, 60), sessions_total=7)
    conn.execute("INSERT INTO perfmon.databases VALUES (1, 1, 'appdb') ON CONFLICT DO NOTHING")
    conn.execute("INSERT INTO perfmon.database_history "
                 "(server_id, ts, datid, xact_commit, blks_hit, blks_read) "
                 "SELECT 1, t, 1, 36, 95, 5 FROM unnest(%s::timestamptz[]) AS t", (minutes(hours_ago, 60),))
    sid = add_statement(conn, "SELECT rollup_probe", 42)
    add_statement_history(conn, sid, hours_ago, 10, 50)
    conn.execute("SELECT perfmon.rollup()")
    conn.execute("SET ROLE perfmon_reader")
    try:
        s = conn.execute("SELECT sum(samples), max(max_sessions) FROM perfmon.server_rollup "
                         "WHERE bucket = 'hour'").fetchone()
        assert s == (60, 7)
        d = conn.execute("SELECT sum(xact_commit), min(cache_hit_pct) FROM perfmon.database_rollup "
                         "WHERE bucket = 'hour' AND database = 'appdb'").fetchone()
        assert d == (36 * 60, 95)
        q = conn.execute("SELECT calls, total_ms, mean_ms FROM perfmon.statement_rollup "
                         "WHERE bucket = 'hour' AND queryid = 42").fetchone()
        assert q == (10, 50, 5)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM perfmon.server_hourly")
    finally:
        conn.execute("RESET ROLE")


def test_readme_health_examples_run(conn: psycopg.Connection) -> None:
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Health score and executive report\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no health section"
    block = re.search(r"```sql\n(.*?)```", section.group(1), re.S)
    assert block
    conn.execute("SELECT perfmon.collect()")
    conn.execute("SELECT perfmon.analyze()")
    statements = [x for x in block.group(1).split(";") if x.strip()]
    assert len(statements) == 3
    for statement in statements:
        assert conn.execute(statement).fetchall()
