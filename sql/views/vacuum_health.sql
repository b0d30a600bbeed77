CREATE OR REPLACE VIEW perfmon.vacuum_health AS
WITH cfg AS (
    SELECT perfmon.setting('optimization.dead_tuple_max_pct')::numeric AS max_dead_pct,
           perfmon.setting('optimization.advice_window_days')::int AS window_days,
           current_setting('autovacuum')::boolean AS autovacuum_on,
           current_setting('autovacuum_vacuum_threshold')::numeric AS base_threshold,
           current_setting('autovacuum_vacuum_scale_factor')::numeric AS base_scale,
           -- autovacuum's own cost settings, -1 meaning "use vacuum_cost_*"
           coalesce(nullif((SELECT setting::numeric FROM pg_settings        -- in ms
                            WHERE name = 'autovacuum_vacuum_cost_delay'), -1),
                    (SELECT setting::numeric FROM pg_settings WHERE name = 'vacuum_cost_delay'))
               AS base_cost_delay_ms,
           coalesce(nullif(current_setting('autovacuum_vacuum_cost_limit')::numeric, -1),
                    current_setting('vacuum_cost_limit')::numeric) AS base_cost_limit,
           current_setting('vacuum_cost_page_hit')::numeric AS page_hit_cost,
           extract(epoch FROM current_setting('autovacuum_naptime')::interval) AS naptime_s
),
t AS (
    SELECT c.oid, n.nspname AS schema_name, c.relname AS table_name, c.reltuples,
           pg_stat_get_live_tuples(c.oid) AS n_live_tup,
           pg_stat_get_dead_tuples(c.oid) AS n_dead_tup,
           greatest(pg_stat_get_last_autovacuum_time(c.oid), pg_stat_get_last_vacuum_time(c.oid)) AS last_vacuum,
           pg_stat_get_last_autovacuum_time(c.oid) AS last_autovacuum,
           coalesce((SELECT o !~* '=(false|off|no|0)$' FROM unnest(c.reloptions) AS o
                     WHERE o LIKE 'autovacuum\_enabled=%'), true) AS table_autovacuum,
           (SELECT substring(o FROM '=(.*)$')::numeric FROM unnest(c.reloptions) AS o
            WHERE o LIKE 'autovacuum\_vacuum\_threshold=%') AS own_threshold,
           (SELECT substring(o FROM '=(.*)$')::numeric FROM unnest(c.reloptions) AS o
            WHERE o LIKE 'autovacuum\_vacuum\_scale\_factor=%') AS own_scale,
           (SELECT substring(o FROM '=(.*)$')::numeric FROM unnest(c.reloptions) AS o
            WHERE o LIKE 'autovacuum\_vacuum\_cost\_delay=%') AS own_cost_delay_ms,
           (SELECT substring(o FROM '=(.*)$')::numeric FROM unnest(c.reloptions) AS o
            WHERE o LIKE 'autovacuum\_vacuum\_cost\_limit=%') AS own_cost_limit,
           pg_relation_size(c.oid) AS table_bytes
    FROM pg_class AS c
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'm')
      AND n.nspname <> ALL (ARRAY(SELECT jsonb_array_elements_text(perfmon.setting('collection.exclude_schemas')))
                            || ARRAY['perfmon'])
      AND n.nspname !~ '^pg_(toast|temp_)'
),
hist AS (
    -- Over the window: samples where dead tuples were above the autovacuum trigger,
    -- autovacuum runs, and the dead tuples at the first and last sample.
    SELECT r.relid,
           count(*) AS samples,
           sum(coalesce(h.autovacuum_count, 0)) AS autovacuum_runs,
           (array_agg(h.n_dead_tup ORDER BY h.ts))[1] AS first_dead,
           (array_agg(h.n_dead_tup ORDER BY h.ts DESC))[1] AS last_dead,
           min(h.ts) AS first_ts
    FROM perfmon.table_history AS h
    JOIN perfmon.relations AS r ON r.rel_id = h.rel_id, cfg
    WHERE r.server_id = 1 AND r.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND h.ts > now() - make_interval(days => cfg.window_days)
    GROUP BY r.relid
),
running AS (
    -- Autovacuum workers at work now, and since when (a throttled one may never finish
    -- while the sampled window lasts, so its run is not counted yet).
    SELECT p.relid, min(a.xact_start) AS since
    FROM pg_stat_progress_vacuum AS p
    JOIN pg_stat_activity AS a ON a.pid = p.pid
    WHERE a.backend_type = 'autovacuum worker' AND p.datname = current_database()
    GROUP BY p.relid
),
holder AS (
    -- The oldest snapshot held in this database: VACUUM cannot remove rows deleted after
    -- it was taken, however often autovacuum runs (a long or idle-in-transaction session,
    -- a prepared transaction).
    SELECT h.what, h.pid, h.since, h.xmin_age
    FROM (SELECT format('session %s (user %s, %s)', a.pid, a.usename, a.state) AS what, a.pid,
                 coalesce(a.xact_start, a.query_start) AS since, age(a.backend_xmin) AS xmin_age
          FROM pg_stat_activity AS a
          WHERE a.backend_xmin IS NOT NULL AND a.backend_type = 'client backend'
            AND a.datname = current_database() AND a.pid <> pg_backend_pid()
          UNION ALL
          SELECT format('prepared transaction %L (owner %s)', x.gid, x.owner), NULL, x.prepared,
                 age(x.transaction)
          FROM pg_prepared_xacts AS x
          WHERE x.database = current_database()) AS h
    ORDER BY h.xmin_age DESC
    LIMIT 1
),
v AS (
    SELECT t.*, hist.samples, hist.autovacuum_runs, hist.first_dead, hist.last_dead, hist.first_ts,
           coalesce(t.own_threshold, cfg.base_threshold)
             + coalesce(t.own_scale, cfg.base_scale) * greatest(t.reltuples, 0) AS trigger_dead,
           round(100.0 * t.n_dead_tup / nullif(t.n_live_tup + t.n_dead_tup, 0), 1) AS dead_pct,
           round(extract(epoch FROM now() - t.last_vacuum)::numeric) AS since_vacuum_s,
           running.since AS autovacuum_running_since,
           -- A table setting of -1 also means "the server's".
           coalesce(nullif(t.own_cost_delay_ms, -1), cfg.base_cost_delay_ms) AS cost_delay_ms,
           coalesce(nullif(t.own_cost_limit, -1), cfg.base_cost_limit) AS cost_limit,
           t.own_cost_delay_ms IS NOT NULL OR t.own_cost_limit IS NOT NULL AS own_cost_settings,
           cfg.naptime_s, cfg.page_hit_cost,
           cfg.autovacuum_on AND t.table_autovacuum AS autovacuum_enabled,
           cfg.max_dead_pct
    FROM t
    LEFT JOIN hist ON hist.relid = t.oid
    LEFT JOIN running ON running.relid = t.oid
    CROSS JOIN cfg
),
kept AS (
    SELECT v.*,
           v.n_dead_tup > v.trigger_dead AS over_trigger,
           -- Dead tuples kept growing past the trigger across the samples while autovacuum
           -- ran (finished runs in the window, or one at work now), or while it was due for
           -- longer than two naptimes without getting to it.
           coalesce(v.autovacuum_enabled AND v.last_dead > v.first_dead AND v.last_dead > v.trigger_dead
                    AND v.samples >= 3
                    AND (v.autovacuum_runs > 0 OR v.autovacuum_running_since IS NOT NULL
                         OR (v.first_dead > v.trigger_dead
                             AND v.first_ts < now() - make_interval(secs => 2 * v.naptime_s))),
                    false) AS cannot_keep_up,
           -- Throttled: slower than autovacuum's defaults (2 ms delay, cost limit 200); with
           -- no delay at all the cost limit does not matter.
           v.cost_delay_ms > 0 AND (v.cost_delay_ms > 2 OR v.cost_limit < 200) AS throttled,
           -- 8 kB pages it may read from shared buffers per second at most, by its cost settings
           round(v.cost_limit / nullif(v.page_hit_cost, 0) / nullif(v.cost_delay_ms / 1000.0, 0))
               AS max_pages_per_s
    FROM v
),
judged AS (
    -- Why it cannot keep up: a snapshot older than its last (or current) run, or too little
    -- vacuum work (throttling, naptime).
    SELECT k.*,
           CASE WHEN k.cannot_keep_up
                     AND holder.since < greatest(k.last_autovacuum, k.autovacuum_running_since)
                THEN holder.what END
               AS xmin_held_by,
           holder.pid AS holder_pid, holder.since AS holder_since, holder.xmin_age AS holder_xmin_age
    FROM kept AS k
    LEFT JOIN holder ON true
)
SELECT j.schema_name, j.table_name, j.n_live_tup, j.n_dead_tup, j.dead_pct,
       round(j.trigger_dead) AS autovacuum_trigger_dead_tuples, j.over_trigger,
       j.last_vacuum, j.last_autovacuum, j.since_vacuum_s, j.autovacuum_enabled,
       j.autovacuum_runs AS autovacuum_runs_in_window, j.cannot_keep_up, j.xmin_held_by,
       format('%I.%I', j.schema_name, j.table_name) AS target,
       CASE WHEN j.n_dead_tup < 1000 OR coalesce(j.dead_pct, 0) < j.max_dead_pct THEN 'ok'
            WHEN NOT j.autovacuum_enabled OR j.cannot_keep_up THEN 'critical'
            ELSE 'warning' END AS severity,
       format('table %s.%s has %s dead tuples (%s%% of its rows)%s%s', j.schema_name, j.table_name,
              j.n_dead_tup, j.dead_pct,
              CASE WHEN NOT j.autovacuum_enabled THEN '; autovacuum is disabled for it'
                   WHEN j.xmin_held_by IS NOT NULL THEN format('; autovacuum ran %s times in the '
                        'window but dead tuples grew from %s to %s: it cannot remove them while %s '
                        'holds a snapshot taken %s ago', j.autovacuum_runs, j.first_dead, j.last_dead,
                        j.xmin_held_by, justify_interval(date_trunc('second', now() - j.holder_since)))
                   WHEN j.cannot_keep_up THEN format('; dead tuples grew from %s to %s across %s samples '
                        'while autovacuum %s: it cannot keep up, %s', j.first_dead, j.last_dead, j.samples,
                        CASE WHEN j.autovacuum_running_since IS NOT NULL
                             THEN format('has been working on it for %s',
                                  justify_interval(date_trunc('second', now() - j.autovacuum_running_since)))
                             WHEN j.autovacuum_runs > 0 THEN format('ran %s times', j.autovacuum_runs)
                             ELSE 'was due and did not run' END,
                        CASE WHEN j.throttled
                             THEN format('throttled by autovacuum_vacuum_cost_delay = %s ms and '
                                  'autovacuum_vacuum_cost_limit = %s (%s; the defaults are 2 ms and 200): '
                                  'at most %s pages a second', j.cost_delay_ms, j.cost_limit,
                                  CASE WHEN j.own_cost_settings THEN 'table settings' ELSE 'server settings' END,
                                  j.max_pages_per_s)
                             ELSE format('with autovacuum_vacuum_cost_delay = %s ms, '
                                  'autovacuum_vacuum_cost_limit = %s and autovacuum_naptime = %s s',
                                  j.cost_delay_ms, j.cost_limit, j.naptime_s) END)
                   WHEN j.over_trigger THEN '; autovacuum is due' ELSE '' END,
              CASE WHEN j.last_vacuum IS NULL THEN '; never vacuumed'
                   ELSE format('; last vacuumed %s ago', justify_interval(now() - j.last_vacuum)) END) AS finding,
       jsonb_build_object('n_live_tup', j.n_live_tup, 'n_dead_tup', j.n_dead_tup, 'dead_pct', j.dead_pct,
                          'autovacuum_trigger_dead_tuples', round(j.trigger_dead),
                          'last_vacuum', j.last_vacuum, 'last_autovacuum', j.last_autovacuum,
                          'autovacuum_runs_in_window', j.autovacuum_runs,
                          'dead_tuples_first_sample', j.first_dead,
                          'dead_tuples_last_sample', j.last_dead,
                          'xmin_held_by', j.xmin_held_by,
                          'autovacuum_running_since', j.autovacuum_running_since,
                          'autovacuum_cost_delay_ms', j.cost_delay_ms,
                          'autovacuum_cost_limit', j.cost_limit,
                          'throttled', j.throttled, 'max_pages_per_s', j.max_pages_per_s,
                          'autovacuum_naptime_s', j.naptime_s,
                          'xmin_holder_age_xids', CASE WHEN j.xmin_held_by IS NOT NULL THEN j.holder_xmin_age END)
           AS evidence,
       CASE WHEN NOT j.autovacuum_enabled AND j.table_autovacuum = false
                THEN format('ALTER TABLE %I.%I RESET (autovacuum_enabled); VACUUM (ANALYZE) %I.%I;',
                            j.schema_name, j.table_name, j.schema_name, j.table_name)
            WHEN j.xmin_held_by IS NOT NULL AND j.holder_pid IS NOT NULL
                THEN format('-- end that transaction, or: SELECT pg_terminate_backend(%s); then '
                            'VACUUM (ANALYZE) %I.%I;', j.holder_pid, j.schema_name, j.table_name)
            WHEN j.xmin_held_by IS NOT NULL
                THEN format('-- COMMIT PREPARED or ROLLBACK PREPARED that transaction; then '
                            'VACUUM (ANALYZE) %I.%I;', j.schema_name, j.table_name)
            WHEN j.cannot_keep_up AND j.throttled AND j.own_cost_settings
                THEN format('ALTER TABLE %I.%I RESET (autovacuum_vacuum_cost_delay, '
                            'autovacuum_vacuum_cost_limit); VACUUM (ANALYZE) %I.%I;',
                            j.schema_name, j.table_name, j.schema_name, j.table_name)
            WHEN j.cannot_keep_up AND j.throttled
                THEN format('ALTER SYSTEM SET autovacuum_vacuum_cost_delay = ''2ms''; ALTER SYSTEM SET '
                            'autovacuum_vacuum_cost_limit = 200; SELECT pg_reload_conf(); '
                            'VACUUM (ANALYZE) %I.%I;', j.schema_name, j.table_name)
            WHEN j.cannot_keep_up
                THEN format('ALTER TABLE %I.%I SET (autovacuum_vacuum_scale_factor = 0.01, '
                            'autovacuum_vacuum_cost_limit = 2000); VACUUM (ANALYZE) %I.%I;',
                            j.schema_name, j.table_name, j.schema_name, j.table_name)
            ELSE format('VACUUM (ANALYZE) %I.%I;', j.schema_name, j.table_name) END AS apply_sql,
       round(j.table_bytes * j.n_dead_tup / nullif(j.n_live_tup + j.n_dead_tup, 0)::numeric) AS benefit,
       'bytes reusable'::text AS benefit_unit,
       'high'::text AS confidence,
       j.autovacuum_running_since, j.cost_delay_ms AS autovacuum_cost_delay_ms,
       j.cost_limit AS autovacuum_cost_limit
FROM judged AS j
ORDER BY j.n_dead_tup DESC;
COMMENT ON VIEW perfmon.vacuum_health IS
    'Vacuum health of each table: live and dead tuples, dead_pct (%), the dead-tuple count that '
    'triggers autovacuum for it, last (auto)vacuum and seconds since (since_vacuum_s), whether '
    'autovacuum is enabled for it, its runs over optimization.advice_window_days and whether it '
    'cannot keep up (dead tuples grew past the trigger across the samples while autovacuum ran, '
    'is running now -- autovacuum_running_since -- or was due for over two naptimes), its '
    'effective autovacuum_cost_delay_ms and autovacuum_cost_limit, and '
    'xmin_held_by: the session or prepared transaction whose snapshot, older than the last '
    'autovacuum, keeps it from removing them. Findings: '
    'dead_pct >= optimization.dead_tuple_max_pct and at least 1000 dead tuples.';
