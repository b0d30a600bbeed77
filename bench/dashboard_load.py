"""The three dashboards with 90 days of history: time until usable in headless Chromium.

Loads the synthetic 90 days of bench/history_views.py (1-minute samples, 25 statements,
10 tables, rolled up hourly and daily) plus 90 days of host metrics and recorded health
scores, application agents, alerts, anomaly episodes and recommendations. Then, for each
dashboard, served by `pgperfmon dashboard` (its 5-second cache of the report functions
off, so every load computes everything):

- server render: the page rendered by the server, all panels (median of RUNS);
- usable in Chromium: from the navigation command to the load event of the
  server-rendered page, whose panels are all filled when it loads (median of RUNS);
- baseline: the same page's HTML saved and loaded as a static file from a plain
  HTTP server in the same browser, in the same run.

Target (issue 8): each dashboard usable within 2 s.
"""

from __future__ import annotations

import functools
import http.server
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser import Browser
from history_views import DAYS, LOAD

from common import bench_cluster, fresh_database
from pgperfmon import dashboard

RUNS = 5
TARGET_S = 2.0

MORE = """
SELECT perfmon.ingest_metric(m, 35, now(), '{"host": "db-1"}')
FROM unnest(ARRAY['host.cpu.total_pct', 'host.memory.used_pct', 'host.disk.used_pct']) AS m;
INSERT INTO perfmon.metric_samples (server_id, series_id, ts, value)
SELECT 1, s.series_id, t.ts,
       CASE m.name WHEN 'host.cpu.total_pct' THEN 20 + random() * 60
                   WHEN 'host.memory.used_pct' THEN 50 + random() * 30 ELSE 40 + random() * 5 END
FROM ticks AS t
CROSS JOIN perfmon.metric_series AS s JOIN perfmon.metrics AS m USING (metric_id)
WHERE m.name IN ('host.cpu.total_pct', 'host.memory.used_pct', 'host.disk.used_pct');
INSERT INTO perfmon.health_history (server_id, ts, period_s, overall, technical, business, database,
    system, agents, availability, user_satisfaction, cost_efficiency, coverage_pct, risk_level, missing)
SELECT 1, ts, 3600, o, o, o, o, o, NULL, 100, o, NULL, 80, CASE WHEN o >= 80 THEN 'low' ELSE 'medium' END,
       ARRAY['agents', 'cost_efficiency']
FROM (SELECT ts, 60 + random() * 40 AS o FROM ticks) AS x;
SELECT perfmon.agent_heartbeat('app-' || a, 'ok', 20 + random() * 50) FROM generate_series(1, 5) AS a;
INSERT INTO perfmon.agent_heartbeats (server_id, ts, agent_id, status, response_ms, errors)
SELECT 1, t.ts, a.agent_id, 'ok', 20 + random() * 80, 0
FROM ticks AS t CROSS JOIN perfmon.agents AS a WHERE t.ts > now() - interval '1 day';
INSERT INTO perfmon.alert_log (fingerprint, rule, target, state, level, value, threshold, first_seen,
    fired_at, last_seen, resolved_at)
SELECT 'cpu:host' || g, 'cpu', 'host' || g, 'resolved', 'warning', 85, 80, ts, ts, ts + interval '10 minutes',
       ts + interval '10 minutes'
FROM (SELECT g, now() - make_interval(hours => g * 10) AS ts FROM generate_series(1, 200) AS g) AS x;
INSERT INTO perfmon.anomaly_episodes (server_id, detector, feature, started_at, last_seen_at, ended_at,
    samples, peak_score, peak_at, observed_value, expected_low, expected_high, contributors)
SELECT 1, 'envelope', 'db.transactions_per_s', ts, ts + interval '20 minutes', ts + interval '30 minutes',
       20, 3, ts, 900, 100, 300, '[{"feature": "db.transactions_per_s", "z": 5}]'
FROM (SELECT now() - make_interval(hours => g * 40) AS ts FROM generate_series(1, 50) AS g) AS x;
INSERT INTO perfmon.recommendation_log (fingerprint, rule, kind, severity, target, finding, evidence,
    apply_sql, benefit, benefit_unit, confidence, first_seen, last_seen, status, status_changed, applied_at)
SELECT 'bench:' || g, 'index_advice', 'index', 'warning', 'public.t' || g || '(c)',
       'an index on public.t' || g || ' (c) would cut the cost of 1 statement(s)',
       jsonb_build_object('statements', jsonb_build_array(jsonb_build_object('stmt_id', g))),
       'CREATE INDEX ON public.t' || g || ' (c);', 50, '% cost reduction', 'high',
       now() - interval '20 days', now(), CASE WHEN g <= 3 THEN 'applied' ELSE 'open' END, now(),
       CASE WHEN g <= 3 THEN now() - make_interval(days => g * 3) END
FROM generate_series(1, 20) AS g;
"""


