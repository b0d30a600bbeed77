"""The three dashboards, served by `pgperfmon dashboard` and looked at in headless Chromium.

One database with prepared data and one dashboard server (refreshing every second)
for the module; what a person sees is checked against what the views return.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import html
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from browser import Browser, Page
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from report_helpers import HOST, HOSTILE_AGENT, HOSTILE_ALIAS, prepared_database

from helpers import tcp_settings
from pgperfmon import cli, dashboard, reader, rendering


@dataclass
class Site:
    dsn: str
    dbname: str
    url: str
    server: dashboard.Server


@pytest.fixture(scope="module")
def site(server) -> Iterator[Site]:
    with prepared_database(server) as (name, dsn):
        srv = dashboard.Server(dsn, port=0, refresh_s=1).start()
        try:
            yield Site(dsn, name, srv.url, srv)
        finally:
            srv.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser(width=1400, height=1000) as b:
        yield b


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    p = browser.new_page()
    try:
        yield p
    finally:
        p.close()


def texts(page: Page, selector: str) -> list[str]:
    return page.evaluate(f"Array.from(document.querySelectorAll({json.dumps(selector)}), "
                         "e => e.textContent.trim())")


def tile(page: Page, panel: str, label: str) -> str:
    return page.evaluate(
        f"document.querySelector('#panel-{panel} [data-figure={json.dumps(label)}]')?.textContent.trim()")


def chart_points(page: Page, panel: str, title: str) -> list[int]:
    """data-points of each drawn series of a chart, found by its caption."""
    return page.evaluate(f"""(() => {{
        const fig = Array.from(document.querySelectorAll('#panel-{panel} figure.chart'))
            .find(f => f.querySelector('figcaption').textContent.trim() === {json.dumps(title)});
        if (!fig) return null;
        return Array.from(fig.querySelectorAll('path.series'), p => Number(p.dataset.points));
    }})()""")


def one(dsn: str, query: str, *params: object) -> object:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params or None).fetchone()[0]


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


# --------------------------------------------------------------------------- the reader role

def test_the_dashboard_reads_as_perfmon_reader_and_cannot_write(site: Site) -> None:
    with site.server.pool.connection() as conn:
        assert conn.execute("SELECT current_user AS u").fetchone()["u"] == "perfmon_reader"
        for statement in ("UPDATE perfmon.config SET value = '1' WHERE key = 'collection.interval_seconds'",
                          "SELECT perfmon.collect()",
                          "CREATE TABLE public.dashboard_was_here (x int)"):
            with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)):
                conn.execute(statement)
    assert one(site.dsn, "SELECT value FROM perfmon.config WHERE key = 'collection.interval_seconds'") == 60


def test_a_login_that_cannot_act_as_reader_is_refused(site: Site, server) -> None:
    password = "pw-" + "x" * 12
    server.execute("CREATE ROLE dash_outsider LOGIN PASSWORD 'pw-xxxxxxxxxxxx'")
    try:
        parts = conninfo_to_dict(site.dsn)
        parts.pop("passfile", None)
        dsn = make_conninfo(**{**parts, "user": "dash_outsider", "password": password})
        with pytest.raises(reader.ReaderError, match=r'GRANT perfmon_reader TO "dash_outsider"'):
            dashboard.Server(dsn, port=0)
        result = CliRunner().invoke(cli.main, ["dashboard", "--dsn", dsn, "--port", "0"])
        assert result.exit_code == 1
        assert result.output.startswith("error: the login dash_outsider may not act as perfmon_reader")
        assert password not in result.output and "Traceback" not in result.output
    finally:
        server.execute("DROP ROLE dash_outsider")


# --------------------------------------------------------------------------- Real-time Operations

def test_operations_dashboard_shows_the_views_figures_and_draws_charts(
        site: Site, page: Page, artifacts: Path) -> None:
    page.goto(f"{site.url}/ops")
    assert page.evaluate("document.title") == "Real-time Operations — pgperfmon"
    assert texts(page, "section.panel > h2") == [
        "Health", "Connections", "Active alerts and recovery", "Host CPU and memory (last hour)",
        "Database (last hour)", "Application agents", "Slow queries (last 24 h)", "Index advice"]
    assert texts(page, ".panel-error") == []

    # Host: the latest sample of perfmon.host_metrics, and one line of 3 points per chart.
    cpu, mem = (float(v) for v in one(site.dsn, """SELECT array[cpu_total_pct, memory_used_pct]
        FROM perfmon.host_metrics WHERE host = %s ORDER BY ts DESC LIMIT 1""", HOST))
    assert (cpu, mem) == (42.5, 61.2)
    assert tile(page, "host", f"{HOST} CPU") == "42.5%"
    assert tile(page, "host", f"{HOST} memory") == "61.2%"
    assert chart_points(page, "host", "CPU busy") == [3]
    assert chart_points(page, "host", "Memory in use") == [3]

    # Database: the newest perfmon.database_series row; TPS drawn from its samples.
    tps, samples = one(site.dsn, """SELECT array[(SELECT tps FROM perfmon.database_series ORDER BY ts DESC
        LIMIT 1), (SELECT count(*) FROM perfmon.database_series WHERE ts > now() - interval '1 hour')]""")
    assert float(tile(page, "database", "Transactions/s").replace(",", "")) == pytest.approx(
        float(tps), abs=0.005)
    assert chart_points(page, "database", "Transactions per second") == [samples]

    # Health: perfmon.health_score()'s overall figure.
    overall = one(site.dsn, "SELECT (perfmon.health_score() ->> 'overall')::float8")
    shown = tile(page, "health", "Overall health")
    assert shown == "not measured" if overall is None else float(shown) == pytest.approx(overall, abs=0.05)

    # Alerts: the firing alert of perfmon.alerts, with its summary.
    summary = one(site.dsn, "SELECT summary FROM perfmon.alerts WHERE state = 'firing'")
    assert summary in texts(page, "#panel-alerts td")

    # Connections: the latest sample of perfmon.connection_usage.
    total, active = one(site.dsn, "SELECT array[total, active] FROM perfmon.connection_usage "
                                  "WHERE NOT live ORDER BY ts DESC LIMIT 1")
    assert (tile(page, "connections", "Connections"), tile(page, "connections", "Active")) == \
        (str(total), str(active))
    assert total >= 1

    # Agents, by name; the hostile name is text, not markup.
    agents = page.evaluate("Array.from(document.querySelectorAll('#panel-agents tr[data-agent]'), "
                           "r => r.dataset.agent)")
    assert sorted(agents) == sorted([HOSTILE_AGENT, "checkout"])
    assert HOSTILE_AGENT in texts(page, "#panel-agents td")

    # Slow queries: the statement above the 5 ms threshold, its text shown as text.
    assert any(HOSTILE_ALIAS in t for t in texts(page, "#panel-slow_queries code.query"))
    assert page.evaluate("window.__xss") is None
    assert page.evaluate("document.querySelectorAll('main script, main img').length") == 0
    page.screenshot(artifacts / "dashboard-ops.png")


def test_operations_dashboard_refreshes_itself(site: Site, page: Page, artifacts: Path) -> None:
    page.goto(f"{site.url}/ops")
    assert tile(page, "host", f"{HOST} CPU") == "42.5%"
    with psycopg.connect(site.dsn, autocommit=True) as conn:
        conn.execute("SELECT perfmon.ingest_metric('host.cpu.total_pct', 77.7, now(), "
                     "jsonb_build_object('host', %s::text))", (HOST,))
        conn.execute("SELECT perfmon.agent_heartbeat('billing', 'ok', 20)")
    # No reload: the panels' own refresh (every second here) brings the new figures.
    assert page.wait_for(f"document.querySelector('#panel-host [data-figure={json.dumps(HOST + ' CPU')}]')"
                         "?.textContent.trim() === '77.7%'", timeout=10)
    assert page.wait_for("!!document.querySelector('#panel-agents tr[data-agent=\"billing\"]')", timeout=10)
    assert page.wait_for("Number(document.body.dataset.refreshes) >= 1", timeout=10)
    assert chart_points(page, "host", "CPU busy") == [4]
    page.screenshot(artifacts / "dashboard-ops-refreshed.png")


def test_a_long_unbroken_agent_name_keeps_the_agents_columns_in_view(site: Site, browser: Browser) -> None:
    # An agent name may be 200 characters: one without a space widened its table past the
    # panel, so on a 1000 px screen the health column (is it down?) was 700 px out of view.
    name = "A" * 190
    with psycopg.connect(site.dsn, autocommit=True) as conn:
        conn.execute("SELECT perfmon.agent_heartbeat(%s, 'ok', 20)", (name,))
    narrow = browser.new_page()
    try:
        narrow.send("Emulation.setDeviceMetricsOverride", width=1000, height=800, deviceScaleFactor=1,
                    mobile=False)
        narrow.goto(f"{site.url}/ops")
        assert narrow.wait_for(f"!!document.querySelector('#panel-agents tr[data-agent={json.dumps(name)}]')",
                               timeout=10)
        overflowing = narrow.evaluate(
            "Array.from(document.querySelectorAll('section.panel'))"
            ".filter(s => s.scrollWidth > s.clientWidth + 1).map(s => s.id)")
        assert overflowing == []
        health = narrow.evaluate("document.querySelector('#panel-agents th:nth-child(2)')"
                                 ".getBoundingClientRect().right")
        assert health < 1000
    finally:
        narrow.close()
        with psycopg.connect(site.dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM perfmon.agents WHERE name = %s", (name,))


def test_more_open_alerts_than_the_panel_lists_are_counted(installed: str, page: Page) -> None:
    # The panel lists the 25 worst open alerts: with 30 open it showed 25 and never said that
    # there were more, in the middle of an incident.
    with psycopg.connect(installed, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO perfmon.alert_log (fingerprint, rule, target, state, level, value, first_seen, "
            "fired_at, last_seen) SELECT 'flood:' || i, 'flood', 'app' || i, 'firing', 'warning', i, "
            "now(), now(), now() FROM generate_series(1, 30) AS i")
    srv = dashboard.Server(installed, port=0, refresh_s=30).start()
    try:
        page.goto(f"{srv.url}/ops")
        assert page.evaluate("document.querySelectorAll('#panel-alerts tr[data-alert]').length") == 25
        assert "the 25 worst of 30 open alerts; every one is in perfmon.alerts" in " ".join(
            texts(page, "#panel-alerts .how"))
        with psycopg.connect(installed, autocommit=True) as conn:
            conn.execute("UPDATE perfmon.alert_log SET state = 'resolved', resolved_at = now() "
                         "WHERE fingerprint > 'flood:2'")
        page.goto(f"{srv.url}/ops")
        assert page.evaluate("document.querySelectorAll('#panel-alerts tr[data-alert]').length") == 12
        assert "worst of" not in " ".join(texts(page, "#panel-alerts .how"))
    finally:
        srv.close()


def test_a_missing_value_is_shown_empty_not_as_none(installed: str) -> None:
    # An alert of a rule without a business impact (a custom rule, a rule since dropped)
    # showed "None" in the impact column: Jinja writes None as that word.
    with psycopg.connect(installed, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO perfmon.alert_log (fingerprint, rule, target, state, level, value, first_seen, "
            "fired_at, last_seen) VALUES ('gone:app', 'gone', 'app', 'firing', 'warning', 1, now(), "
            "now(), now())")
    srv = dashboard.Server(installed, port=0, refresh_s=30).start()
    try:
        status, fragment, _ = get(f"{srv.url}/panel/ops/alerts")
        assert status == 200 and "WARNING gone on app" in fragment
        assert ">None<" not in fragment
    finally:
        srv.close()


# --------------------------------------------------------------------------- Executive

def test_executive_dashboard_shows_the_reports_figures(site: Site, page: Page, artifacts: Path) -> None:
    page.goto(f"{site.url}/executive?period=weekly")
    assert page.evaluate("document.title") == "Executive — pgperfmon"
    assert texts(page, "section.panel > h2") == [
        "Key figures", "Financial impact", "Risk now", "What runs out, and when", "Trends"]
    assert texts(page, ".panel-error") == []
    report = one(site.dsn, "SELECT perfmon.executive_report('weekly')")
    es, tp, fi = report["executive_summary"], report["technical_performance"], report["financial_impact"]
    headline = page.evaluate("document.querySelector('#panel-kpis .headline').textContent.trim()")
    assert headline == es["headline"]
    # Each key figure as the report has it (formatted by the digest the report messages use too).
    digest = rendering.digest()
    figures = {"Health score (average)": es["health"]["average"], "Availability": es["availability_pct"],
               "Apdex": es["apdex"], "Transactions": tp["transactions"],
               "Transactions per second (mean)": tp["tps_avg"], "Mean statement time": tp["mean_query_ms"],
               "Buffer cache hit": tp["cache_hit_pct"]}
    for label, node in figures.items():
        assert tile(page, "kpis", label) == digest.figure(node), label
    assert int(tile(page, "kpis", "Transactions").replace(",", "")) == tp["transactions"]["value"] > 0
    # A figure that cannot be computed says so, and how.
    assert fi["infrastructure_cost"]["value"] is None
    assert tile(page, "financial", "Infrastructure cost") == "not measured"
    hows = texts(page, "#panel-financial .tile .how")
    assert fi["infrastructure_cost"]["how"] in hows
    # Every figure tile carries its "how" as a tooltip.
    assert page.evaluate("Array.from(document.querySelectorAll('#panel-kpis .tile'))"
                         ".every(t => t.title.length > 0)")
    # Trends: the TPS chart is drawn from perfmon.workload_trend's points.
    assert chart_points(page, "trends", "Transactions per second")[0] >= 1
    assert chart_points(page, "trends", "Health score")[0] == len(tp["health_trend"])
    page.screenshot(artifacts / "dashboard-executive.png")

    page.goto(f"{site.url}/executive?period=daily")
    assert "daily" in page.evaluate("document.querySelector('.periods a.current').textContent")
    daily = one(site.dsn, "SELECT perfmon.executive_report('daily')")
    assert page.evaluate("document.querySelector('#panel-kpis .headline').textContent.trim()") == \
        daily["executive_summary"]["headline"]


# --------------------------------------------------------------------------- Developer

def test_developer_dashboard_shows_queries_optimisations_anomalies_events(
        site: Site, page: Page, artifacts: Path) -> None:
    page.goto(f"{site.url}/developer")
    assert page.evaluate("document.title") == "Developer — pgperfmon"
    assert texts(page, ".panel-error") == []
    top = one(site.dsn, "SELECT array_agg(stmt_id ORDER BY rank) FROM (SELECT rank, stmt_id "
                        "FROM perfmon.top_queries WHERE stmt_id <> 0 ORDER BY rank LIMIT 15) t")
    shown = page.evaluate("Array.from(document.querySelectorAll('#panel-queries tr[data-stmt]'), "
                          "r => Number(r.dataset.stmt))")
    assert shown == top
    assert len(chart_points(page, "queries", "Total execution time, last 24 h")) == 0  # bars, not lines
    assert page.evaluate("document.querySelectorAll('#panel-queries figure[data-chart=bar] rect.bar')"
                         ".length") == min(len(top), 10)

    # Optimisation tracking: the executive report's before/after of the applied recommendation.
    items = one(site.dsn, "SELECT perfmon.executive_report('monthly') #> "
                          "'{financial_impact,savings_from_applied_recommendations,items}'")
    assert len(items) == 1
    row = texts(page, "#panel-optimisations tr[data-recommendation] td")
    assert "an index on public.orders (customer_id)" in row[1]
    assert float(row[3]) == pytest.approx(float(items[0]["mean_ms_before"]), abs=0.05)
    assert float(row[4]) == pytest.approx(float(items[0]["mean_ms_after"]), abs=0.05)

    # Anomalies with their explanation (impact and actions of the feature).
    impact = one(site.dsn, "SELECT business_impact FROM perfmon.anomalies")
    anomaly = " ".join(texts(page, "#panel-anomalies tr[data-episode] td"))
    assert impact in anomaly and "db.transactions_per_s" in anomaly

    # Events: the alert that fired is on the timeline.
    events = " ".join(texts(page, "#panel-events td"))
    assert "alert firing: test_gauge on app1" in events
    assert page.evaluate("window.__xss") is None
    page.screenshot(artifacts / "dashboard-developer.png")


def test_panels_not_ready_in_time_arrive_as_placeholders_the_page_fills(site: Site, page: Page) -> None:
    site.server.site.page_budget_s = 0.0  # as if every view were slow
    try:
        status, body, _ = get(f"{site.url}/developer")
        assert status == 200 and body.count('data-pending="1"') == 4
        assert "Still reading perfmon.events" in body
        page.goto(f"{site.url}/developer")
        assert page.wait_for("!document.querySelector('[data-pending]')", timeout=10)
        assert texts(page, ".panel-error") == []
        assert "alert firing: test_gauge on app1" in " ".join(texts(page, "#panel-events td"))
    finally:
        site.server.site.page_budget_s = dashboard.PAGE_BUDGET_S


# --------------------------------------------------------------------------- failures shown on the panel

def test_a_failing_panel_shows_the_error_and_the_rest_renders(site: Site, page: Page) -> None:
    with psycopg.connect(site.dsn, autocommit=True) as conn:
        conn.execute("REVOKE SELECT ON perfmon.agent_health FROM perfmon_reader")
    try:
        status, body, _ = get(f"{site.url}/ops")
        assert status == 200 and "Traceback" not in body
        page.goto(f"{site.url}/ops")
        errors = texts(page, ".panel-error")
        assert errors == ["Could not read perfmon.agent_health: permission denied for view agent_health"]
        assert chart_points(page, "host", "Memory in use") == [3]
    finally:
        with psycopg.connect(site.dsn, autocommit=True) as conn:
            conn.execute("GRANT SELECT ON perfmon.agent_health TO perfmon_reader")


def test_sessions_ended_under_the_dashboard_are_replaced_without_showing_an_error(site: Site) -> None:
    # A restart, a failover or pg_terminate_backend ends the pooled sessions while idle: each
    # panel that next drew one showed "terminating connection due to administrator command".
    srv = dashboard.Server(site.dsn, port=0, refresh_s=30).start()
    try:
        status, body, _ = get(f"{srv.url}/api/ops")
        assert status == 200 and "Could not read" not in body
        with psycopg.connect(site.dsn, autocommit=True) as conn:
            ended = conn.execute(
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = 'pgperfmon dashboard'",
                (site.dbname,)).fetchone()[0]
        assert ended >= 2
        status, body, _ = get(f"{srv.url}/api/ops")
        assert status == 200
        panels = json.loads(body)
        assert [k for k, v in panels.items() if "Could not read" in v] == [], panels
    finally:
        srv.close()


def test_sessions_give_up_on_a_server_that_stops_answering(site: Site) -> None:
    # With the network to the server blackholed mid-query, a panel's session waited on its
    # socket for hours: the pool's slots filled and every panel said the connections were busy.
    with site.server.pool.connection() as conn:
        assert tcp_settings(conn) == {"keepalive": 1, "idle_s": 30, "interval_s": 10, "count": 3,
                                      "user_timeout_ms": 60_000}
        assert conn.execute("SHOW statement_timeout").fetchone() == {"statement_timeout": "15s"}


def test_the_dsns_own_timeouts_are_kept(site: Site) -> None:
    dsn = make_conninfo(site.dsn, keepalives_idle="7", tcp_user_timeout="5000",
                        options="-c statement_timeout=2500")
    pool = dashboard.Pool(dsn, size=1)
    try:
        with pool.connection() as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == {"statement_timeout": "2500ms"}
            assert tcp_settings(conn) == {"keepalive": 1, "idle_s": 7, "interval_s": 10, "count": 3,
                                          "user_timeout_ms": 5000}
    finally:
        pool.close()


def test_a_service_files_settings_are_kept(site: Site, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # libpq expands service= from pg_service.conf: its keepalive setting and application_name
    # were replaced by ours, as the DSN's own keywords are not there to be seen.
    service = tmp_path / "pg_service.conf"
    service.write_text("[bi]\n" + "".join(f"{k}={v}\n" for k, v in conninfo_to_dict(site.dsn).items())
                       + "keepalives_idle=7\napplication_name=bi-dashboard\n")
    monkeypatch.setenv("PGSERVICEFILE", str(service))
    pool = dashboard.Pool("service=bi", size=1)
    try:
        with pool.connection() as conn:
            assert tcp_settings(conn)["idle_s"] == 7
            assert conn.execute("SHOW application_name").fetchone() == {"application_name": "bi-dashboard"}
    finally:
        pool.close()


def test_a_panel_past_its_statement_timeout_says_so_and_frees_its_connection(site: Site) -> None:
    # One connection in the pool, so that the second request shows it was given back.
    srv = dashboard.Server(make_conninfo(site.dsn, options="-c statement_timeout=1000"), port=0,
                           refresh_s=30, pool_size=1).start()
    try:
        with psycopg.connect(site.dsn) as locker:  # the lock is held until the transaction ends
            locker.execute("LOCK TABLE perfmon.agent_health IN ACCESS EXCLUSIVE MODE")
            status, body, _ = get(f"{srv.url}/panel/ops/agents")
        assert status == 200
        assert ("Could not read perfmon.agent_health: canceling statement due to statement timeout "
                "— the dashboard ends a panel's query after its statement_timeout: does another "
                "session hold a lock on what it reads (perfmon.blocking_locks)?") in html.unescape(body)
        status, body, _ = get(f"{srv.url}/panel/ops/agents")
        assert status == 200 and "Could not read" not in body and "checkout" in body
    finally:
        srv.close()


def test_an_empty_database_shows_no_data_notes(installed: str, page: Page, artifacts: Path) -> None:
    srv = dashboard.Server(installed, port=0, refresh_s=30).start()
    try:
        for name in ("ops", "executive", "developer"):
            status, body, _ = get(f"{srv.url}/{name}")
            assert status == 200 and "Traceback" not in body
            page.goto(f"{srv.url}/{name}")
            assert texts(page, ".panel-error") == [], name
            assert page.evaluate("document.querySelectorAll('main .empty, figure.nodata').length") > 0
        page.goto(f"{srv.url}/ops")
        assert "no host sample in the last hour" in " ".join(texts(page, "#panel-host .nodata-note"))
        page.screenshot(artifacts / "dashboard-ops-empty.png")
    finally:
        srv.close()


def test_unknown_pages_bad_periods_and_foreign_hosts_get_readable_answers(site: Site) -> None:
    status, body, headers = get(f"{site.url}/nope")
    assert status == 404 and "No page /nope." in body
    status, body, _ = get(f"{site.url}/executive?period=yearly")
    assert status == 400 and "Unknown period &#39;yearly&#39;" in body
    status, body, _ = get(f"{site.url}/ops", {"Host": "attacker.example"})
    assert status == 421
    status, body, headers = get(f"{site.url}/ops")
    csp = headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert "default-src 'none'" in csp and f'<script nonce="{nonce}">' in body
    assert not re.search(r"(src|href)=\"https?://", body), "no external asset"
    status, fragment, _ = get(f"{site.url}/panel/ops/agents")
    assert status == 200 and "&lt;script&gt;" in fragment and HOSTILE_AGENT not in fragment


def test_an_ipv6_host_with_or_without_a_port_is_answered_and_hostile_hosts_are_not(site: Site) -> None:
    # The brackets' colons were read as the port's: Host [::1] became "[:" and got a 421.
    port = site.server.port
    for host in ("[::1]", f"[::1]:{port}", "[::1]:", "LOCALHOST", f"127.0.0.1:{port}"):
        status, body, _ = get(f"{site.url}/healthz", {"Host": host})
        assert (status, body) == (200, "ok\n"), host
    for host in ("::1", "[::1]evil.example", "[::1]:80:80", "[::1]:port", "attacker.example:80",
                 "localhost.attacker.example", "[::2]", "127.0.0.1:80@attacker.example", "[127.0.0.1"):
        status, body, _ = get(f"{site.url}/healthz", {"Host": host})
        assert status == 421 and "answers to 127.0.0.1, ::1, localhost only" in body, host
    # Listening on ::1, it is reached at [::1] like anywhere else.
    srv = dashboard.Server(site.dsn, host="::1", port=0, refresh_s=30).start()
    try:
        assert srv.url == f"http://[::1]:{srv.port}"
        assert get(f"{srv.url}/healthz")[:2] == (200, "ok\n")
        assert get(f"{srv.url}/healthz", {"Host": "[::1]"})[:2] == (200, "ok\n")
        assert get(f"{srv.url}/healthz", {"Host": "attacker.example"})[0] == 421
    finally:
        srv.close()
