-- DBA advisor: the rule registry, the one list of recommendations, what the rules
-- keep between refreshes (index advice, plan insights, host capacity), the backup log.
--
-- A rule is a view (the DBA can query it on its own) whose rows carry the common
-- finding columns: target, severity ('ok' = nothing to do), finding, evidence,
-- apply_sql, benefit, benefit_unit, confidence. perfmon.refresh_recommendations()
-- runs each enabled rule (after its refresh_function, when it has one) and keeps
-- perfmon.recommendation_log in step. Adding a rule is adding a row.

CREATE TABLE perfmon.advisor_rules (
    name             text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    kind             text NOT NULL,
    view_name        text NOT NULL,
    refresh_function text,
    ordinal          integer NOT NULL,
    enabled          boolean NOT NULL DEFAULT true,
    description      text NOT NULL
);
COMMENT ON TABLE perfmon.advisor_rules IS
    'Registry of advisor rules: perfmon.refresh_recommendations() calls refresh_function() '
    '(when set) and reads the findings (severity <> ''ok'') of view_name, in ordinal order, '
    'each in its own subtransaction. Adding a rule is adding a row.';

INSERT INTO perfmon.advisor_rules (name, kind, view_name, refresh_function, ordinal, description) VALUES
    ('storage_forecast', 'storage',     'perfmon.storage_forecast',      'perfmon.sample_host_capacity', 5,
     'days until the data directory''s disk is full, from size history and free space'),
    ('index_advice',     'index',       'perfmon.index_recommendations', 'perfmon.advise_indexes', 10,
     'missing B-tree indexes, checked with hypothetical indexes (hypopg)'),
    ('unused_index',     'index',       'perfmon.unused_indexes',        NULL, 20,
     'indexes without a scan over the sampled history'),
    ('duplicate_index',  'index',       'perfmon.duplicate_indexes',     NULL, 30,
     'indexes another index already covers'),
    ('invalid_index',    'index',       'perfmon.invalid_indexes',       NULL, 40,
     'indexes left invalid by a failed CREATE INDEX CONCURRENTLY'),
    ('table_bloat',      'storage',     'perfmon.table_bloat',           NULL, 50,
     'tables much larger than their live rows need'),
    ('index_bloat',      'storage',     'perfmon.index_bloat',           NULL, 60,
     'B-tree indexes much larger than their entries need'),
    ('vacuum_health',    'vacuum',      'perfmon.vacuum_health',         NULL, 70,
     'dead tuples, autovacuum age, autovacuum that cannot keep up'),
    ('wraparound',       'vacuum',      'perfmon.wraparound_risk',       NULL, 80,
     'transaction and multixact ID age against the freeze and hard limits'),
    ('sequence',         'storage',     'perfmon.sequence_exhaustion',   NULL, 90,
     'sequences (and the columns they feed) near their maximum'),
    ('connection_pool',  'connections', 'perfmon.connection_pool_advice', NULL, 100,
     'connections against max_connections, pool size from peak active sessions'),
    ('cache_hit',        'memory',      'perfmon.cache_hit_ratio',       NULL, 110,
     'tables and indexes read from disk more than the cache-hit threshold allows'),
    ('configuration',    'config',      'perfmon.config_advice',         NULL, 120,
     'work_mem, shared_buffers, max_wal_size and autovacuum settings'),
    ('replication',      'replication', 'perfmon.replication_advice',    NULL, 130,
     'replica lag and inactive replication slots holding WAL'),
    ('backup',           'backup',      'perfmon.backup_status',         NULL, 140,
     'WAL archiving failures and lag, age of the last verified backup'),
    ('slow_query_plan',  'query',       'perfmon.slow_query_insights',   'perfmon.explain_slow_queries', 150,
     'plan problems of slow queries: sequential scans, misestimates, spills');