def median_s(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s"


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_static(folder: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(Quiet, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def main() -> None:
    with bench_cluster() as cluster:
        dsn = fresh_database(cluster, "bench")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE perfmon.config SET value = '120' "
                         "WHERE key = 'collection.retention_days'")
            conn.execute("SELECT perfmon.maintain_partitions(now() - make_interval(days => d)) "
                         "FROM generate_series(0, %s) AS d", (DAYS,))
            started = time.perf_counter()
            with conn.transaction():
                conn.execute(LOAD)
                conn.execute(MORE)
            rolled = conn.execute("SELECT perfmon.rollup()").fetchone()[0]
            conn.execute("VACUUM ANALYZE")
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM perfmon.samples), "
                "(SELECT count(*) FROM perfmon.statement_history), "
                "(SELECT count(*) FROM perfmon.metric_samples), "
                "(SELECT count(*) FROM perfmon.health_history)"
            ).fetchone()
            print(f"loaded {DAYS} days: {counts[0]:,} samples, {counts[1]:,} statement rows, "
                  f"{counts[2]:,} metric values, {counts[3]:,} health scores in "
                  f"{time.perf_counter() - started:.0f} s; rollup {rolled}")

        server = dashboard.Server(dsn, port=0, refresh_s=10).start()
        server.site.cache.ttl_s = 0  # measure every load in full
        static_dir = Path(tempfile.mkdtemp(prefix="pgpm-static-"))
        static = serve_static(static_dir)
        try:
            with Browser(width=1400, height=1000) as browser:
                page = browser.new_page()
                page.send("Network.setCacheDisabled", cacheDisabled=True)
                for dash in dashboard.DASHBOARDS.values():
                    renders, panels = [], {}
                    for _ in range(RUNS):
                        start = time.perf_counter()
                        html = server.site.page(dash, "weekly", secrets.token_urlsafe(8))
                        renders.append(time.perf_counter() - start)
                    with server.pool.connection() as conn:
                        for panel in dash.panels:
                            start = time.perf_counter()
                            server.site.panel_body(dash, panel, conn, "weekly")
                            panels[panel.key] = time.perf_counter() - start
                    # The baseline: the same document without its refresh script, as a file.
                    static_html = re.sub(r"<script.*?</script>", "", html, flags=re.S)
                    (static_dir / f"{dash.key}.html").write_text(static_html, encoding="utf-8")
                    url = f"{server.url}/{dash.key}"
                    page.goto(url)  # warm: the browser's own start-up costs
                    usable, baseline, loaded, complete = [], [], [], []
                    for _ in range(RUNS):
                        start = time.perf_counter()
                        usable.append(page.goto(url))
                        pending = page.evaluate("document.querySelectorAll('[data-pending]').length")
                        loaded.append(page.evaluate(
                            "performance.getEntriesByType('navigation')[0].loadEventEnd") / 1000)
                        # Panels the server sent as placeholders are fetched by the page itself.
                        page.wait_for("!document.querySelector('[data-pending]')", timeout=60, interval=0.02)
                        complete.append(time.perf_counter() - start)
                        errors = page.evaluate("Array.from(document.querySelectorAll('.panel-error'), "
                                               "e => e.textContent.trim())")
                        filled = page.evaluate("document.querySelectorAll('section.panel h2').length")
                        baseline.append(page.goto(f"http://127.0.0.1:{static.server_address[1]}/"
                                                  f"{dash.key}.html"))
                    slowest = max(panels, key=panels.get)
                    verdict = "met" if statistics.median(usable) <= TARGET_S else "NOT MET"
                    ratio = statistics.median(usable) / statistics.median(baseline)
                    print(f"{dash.title:<22} usable in Chromium median {median_s(usable)} "
                          f"(max {max(usable):.3f} s; navigation loadEventEnd {median_s(loaded)}); "
                          f"server render {median_s(renders)}; static copy of the page "
                          f"{median_s(baseline)} ({ratio:.1f}x); {filled} panels, {pending} sent as "
                          f"placeholders, all filled after {median_s(complete)}; {len(errors)} errors; "
                          f"slowest panel alone {slowest} {panels[slowest]:.3f} s; "
                          f"target <= {TARGET_S:g} s: {verdict}")
                    for error in errors:
                        print(f"    panel error: {error}")
        finally:
            static.shutdown()
            server.close()
            shutil.rmtree(static_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
