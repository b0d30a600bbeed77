CREATE OR REPLACE VIEW perfmon.wraparound_risk AS
WITH cfg AS (
    SELECT perfmon.setting('optimization.wraparound_warning_pct')::numeric AS warn_pct,
           perfmon.setting('optimization.advice_window_days')::int AS window_days,
           current_setting('autovacuum_freeze_max_age')::bigint AS freeze_max_age,
           current_setting('autovacuum_multixact_freeze_max_age')::bigint AS mxid_freeze_max_age,
           -- the server stops assigning IDs 3 million short of 2^31 (xidStopLimit)
           2147483647 - 3000000 AS hard_limit
),
rate AS (
    -- IDs consumed per day: the growth of the oldest XID/MXID age between samples
    -- (a drop is a freeze, not negative consumption). Under an hour of samples is
    -- too short a base: a burst would predict the limit within days.
    SELECT CASE WHEN max(ts) - min(ts) >= interval '1 hour' THEN
               sum(greatest(d_xid, 0)) / extract(epoch FROM max(ts) - min(ts)) * 86400 END AS xids_per_day,
           CASE WHEN max(ts) - min(ts) >= interval '1 hour' THEN
               sum(greatest(d_mxid, 0)) / extract(epoch FROM max(ts) - min(ts)) * 86400 END AS mxids_per_day,
           count(*) AS samples
    FROM (
        SELECT h.ts,
               h.max_xid_age - lag(h.max_xid_age) OVER (ORDER BY h.ts) AS d_xid,
               h.max_mxid_age - lag(h.max_mxid_age) OVER (ORDER BY h.ts) AS d_mxid
        FROM perfmon.server_history AS h, cfg
        WHERE h.server_id = 1 AND h.ts > now() - make_interval(days => cfg.window_days)
    ) AS s
),
holders AS (
    SELECT jsonb_build_object(
        'oldest_transaction_xmin_age', (SELECT max(age(backend_xmin)) FROM pg_stat_activity),
        'oldest_prepared_xact_age', (SELECT max(age(transaction)) FROM pg_prepared_xacts),
        'oldest_slot_xmin_age', (SELECT max(greatest(age(xmin), age(catalog_xmin)))
                                 FROM pg_replication_slots)) AS xmin_holders
),
oldest AS (
    -- The tables that hold the database's oldest XID or MXID back, the nearer to its own
    -- freeze_max_age first: VACUUM (FREEZE) of these advances datfrozenxid/datminmxid. A
    -- temporary table only its own session can vacuum (VACUUM skips another's): it is
    -- named, and its session must end or vacuum it.
    SELECT jsonb_agg(jsonb_build_object('table', format('%s.%s', o.nspname, o.relname),
                                        'xid_age', o.xid_age, 'mxid_age', o.mxid_age,
                                        'temporary', o.temporary)
                     ORDER BY o.pressure DESC) AS tables,
           coalesce(string_agg(format('VACUUM (FREEZE, VERBOSE) %I.%I;', o.nspname, o.relname), ' '
                               ORDER BY o.pressure DESC) FILTER (WHERE NOT o.temporary),
                    '-- the oldest tables are temporary: end the sessions that hold them '
                    '(see oldest_tables in the evidence)') AS freeze_sql
    FROM (SELECT n.nspname, c.relname, c.relpersistence = 't' AS temporary, age(c.relfrozenxid) AS xid_age,
                 mxid_age(c.relminmxid) AS mxid_age,
                 greatest(age(c.relfrozenxid)::numeric / cfg.freeze_max_age,
                          mxid_age(c.relminmxid)::numeric / cfg.mxid_freeze_max_age) AS pressure
          FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace, cfg
          WHERE c.relkind IN ('r', 'm', 't') AND c.relfrozenxid <> '0'
          ORDER BY pressure DESC LIMIT 5) AS o
),
d AS (
    SELECT db.datname, age(db.datfrozenxid)::bigint AS xid_age, mxid_age(db.datminmxid)::bigint AS mxid_age,
           db.datname = current_database() AS is_current, db.datallowconn,
           -- the name as apply_sql's comment may hold it: a newline in it would end the
           -- comment and make the rest of the name a statement
           regexp_replace(db.datname, '[[:cntrl:]]', '?', 'g') AS shown_name
    FROM pg_database AS db
    WHERE db.datallowconn OR age(db.datfrozenxid) > 0
),
r AS (
    SELECT d.*, cfg.*, rate.xids_per_day, rate.mxids_per_day,
           round(100.0 * d.xid_age / cfg.freeze_max_age, 2) AS xid_pct_of_freeze_max,
           round(100.0 * d.mxid_age / cfg.mxid_freeze_max_age, 2) AS mxid_pct_of_freeze_max,
           round(100.0 * d.xid_age / cfg.hard_limit, 2) AS xid_pct_of_limit,
           round(100.0 * d.mxid_age / cfg.hard_limit, 2) AS mxid_pct_of_limit,
           round(((cfg.hard_limit - d.xid_age) / nullif(rate.xids_per_day, 0))::numeric, 1) AS xid_days_left,
           round(((cfg.hard_limit - d.mxid_age) / nullif(rate.mxids_per_day, 0))::numeric, 1) AS mxid_days_left
    FROM d, cfg, rate
)
SELECT r.datname AS database, r.xid_age, r.mxid_age, r.freeze_max_age, r.mxid_freeze_max_age,
       r.hard_limit, r.xid_pct_of_freeze_max, r.mxid_pct_of_freeze_max, r.xid_pct_of_limit,
       r.mxid_pct_of_limit, round(r.xids_per_day::numeric) AS xids_per_day,
       round(r.mxids_per_day::numeric) AS mxids_per_day, r.xid_days_left, r.mxid_days_left,
       format('database %s', r.datname) AS target,
       CASE WHEN greatest(r.xid_pct_of_limit, r.mxid_pct_of_limit) >= 50
                 OR least(r.xid_days_left, r.mxid_days_left) < 7 THEN 'critical'
            WHEN r.xid_age >= r.freeze_max_age * r.warn_pct / 100
                 OR r.mxid_age >= r.mxid_freeze_max_age * r.warn_pct / 100 THEN 'warning'
            ELSE 'ok' END AS severity,
       format('database %s: oldest unfrozen XID is %s transactions old (%s%% of '
              'autovacuum_freeze_max_age, %s%% of the wraparound limit), oldest multixact ID %s '
              'multixacts old (%s%% of autovacuum_multixact_freeze_max_age, %s%% of the limit)%s',
              r.datname, r.xid_age, r.xid_pct_of_freeze_max, r.xid_pct_of_limit, r.mxid_age,
              r.mxid_pct_of_freeze_max, r.mxid_pct_of_limit,
              CASE WHEN least(r.xid_days_left, r.mxid_days_left) IS NOT NULL
                   THEN format('; at the sampled rate the limit is %s days away',
                               least(r.xid_days_left, r.mxid_days_left))
                   ELSE '' END) AS finding,
       jsonb_build_object('xid_age', r.xid_age, 'mxid_age', r.mxid_age,
                          'autovacuum_freeze_max_age', r.freeze_max_age,
                          'autovacuum_multixact_freeze_max_age', r.mxid_freeze_max_age,
                          'xids_per_day', round(r.xids_per_day::numeric),
                          'mxids_per_day', round(r.mxids_per_day::numeric),
                          'xid_pct_of_freeze_max', r.xid_pct_of_freeze_max,
                          'mxid_pct_of_freeze_max', r.mxid_pct_of_freeze_max,
                          'hard_limit', r.hard_limit,
                          'oldest_tables', CASE WHEN r.is_current THEN oldest.tables END)
           || holders.xmin_holders AS evidence,
       CASE WHEN r.is_current THEN oldest.freeze_sql
            WHEN NOT r.datallowconn
                THEN format('-- %s accepts no connections: autovacuum freezes it; if it falls behind, '
                            'ALTER DATABASE %s ALLOW_CONNECTIONS true, run vacuumdb --freeze on it, then '
                            'ALLOW_CONNECTIONS false again', quote_ident(r.shown_name),
                            quote_ident(r.shown_name))
            ELSE format('-- connect to %s, then VACUUM (FREEZE, VERBOSE) its oldest tables '
                        '(or run: vacuumdb --freeze --dbname=''%s'')', quote_ident(r.shown_name),
                        replace(r.shown_name, '''', '''\''''')) END AS apply_sql,
       least(r.xid_days_left, r.mxid_days_left) AS benefit,
       'days of headroom'::text AS benefit_unit,
       CASE WHEN r.xids_per_day IS NULL THEN 'medium' ELSE 'high' END AS confidence
FROM r, oldest, holders
ORDER BY greatest(r.xid_pct_of_limit, r.mxid_pct_of_limit) DESC;
COMMENT ON VIEW perfmon.wraparound_risk IS
    'Transaction ID (XID) and multixact ID (MXID) age of each database against '
    'autovacuum_freeze_max_age (XID), autovacuum_multixact_freeze_max_age (MXID) and the hard limit (2^31 - 3M, where the server stops assigning '
    'IDs), as counts and %, the consumption per day from the sampled oldest ages, and the days '
    'left before the limit at that rate (xid_days_left, mxid_days_left). Evidence names the oldest '
    'tables of this database and what holds back the xmin horizon.';
