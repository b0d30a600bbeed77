"""Forecasts on prepared history whose answer is known: disk full (perfmon.storage_forecast
and the disk_full rows of perfmon.forecasts) and table growth.

Each history is written into perfmon's own tables the way the collectors would have
(size_history keeps a size only when it changed; the metric store every sample): a
linear growth must give an ETA near the true one with a 95% interval holding it on
noisy data, a flat one no ETA, a shrinking one none, too little history says so.

Interval coverage is counted over SERIES seeded series: a correct 95% interval holds the
truth in at least HELD of them with probability 99.7%; a one-standard-error (68%)
interval would pass only 1% of the time.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import numpy as np
import psycopg
import pytest
from advisor_helpers import set_config
from psycopg.rows import dict_row

STEP = 900  # collection.size_interval_seconds: one sizes run every 15 minutes
DAY = 86400.0
RUNS = 3 * 96  # three days of sizes runs
SERIES, HELD = 40, 34


def _now(conn: psycopg.Connection) -> datetime:
    return conn.execute("SELECT date_trunc('second', now())").fetchone()[0]


def _prepare(conn: psycopg.Connection, start: datetime) -> None:
    conn.execute("SELECT count(*) FROM perfmon.maintain_partitions(%s)", (start,))
    conn.execute("SELECT perfmon.ensure_day_partitions('metric_samples', %s, now())", (start,))


def _tables(conn: psycopg.Connection, names: list[str]) -> dict[str, int]:
    """Relations of the catalogue with ids no real table has: the sizes collector leaves them alone."""
    return dict(conn.execute(
        "INSERT INTO perfmon.relations (server_id, datid, relid, kind, schema_name, rel_name) "
        "SELECT 1, 0, 4000000000 + u.g, 'r', 'forecast', u.n "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS u(n, g) RETURNING rel_name, rel_id", (names,)).fetchall())


def _sizes(conn: psycopg.Connection, kind: str, object_id: int, points: list[tuple[datetime, float]]) -> None:
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO perfmon.size_history (server_id, ts, kind, object_id, size_bytes) "
                        "VALUES (1, %s, %s, %s, %s)", [(ts, kind, object_id, round(v)) for ts, v in points])


def _sizes_run(conn: psycopg.Connection, ts: datetime) -> None:
    """The sizes collector ran at ts (and stored only what changed)."""
    conn.execute("INSERT INTO perfmon.samples (server_id, ts, kind, interval_s, duration_ms, stages) "
                 "VALUES (1, %s, 'sizes', %s, 1, '{}')", (ts, STEP))


def _forecasts(conn: psycopg.Connection, forecast: str) -> dict[str, dict]:
    rows = conn.cursor(row_factory=dict_row).execute(
        "SELECT * FROM perfmon.forecasts WHERE forecast = %s", (forecast,)).fetchall()
    return {r["target"]: r for r in rows}


def _linear(start: datetime, n: int, level: float, per_day: float, noise: float, seed: int,
            step: float = STEP) -> list[tuple[datetime, float]]:
    rng = random.Random(seed)
    return [(start + timedelta(seconds=i * step), level + per_day * i * step / DAY + rng.gauss(0, noise))
            for i in range(n)]


def test_linear_trend_is_least_squares_with_fieller_interval(conn: psycopg.Connection) -> None:
    """Against numpy: the slope, and the interval found by scanning for the times at which
    the limit is inside the line's 95% confidence band (Student t quantiles)."""
    known = {1: 12.706, 2: 4.303, 10: 2.228, 30: 2.042, 60: 2.0003, 100: 1.98397, 1000: 1.96234}
    for df, t in known.items():
        got = conn.execute("SELECT perfmon.student_t_975(%s)", (df,)).fetchone()[0]
        assert got == pytest.approx(t, abs=2e-4), df
    assert conn.execute("SELECT perfmon.student_t_975(0.5)").fetchone()[0] is None
    for slope in (1.0, 0.01, 0.0, -0.2):
        _check_linear_trend(conn, slope)


