-- Anomaly detection (issue 6): the features watched, the detectors, the trained models,
-- the anomalous samples and the episodes they form.
--
-- perfmon.train_anomaly_models() (scheduled every anomaly_detection.retrain_interval_hours)
-- fits one model per feature on the training window and stores it; perfmon.score_anomalies()
-- (called by perfmon.analyze() every interval) scores the newest sample of every feature
-- with the stored model, without retraining, and keeps consecutive anomalous samples
-- together as one episode (perfmon.anomalies).

-- ----------------------------------------------------------------- registries
CREATE TABLE perfmon.anomaly_features (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$'),
    query       text NOT NULL,
    unit        text NOT NULL,
    multi       boolean NOT NULL DEFAULT true,
    enabled     boolean NOT NULL DEFAULT true,
    impact      text NOT NULL,
    actions     text[] NOT NULL,
    description text NOT NULL
);
COMMENT ON TABLE perfmon.anomaly_features IS
    'Registry of what anomaly detection watches. query returns (series text, ts timestamptz, '
    'value float8) for samples with $1 <= ts <= $2; series is NULL for a single series or '
    'names one of several (e.g. a host metric''s labels). multi = part of the multi-metric '
    'Isolation Forest vector. impact and actions are shown with its anomalies. Adding a '
    'feature is adding a row.';