CREATE TABLE perfmon.recommendation_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id       integer NOT NULL DEFAULT 1,
    fingerprint     text NOT NULL,
    rule            text NOT NULL,
    kind            text NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    target          text NOT NULL,
    finding         text NOT NULL,
    evidence        jsonb NOT NULL DEFAULT '{}',
    apply_sql       text,
    benefit         numeric,
    benefit_unit    text,
    confidence      text NOT NULL CHECK (confidence IN ('high', 'medium', 'low')),
    first_seen      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'applied', 'dismissed', 'resolved')),
    status_changed  timestamptz NOT NULL,
    status_reason   text,
    UNIQUE (server_id, fingerprint)
);
COMMENT ON TABLE perfmon.recommendation_log IS
    'Every finding the advisor has made, one row per fingerprint (rule + target): refreshed '
    'while it persists, resolved when it disappears, dismissed by perfmon.dismiss(). Read it '
    'through perfmon.recommendations.';

CREATE TABLE perfmon.advisor_runs (
    ts          timestamptz PRIMARY KEY,
    duration_ms real NOT NULL,
    rules       jsonb NOT NULL
);
COMMENT ON TABLE perfmon.advisor_runs IS
    'One row per perfmon.refresh_recommendations(): total ms and per rule {ms, findings, error?}.';

-- Kept by perfmon.advise_indexes(): the index advice of the latest run.
CREATE TABLE perfmon.index_advice (
    schema_name        text NOT NULL,
    table_name         text NOT NULL,
    columns            text[] NOT NULL,
    index_sql          text NOT NULL,
    method             text NOT NULL CHECK (method IN ('hypopg', 'statistics')),
    improvement_pct    real NOT NULL,
    cost_before        double precision,
    cost_after         double precision,
    est_size_bytes     bigint,
    calls              bigint,
    saved_ms           double precision,
    write_rows         bigint,
    write_overhead_ms  double precision,
    write_overhead_pct real,
    recommended        boolean NOT NULL,
    reason             text NOT NULL,
    queries            jsonb NOT NULL,
    advised_at         timestamptz NOT NULL,
    PRIMARY KEY (schema_name, table_name, columns)
);
COMMENT ON TABLE perfmon.index_advice IS
    'Index candidates of the latest perfmon.advise_indexes() run that cut the cost of the '
    'queries they serve; recommended = false when the write overhead outweighs the gain.';

-- Kept by perfmon.explain_slow_queries(): plan problems of the slow queries.
CREATE TABLE perfmon.plan_insights (
    stmt_id      integer NOT NULL,
    problem      text NOT NULL,
    relation     text NOT NULL DEFAULT '',
    detail       text NOT NULL,
    advice       text NOT NULL,
    evidence     jsonb NOT NULL,
    explained_at timestamptz NOT NULL,
    PRIMARY KEY (stmt_id, problem, relation)
);
COMMENT ON TABLE perfmon.plan_insights IS
    'Problems found in the generic plans of the slow queries by perfmon.explain_slow_queries().';

-- Kept by perfmon.sample_host_capacity() (PL/Python): what SQL cannot see.
CREATE TABLE perfmon.host_capacity (
    server_id        integer PRIMARY KEY,
    ts               timestamptz NOT NULL,
    data_directory   text NOT NULL,
    disk_total_bytes bigint,
    disk_free_bytes  bigint,
    ram_bytes        bigint,
    cpu_count        integer
);
COMMENT ON TABLE perfmon.host_capacity IS
    'Disk size and free bytes of the data directory''s file system, RAM bytes and CPUs, as '
    'last read by perfmon.sample_host_capacity().';

CREATE TABLE perfmon.backup_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id   integer NOT NULL DEFAULT 1,
    tool        text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    ok          boolean NOT NULL,
    verified    boolean NOT NULL DEFAULT false,
    restored    boolean NOT NULL DEFAULT false,
    size_bytes  bigint,
    detail      text
);
COMMENT ON TABLE perfmon.backup_log IS
    'Backups and their checks: written by `pgperfmon backup verify` and by other tools through '
    'perfmon.record_backup(); read by perfmon.backup_status.';
CREATE INDEX ON perfmon.backup_log (server_id, finished_at);

INSERT INTO perfmon.jobs (name, schedule, command, description) VALUES
    ('refresh_recommendations', '23 * * * *', 'SELECT perfmon.refresh_recommendations()',
     'run the advisor rules and refresh perfmon.recommendations');