def _check_linear_trend(conn: psycopg.Connection, slope: float) -> None:
    rng = np.random.default_rng(11)
    n = 40
    t = np.sort(rng.uniform(-3 * DAY, 0, n))
    t[-1] = 0.0
    y = 1000 + slope * t + rng.normal(0, 3000, n)
    limit = 100_000.0
    tm, ym = t.mean(), y.mean()
    sxx, sxy, syy = ((t - tm) ** 2).sum(), ((t - tm) * (y - ym)).sum(), ((y - ym) ** 2).sum()
    got = conn.cursor(row_factory=dict_row).execute(
        "SELECT *, perfmon.student_t_975(%s) AS k FROM perfmon.linear_trend(%s, %s, %s, %s, %s, %s, %s, %s)",
        (n - 2, n, tm, ym, sxx, sxy, syy, limit, -t[0])).fetchone()
    b = np.polyfit(t, y, 1)[0]
    s2 = ((y - ym - b * (t - tm)) ** 2).sum() / (n - 2)
    assert got["slope"] == pytest.approx(b, rel=1e-9)
    assert got["slope_se"] == pytest.approx(np.sqrt(s2 / sxx), rel=1e-9)
    grid = np.arange(0, 3650 * DAY, 60.0)
    band = got["k"] * np.sqrt(s2 * (1 / n + (grid - tm) ** 2 / sxx))
    inside = grid[np.abs(ym + b * (grid - tm) - limit) <= band]
    expected_trend = {1.0: "growing", 0.01: "growing", 0.0: "flat", -0.2: "shrinking"}[slope]
    assert got["trend"] == expected_trend
    if expected_trend == "shrinking":
        assert len(inside) == 0 and got["earliest_s"] is None and got["eta_s"] is None
        return
    assert got["earliest_s"] == pytest.approx(inside.min(), abs=61)
    if expected_trend == "growing":
        assert got["latest_s"] == pytest.approx(inside.max(), abs=61)
        assert got["earliest_s"] < got["eta_s"] < got["latest_s"]
        assert got["eta_s"] == pytest.approx(tm + (limit - ym) / b, rel=1e-9)
    else:  # flat: the data cannot exclude that it never gets there
        assert inside.max() == grid[-1] and got["latest_s"] is None and got["eta_s"] is None