INSERT INTO perfmon.anomaly_features (name, query, unit, multi, impact, actions, description) VALUES
    ('db.transactions_per_s',
     $q$SELECT NULL::text, ts, (coalesce(xact_commit, 0) + coalesce(xact_rollback, 0)) / nullif(interval_s, 0)::float8
          FROM perfmon.server_history WHERE server_id = 1 AND ts BETWEEN $1 AND $2 AND interval_s > 0$q$,
     'per_s', true,
     'throughput changed: a drop can mean users cannot complete work, a surge can saturate the server',
     ARRAY['compare with perfmon.top_queries for the statements behind the change',
           'check application deployments and batch jobs started at that time'],
     'commits and rollbacks per second, all databases'),
    ('db.connections.total',
     $q$SELECT NULL::text, ts, sessions_total::float8 FROM perfmon.server_history
         WHERE server_id = 1 AND ts BETWEEN $1 AND $2$q$,
     'count', true,
     'connections near max_connections make new logins fail: users see errors',
     ARRAY['check perfmon.connection_usage by application and state',
           'put a connection pooler (PgBouncer) in front of the database or fix connection leaks'],
     'client connections'),
    ('db.connections.active',
     $q$SELECT NULL::text, ts, sessions_active::float8 FROM perfmon.server_history
         WHERE server_id = 1 AND ts BETWEEN $1 AND $2$q$,
     'count', true,
     'more queries running at once than usual: response times rise for everyone',
     ARRAY['look at perfmon.slow_queries and perfmon.top_queries for the period',
           'check for a lock pile-up in perfmon.blocking_locks'],
     'client connections running a query'),
    ('db.sessions.waiting',
     $q$SELECT NULL::text, ts, sessions_waiting::float8 FROM perfmon.server_history
         WHERE server_id = 1 AND ts BETWEEN $1 AND $2$q$,
     'count', true,
     'sessions are waiting (locks, I/O, LWLocks) instead of working: transactions take longer',
     ARRAY['see which wait event types dominate in perfmon.activity_history for the period',
           'check perfmon.blocking_locks for the session at the head of the queue'],
     'client sessions waiting on an event'),
    ('db.sessions.blocked',
     $q$SELECT NULL::text, ts, blocked_sessions::float8 FROM perfmon.server_history
         WHERE server_id = 1 AND ts BETWEEN $1 AND $2$q$,
     'count', true,
     'a lock storm: blocked transactions stall and time out, users see hangs and errors',
     ARRAY['find the blocking session in perfmon.blocking_locks; end it with pg_terminate_backend if it is stuck',
           'set lock_timeout / idle_in_transaction_session_timeout for the application'],
     'sessions blocked by another session''s lock'),
    ('db.cache_hit_pct',
     $q$SELECT NULL::text, ts, 100.0 * blks_hit / nullif(coalesce(blks_hit, 0) + coalesce(blks_read, 0), 0)::float8
          FROM perfmon.server_history WHERE server_id = 1 AND ts BETWEEN $1 AND $2
           AND coalesce(blks_hit, 0) + coalesce(blks_read, 0) >= 1000$q$,
     'pct', true,
     'more reads miss shared buffers and go to disk: queries slow down',
     ARRAY['look for new sequential scans in perfmon.top_queries (missing index?)',
           'review shared_buffers against the working set'],
     'shared buffer hits as a share of block reads (samples with at least 1000 block reads)'),
    ('db.query.mean_ms',
     $q$SELECT NULL::text, h.ts, (sum(h.exec_ms) / nullif(sum(h.calls), 0))::float8
          FROM perfmon.statement_history AS h WHERE h.server_id = 1 AND h.ts BETWEEN $1 AND $2
         GROUP BY h.ts HAVING sum(h.calls) > 0$q$,
     'ms', true,
     'statements take longer than usual: pages and API calls respond slowly',
     ARRAY['see perfmon.slow_queries for the statements whose mean time rose',
           'check for plan changes, missing indexes (perfmon.index_recommendations) and lock waits'],
     'mean statement execution time, all statements'),
    ('db.temp_bytes_per_s',
     $q$SELECT NULL::text, ts, coalesce(temp_bytes, 0) / nullif(interval_s, 0)::float8
          FROM perfmon.server_history WHERE server_id = 1 AND ts BETWEEN $1 AND $2 AND interval_s > 0$q$,
     'bytes_per_s', false,
     'sorts and hashes spill to disk: those queries slow down and disk I/O rises',
     ARRAY['find the statements writing temp files in perfmon.top_queries',
           'raise work_mem for them, or add an index that avoids the sort'],
     'temporary file bytes written per second'),
    ('host.cpu.total_pct',
     $q$SELECT nullif(s.labels::text, '{}'), m.ts, m.value FROM perfmon.metric_samples AS m
          JOIN perfmon.metric_series AS s USING (series_id) JOIN perfmon.metrics AS mt USING (metric_id)
         WHERE mt.name = 'host.cpu.total_pct' AND m.ts BETWEEN $1 AND $2$q$,
     'pct', true,
     'the CPU is busier than usual: queries queue for CPU and slow down',
     ARRAY['see perfmon.top_queries by total time for the period',
           'check for processes other than PostgreSQL on the host'],
     'host CPU busy'),
    ('host.memory.used_pct',
     $q$SELECT nullif(s.labels::text, '{}'), m.ts, m.value FROM perfmon.metric_samples AS m
          JOIN perfmon.metric_series AS s USING (series_id) JOIN perfmon.metrics AS mt USING (metric_id)
         WHERE mt.name = 'host.memory.used_pct' AND m.ts BETWEEN $1 AND $2$q$,
     'pct', true,
     'memory is short: the OS cache shrinks, swapping or the OOM killer may follow',
     ARRAY['check work_mem x connections and maintenance_work_mem',
           'look for other processes using memory on the host'],
     'host memory in use'),
    ('host.diskio.busy_pct',
     $q$SELECT nullif(s.labels::text, '{}'), m.ts, m.value FROM perfmon.metric_samples AS m
          JOIN perfmon.metric_series AS s USING (series_id) JOIN perfmon.metrics AS mt USING (metric_id)
         WHERE mt.name = 'host.diskio.busy_pct' AND m.ts BETWEEN $1 AND $2$q$,
     'pct', true,
     'the disk is saturated: reads and commits wait on I/O',
     ARRAY['see which statements read or write most in perfmon.top_queries',
           'check checkpoints (checkpoint_timeout, max_wal_size) and autovacuum activity'],
     'block device busy time');

CREATE TABLE perfmon.anomaly_detectors (
    name        text PRIMARY KEY,
    language    text NOT NULL CHECK (language IN ('plpython3u', 'sql')),
    scope       text NOT NULL CHECK (scope IN ('metric', 'multi')),
    description text NOT NULL
);
COMMENT ON TABLE perfmon.anomaly_detectors IS
    'The detectors anomaly_detection.algorithm can choose (auto = envelope where PL/Python runs, '
    'envelope_sql otherwise): what they need and whether they score one metric or a vector.';
INSERT INTO perfmon.anomaly_detectors VALUES
    ('envelope', 'plpython3u', 'metric',
     'value or its moving mean outside the training range by a margin of its robust spread '
     '(default: best on the NAB evaluation)'),
    ('robust_zscore', 'plpython3u', 'metric', 'distance from the training median in robust standard deviations'),
    ('isolation_forest', 'plpython3u', 'metric', 'scikit-learn IsolationForest over one metric''s value, moving mean and change'),
    ('isolation_forest_multi', 'plpython3u', 'multi',
     'scikit-learn IsolationForest over the StandardScaler-scaled vector of all multi features at one sample'),
    ('envelope_sql', 'sql', 'metric', 'the envelope fitted and scored in SQL: the detector without PL/Python');

