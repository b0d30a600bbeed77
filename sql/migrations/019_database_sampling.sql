-- The databases stage compares each database's pg_stat_database.stats_reset with the
-- one seen at the previous sample, as the tables stage does with its own database's:
-- pg_stat_reset() in a busy database zeroes its counters, and those that grew past
-- their old values since then gave a delta that was too small, others a negative one.
ALTER TABLE perfmon.state_databases ADD COLUMN stats_reset timestamptz;
COMMENT ON COLUMN perfmon.state_databases.stats_reset IS
    'pg_stat_database.stats_reset of the database at the previous sample; another one means its '
    'counters were reset since: no delta, a gap.';

-- The state of a running installation is kept: its reset time is the current one (a reset
-- after the last sample and before this upgrade goes unnoticed, as it did until now).
UPDATE perfmon.state_databases AS s SET stats_reset = d.stats_reset
  FROM pg_stat_database AS d
 WHERE d.datid = s.datid;

-- The pg_stat_database sums of a server_history row cover the time since the databases
-- stage's previous successful sample, which is not interval_s (the server stage's) when
-- that stage failed in between (a lock timeout): rates were 0 for the failed sample and
-- twice the truth for the next. database_interval_s is the time they cover; NULL when
-- the databases stage stored nothing in that sample (it failed, or took a baseline).
ALTER TABLE perfmon.server_history ADD COLUMN database_interval_s real;
COMMENT ON COLUMN perfmon.server_history.database_interval_s IS
    'seconds the pg_stat_database deltas of the row (xact_commit ... deadlocks) cover: since the '
    'databases stage''s previous successful sample; NULL when that stage stored nothing (failed, '
    'or a baseline): the rates of that sample are unknown, not 0';
-- Rows sampled before this column: their deltas were read as covering interval_s. (The
-- databases stage records when it last succeeded from now on, in state_sources: the
-- first sample after this upgrade has no database_interval_s.)
UPDATE perfmon.server_history SET database_interval_s = interval_s WHERE interval_s IS NOT NULL;

-- The anomaly features that turn those deltas into rates divide by that time (a feature
-- a DBA has changed is left as it is).
UPDATE perfmon.anomaly_features SET query =
     $q$SELECT NULL::text, ts, (coalesce(xact_commit, 0) + coalesce(xact_rollback, 0)) / nullif(database_interval_s, 0)::float8
          FROM perfmon.server_history WHERE server_id = 1 AND ts BETWEEN $1 AND $2 AND database_interval_s > 0$q$
 WHERE name = 'db.transactions_per_s' AND query =
     $q$SELECT NULL::text, ts, (coalesce(xact_commit, 0) + coalesce(xact_rollback, 0)) / nullif(interval_s, 0)::float8
          FROM perfmon.server_history WHERE server_id = 1 AND ts BETWEEN $1 AND $2 AND interval_s > 0$q$;
UPDATE perfmon.anomaly_features SET query =
     $q$SELECT NULL::text, ts, coalesce(temp_bytes, 0) / nullif(database_interval_s, 0)::float8
          FROM perfmon.server_history WHERE server_id = 1 AND ts BETWEEN $1 AND $2 AND database_interval_s > 0$q$
 WHERE name = 'db.temp_bytes_per_s' AND query =
     $q$SELECT NULL::text, ts, coalesce(temp_bytes, 0) / nullif(interval_s, 0)::float8
          FROM perfmon.server_history WHERE server_id = 1 AND ts BETWEEN $1 AND $2 AND interval_s > 0$q$;