def test_table_growth(conn: psycopg.Connection) -> None:
    now = _now(conn)
    start = now - timedelta(seconds=RUNS * STEP)
    _prepare(conn, start)
    noisy = [f"grows_{i}" for i in range(SERIES)]
    ids = _tables(conn, [*noisy, "flat", "flat_noisy", "grew_then_flat", "shrinks", "new", "brief"])
    rate = 40e6  # bytes a day
    for i, name in enumerate(noisy):
        _sizes(conn, "r", ids[name], _linear(start, RUNS + 1, 1e9, rate, 5e6, seed=i))
    _sizes(conn, "r", ids["flat"], [(start, 1e9)])  # stored once: it never changed since
    _sizes(conn, "r", ids["flat_noisy"], _linear(start, RUNS + 1, 1e9, 0, 5e6, seed=99))
    grew = [(start + timedelta(seconds=i * STEP), 1e9 + 5e8 * i / 95) for i in range(96)]
    _sizes(conn, "r", ids["grew_then_flat"], grew)  # a day of growth, then two days unchanged
    _sizes(conn, "r", ids["shrinks"], _linear(start, RUNS + 1, 1.5e9, -1.5e8, 1e6, seed=5))
    _sizes(conn, "r", ids["new"], [(now - timedelta(minutes=5), 1e6), (now, 2e6)])
    _sizes(conn, "r", ids["brief"], [(now - timedelta(minutes=6), 1e6), (now - timedelta(minutes=3), 2e6),
                                     (now, 3e6)])
    _sizes_run(conn, now)
    rows = _forecasts(conn, "table_growth")

    # Linear growth: the ETA (the size doubled) is near the true one and its interval holds it.
    held = 0
    for name in noisy:
        r = rows[f"forecast.{name}"]
        assert r["trend"] == "growing" and r["unit"] == "bytes", r
        assert float(r["growth_per_day"]) == pytest.approx(rate, rel=0.03)
        true_now = 1e9 + rate * RUNS * STEP / DAY
        true_eta = now + timedelta(days=(r["limit_value"] - true_now) / rate)
        assert abs((r["eta"] - true_eta).total_seconds()) < 0.03 * (true_eta - now).total_seconds(), name
        held += r["eta_earliest"] <= true_eta <= r["eta_latest"]
        assert (r["eta_latest"] - r["eta_earliest"]) < 0.2 * (true_eta - now)  # it says something
        assert r["severity"] == "warning" and 25 < float(r["days_left"]) < 32, r  # doubling in about 28 days
        assert r["based_on_points"] == RUNS + 1
    assert held >= HELD, f"the 95% interval held the true ETA for only {held} of {SERIES} series"

    # Stored once three days ago, observed unchanged by every sizes run since: flat, no ETA.
    flat = rows["forecast.flat"]
    assert flat["trend"] == "flat" and float(flat["growth_per_day"]) == 0
    assert flat["eta"] is None and flat["eta_earliest"] is None and flat["eta_latest"] is None
    assert flat["days_left"] is None and flat["severity"] == "ok" and "no ETA" in flat["note"]
    assert flat["based_on_points"] == RUNS + 1
    noisy_flat = rows["forecast.flat_noisy"]
    assert noisy_flat["trend"] == "flat" and noisy_flat["eta"] is None and noisy_flat["eta_latest"] is None
    assert noisy_flat["severity"] == "ok"

    # A day of growth then two flat days: the slope of all 289 runs, not of the 96 changes.
    r = rows["forecast.grew_then_flat"]
    runs = np.arange(RUNS + 1) * STEP
    observed = np.array([1e9 + 5e8 * min(i, 95) / 95 for i in range(RUNS + 1)])
    assert float(r["growth_per_day"]) == pytest.approx(np.polyfit(runs, observed, 1)[0] * DAY, rel=1e-6)
    assert float(r["growth_per_day"]) < 0.5 * 5e8 * 96 / 95  # what the 96 stored changes alone say
    assert r["current_value"] == 1.5e9

    shrinks = rows["forecast.shrinks"]
    assert shrinks["trend"] == "shrinking" and float(shrinks["growth_per_day"]) < 0
    assert shrinks["eta"] is None and shrinks["eta_earliest"] is None and shrinks["eta_latest"] is None
    assert shrinks["severity"] == "ok"

    for name, points in (("new", 2), ("brief", 3)):
        r = rows[f"forecast.{name}"]
        assert r["trend"] == "not enough history", r
        assert r["eta"] is None and r["eta_earliest"] is None and r["growth_per_day"] is None
        assert r["note"].startswith(f"not enough history for a trend: {points} observations over")

    # The advisor lists the tables that double within 30 days at the earliest, and no other
    # (grew_then_flat grew by half within the window: a linear trend over it still sees that).
    found = _advice(conn)
    assert set(found) == {f"table_growth: forecast.{name}" for name in [*noisy, "grew_then_flat"]}
    r = found["table_growth: forecast.grows_0"]
    assert r["severity"] == "warning" and r["benefit_unit"] == "days of headroom at the earliest"
    assert 25 < r["benefit"] < 30 and r["evidence"]["trend"] == "growing"