CREATE TYPE perfmon.anomaly_score AS (
    detector       text,
    feature        text,
    series         text,
    ts             timestamptz,
    score          double precision,
    observed_value double precision,
    expected_low   double precision,
    expected_high  double precision,
    contributors   jsonb,
    model_id       bigint
);
COMMENT ON TYPE perfmon.anomaly_score IS
    'One scored sample of a feature: score (1 = at the threshold, anomalous from 1 up), the '
    'observed value and the expected range in the feature''s unit, what contributed most.';

-- ----------------------------------------------------------------- models
CREATE TABLE perfmon.anomaly_models (
    model_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    detector     text NOT NULL REFERENCES perfmon.anomaly_detectors,
    feature      text NOT NULL,
    series       text NOT NULL DEFAULT '',
    features     text[],
    trained_at   timestamptz NOT NULL DEFAULT now(),
    trained_from timestamptz NOT NULL,
    trained_to   timestamptz NOT NULL,
    samples      integer NOT NULL,
    params       jsonb NOT NULL,
    model        bytea NOT NULL,
    train_ms     real,
    current      boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE perfmon.anomaly_models IS
    'Trained anomaly models: detector, feature (and series), the training range and sample '
    'count, the parameters (sensitivity, margins, contamination) and the serialised model '
    '(JSON, or a pickle for Isolation Forest). current = the one scoring new samples; older '
    'ones are kept one retraining for comparison.';
CREATE UNIQUE INDEX anomaly_models_current ON perfmon.anomaly_models (detector, feature, series) WHERE current;

-- ----------------------------------------------------------------- anomalous samples and episodes
CREATE TABLE perfmon.anomaly_episodes (
    episode_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id      integer NOT NULL,
    detector       text NOT NULL,
    feature        text NOT NULL,
    series         text NOT NULL DEFAULT '',
    started_at     timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    ended_at       timestamptz,
    samples        integer NOT NULL DEFAULT 1,
    calm_samples   integer NOT NULL DEFAULT 0,
    peak_score     double precision NOT NULL,
    peak_at        timestamptz NOT NULL,
    observed_value double precision,
    expected_low   double precision,
    expected_high  double precision,
    contributors   jsonb NOT NULL DEFAULT '[]',
    model_id       bigint
);
COMMENT ON TABLE perfmon.anomaly_episodes IS
    'Consecutive anomalous samples of one feature (or of the multi-metric vector) as one '
    'episode: it ends after anomaly_detection.episode_quiet_samples normal samples in a row. '
    'observed/expected are those of the peak sample.';
CREATE INDEX ON perfmon.anomaly_episodes (started_at);
CREATE UNIQUE INDEX anomaly_episodes_open ON perfmon.anomaly_episodes (server_id, detector, feature, series)
    WHERE ended_at IS NULL;

CREATE TABLE perfmon.anomaly_samples (
    server_id      integer NOT NULL,
    ts             timestamptz NOT NULL,
    episode_id     bigint NOT NULL,
    score          double precision NOT NULL,
    observed_value double precision,
    expected_low   double precision,
    expected_high  double precision
);
COMMENT ON TABLE perfmon.anomaly_samples IS
    'Every anomalous sample with its score (1 = at the threshold), the value observed and the '
    'expected range, in the unit of the feature. Kept collection.retention_days.';
-- Not partitioned: it holds anomalous samples only (few), and perfmon.score_anomalies()
-- then writes no partitioned table, so it never waits on perfmon.maintain() creating
-- partitions while holding locks maintain() waits for.
CREATE INDEX ON perfmon.anomaly_samples (episode_id);
CREATE INDEX ON perfmon.anomaly_samples (ts);

-- Which feature samples were scored last, so that an interval is scored once.
CREATE UNLOGGED TABLE perfmon.state_anomaly_scoring (
    detector  text NOT NULL,
    feature   text NOT NULL,
    series    text NOT NULL DEFAULT '',
    last_ts   timestamptz NOT NULL,
    PRIMARY KEY (detector, feature, series)
);

-- Hourly; the function itself retrains only models older than
-- anomaly_detection.retrain_interval_hours (so a changed setting needs no reschedule).
INSERT INTO perfmon.jobs (name, schedule, command, description) VALUES
    ('train_anomaly_models', '23 * * * *', 'SELECT perfmon.train_anomaly_models()',
     'retrain anomaly models older than anomaly_detection.retrain_interval_hours');