def _advice(conn: psycopg.Connection) -> dict[str, dict]:
    """Open findings of the advisor's forecast rule, after a refresh that runs only it."""
    conn.execute("UPDATE perfmon.advisor_rules SET enabled = (name = 'forecast')")
    result = conn.execute("SELECT perfmon.refresh_recommendations()").fetchone()[0]
    assert set(result["rules"]) == {"forecast"} and "error" not in result["rules"]["forecast"], result
    rows = conn.cursor(row_factory=dict_row).execute(
        "SELECT * FROM perfmon.recommendations WHERE rule = 'forecast' AND status = 'open'").fetchall()
    return {r["target"]: r for r in rows}


def test_disk_full_per_mount(conn: psycopg.Connection) -> None:
    now = _now(conn)
    step = float(STEP)
    n = RUNS + 1
    start = now - timedelta(seconds=(n - 1) * step)
    _prepare(conn, start)
    mounts = [f"/data{i}" for i in range(SERIES)] + ["/flat", "/new", "/soon"]
    labels = [f'{{"host": "db1", "mount": "{m}"}}' for m in mounts]
    used_ids = [r[0] for r in conn.execute(
        "SELECT series_id FROM perfmon.ingest_series(array_fill('host.disk.used_bytes'::text, ARRAY[%s]), "
        "%s::jsonb[], array_fill(NULL::text, ARRAY[%s])) ORDER BY ord", (len(mounts), labels, len(mounts)))]
    total_ids = [r[0] for r in conn.execute(
        "SELECT series_id FROM perfmon.ingest_series(array_fill('host.disk.total_bytes'::text, ARRAY[%s]), "
        "%s::jsonb[], array_fill(NULL::text, ARRAY[%s])) ORDER BY ord", (len(mounts), labels, len(mounts)))]
    total = 100e9
    rate = 1e9  # bytes a day: from 80 GB, full in about 17 days
    rows = []
    for i, (used, size) in enumerate(zip(used_ids, total_ids, strict=True)):
        if mounts[i] == "/new":
            series = [(now - timedelta(minutes=2), 50e9), (now, 50e9)]
        else:
            growth = {"/flat": 0, "/soon": 6e9}.get(mounts[i], rate)
            series = _linear(start, n, 80e9, growth, 0.2e9, seed=100 + i, step=step)
        rows += [(used, ts, v) for ts, v in series] + [(size, series[-1][0], total)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO perfmon.metric_samples (server_id, series_id, ts, value) "
                        "VALUES (1, %s, %s, %s)", rows)
    found = _forecasts(conn, "disk_full")
    held = 0
    for m in mounts[:SERIES]:
        r = found[f"{m} on db1"]
        assert r["trend"] == "growing" and r["limit_value"] == total, r
        true_eta = now + timedelta(days=(total - (80e9 + rate * (n - 1) * step / DAY)) / rate)
        assert abs((r["eta"] - true_eta).total_seconds()) < 0.05 * (true_eta - now).total_seconds(), m
        held += r["eta_earliest"] <= true_eta <= r["eta_latest"]
        assert r["severity"] == "warning" and 14 < float(r["days_left"]) < 20, r
    assert held >= HELD, f"the 95% interval held the true ETA for only {held} of {SERIES} mounts"
    flat, new, soon = found["/flat on db1"], found["/new on db1"], found["/soon on db1"]
    assert flat["trend"] == "flat" and flat["eta"] is None
    assert flat["eta_latest"] is None and flat["severity"] == "ok"
    assert new["trend"] == "not enough history" and new["eta"] is None
    assert soon["severity"] == "critical" and float(soon["days_left"]) < 1

    # Through the advisor to the alerts: critical findings raise alerts (alerting.recommendation_min_level).
    advice = _advice(conn)
    assert advice["disk_full: /soon on db1"]["severity"] == "critical"
    assert {t for t in advice if t.startswith("disk_full: /data")} == \
        {f"disk_full: {m} on db1" for m in mounts[:SERIES]}
    alerts = [r[0] for r in conn.execute("SELECT target FROM perfmon.alert_recommendations()")]
    assert alerts == ["forecast: disk_full: /soon on db1"]

    # A reader (a BI tool) reads the forecasts.
    conn.execute("SET ROLE perfmon_reader")
    try:
        for name in ("forecasts", "forecast_advice", "storage_forecast"):
            assert conn.execute(f"SELECT count(*) FROM perfmon.{name}").fetchone()[0] >= 1, name
    finally:
        conn.execute("RESET ROLE")


def test_storage_forecast_days_until_full(conn: psycopg.Connection) -> None:
    """The data directory's disk: free space read now, growth fitted to the databases' sizes."""
    now = _now(conn)
    start = now - timedelta(seconds=RUNS * STEP)
    _prepare(conn, start)
    conn.execute("DELETE FROM perfmon.size_history WHERE kind = 'd'")
    conn.execute("INSERT INTO perfmon.host_capacity (server_id, ts, data_directory, disk_total_bytes, "
                 "disk_free_bytes, ram_bytes, cpu_count) VALUES (1, now(), '/pgdata', 100e9, 30e9, 8e9, 4) "
                 "ON CONFLICT (server_id) DO UPDATE SET ts = now(), data_directory = '/pgdata', "
                 "disk_total_bytes = 100e9, disk_free_bytes = 30e9")
    _sizes_run(conn, now)
    database = 4000000000  # a database's oid in size_history (no real one: nothing else writes it)

    def forecast(points: list[tuple[datetime, float]]) -> dict:
        conn.execute("DELETE FROM perfmon.size_history WHERE kind = 'd'")
        _sizes(conn, "d", database, points)
        return conn.cursor(row_factory=dict_row).execute("SELECT * FROM perfmon.storage_forecast").fetchone()

    held = 0
    for seed in range(SERIES):  # 2 GB a day into 30 GB free: full in 15 days
        r = forecast(_linear(start, RUNS + 1, 5e9, 2e9, 50e6, seed=seed))
        assert r["trend"] == "growing", r
        assert float(r["days_until_full"]) == pytest.approx(15, rel=0.05)
        held += float(r["days_until_full_earliest"]) <= 15 <= float(r["days_until_full_latest"])
        assert r["severity"] == "warning" and r["benefit"] == r["days_until_full"]
        assert "full in" in r["finding"] and r["evidence"]["trend"] == "growing"
    assert held >= HELD, f"the 95% interval held the true 15 days for only {held} of {SERIES} histories"

    flat = forecast([(start, 5e9)])
    assert flat["trend"] == "flat" and flat["days_until_full"] is None
    assert flat["days_until_full_latest"] is None and flat["severity"] == "ok"
    assert "do not grow significantly" in flat["finding"]

    shrinking = forecast(_linear(start, RUNS + 1, 9e9, -1e9, 10e6, seed=3))
    assert shrinking["trend"] == "shrinking" and shrinking["days_until_full"] is None
    assert shrinking["days_until_full_earliest"] is None and shrinking["severity"] == "ok"

    new = forecast([(now - timedelta(minutes=4), 5e9), (now, 5.1e9)])
    assert new["trend"] == "not enough history" and new["days_until_full"] is None
    assert "not enough size history" in new["finding"] and new["severity"] == "ok"


def test_forecasts_read_their_own_window_not_the_anomaly_models(conn: psycopg.Connection) -> None:
    """A disk that grew 5 GB a day for a week, then 1 GB a day for a week: the forecast
    follows the last anomaly_detection.forecast_window_days (7), not the 28 days the
    anomaly models train on; widened to 14 days, it mixes both rates."""
    now = _now(conn)
    step, n = 3600.0, 14 * 24 + 1
    start = now - timedelta(seconds=(n - 1) * step)
    _prepare(conn, start)
    labels = ['{"host": "db1", "mount": "/window"}']
    used, size = (conn.execute(
        "SELECT series_id FROM perfmon.ingest_series(ARRAY[%s], %s::jsonb[], ARRAY[NULL::text])",
        (metric, labels)).fetchone()[0] for metric in ("host.disk.used_bytes", "host.disk.total_bytes"))
    half = (n - 1) // 2
    days = [i * step / DAY for i in range(n)]
    points = [(start + timedelta(days=d), 10e9 + 5e9 * min(d, days[half]) + 1e9 * max(d - days[half], 0))
              for d in days]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO perfmon.metric_samples (server_id, series_id, ts, value) "
                        "VALUES (1, %s, %s, %s)", [(used, ts, v) for ts, v in points] + [(size, now, 500e9)])
    setting = "SELECT perfmon.setting('anomaly_detection.training_window_days')::int"
    assert conn.execute(setting).fetchone()[0] == 28
    week = _forecasts(conn, "disk_full")["/window on db1"]
    assert float(week["growth_per_day"]) == pytest.approx(1e9, rel=0.02), week
    set_config(conn, "anomaly_detection.forecast_window_days", 14)
    fortnight = _forecasts(conn, "disk_full")["/window on db1"]
    assert 2e9 < float(fortnight["growth_per_day"]) < 5e9, fortnight


def test_a_dropped_table_has_no_growth_forecast(conn: psycopg.Connection) -> None:
    now = _now(conn)
    start = now - timedelta(seconds=RUNS * STEP)
    _prepare(conn, start)
    conn.execute("CREATE TABLE dropped_soon (id int)")
    conn.execute("INSERT INTO dropped_soon VALUES (1)")  # an empty table has no growth forecast
    conn.execute("SELECT perfmon.collect_sizes()")
    rel = conn.execute("SELECT rel_id FROM perfmon.relations WHERE rel_name = 'dropped_soon'").fetchone()[0]
    _sizes(conn, "r", rel, _linear(start, RUNS, 1e9, 40e6, 5e6, seed=1))
    _sizes_run(conn, now)
    assert _forecasts(conn, "table_growth")["public.dropped_soon"]["trend"] == "growing"
    conn.execute("DROP TABLE dropped_soon")
    conn.execute("SELECT perfmon.collect_sizes()")
    assert "public.dropped_soon" not in _forecasts(conn, "table_growth")
    assert "table_growth: public.dropped_soon" not in _advice(conn)


def test_connection_peaks_are_hourly_in_utc_whatever_the_session_time_zone(conn: psycopg.Connection) -> None:
    """Samples at :20 and :40 UTC: in Asia/Kolkata (UTC+5:30) each pair straddles a local hour.

    The forecast must not depend on the reader's time zone (a BI tool in India and a DBA in
    London read the same view)."""
    now = _now(conn)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=8)
    _prepare(conn, start)
    conn.execute("""
        INSERT INTO perfmon.server_history (server_id, ts, max_connections, sessions_total, sessions_active,
            sessions_idle, sessions_idle_in_xact, sessions_waiting, blocked_sessions)
        SELECT 1, date_trunc('hour', %s::timestamptz, 'UTC') + make_interval(hours => h, mins => m),
               100, 10 + 5 * h + m / 20, 1, 0, 0, 0, 0
        FROM generate_series(0, 5) AS h, unnest(ARRAY[20, 40]) AS m""", (start,))

    def forecast(zone: str) -> tuple:
        conn.execute("SELECT set_config('TimeZone', %s, false)", (zone,))
        row = _forecasts(conn, "connection_exhaustion")["client connections"]
        return row["based_on_points"], row["growth_per_day"], row["eta"]

    assert forecast("Asia/Kolkata") == forecast("UTC")


def test_an_empty_table_is_not_at_its_growth_limit(conn: psycopg.Connection) -> None:
    """Twice nothing is nothing: an empty table (pgbench_history before its first run) was
    reported at its limit, "0 of 0 bytes", critical, and raised a critical alert."""
    conn.execute("CREATE TABLE still_empty (id int)")
    conn.execute("SELECT perfmon.collect_sizes()")
    assert "public.still_empty" not in _forecasts(conn, "table_growth")
    assert "table_growth: public.still_empty" not in _advice(conn)
