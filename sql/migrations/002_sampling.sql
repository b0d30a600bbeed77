-- Sampling: the sample log, dictionaries, per-source state, delta history and rollups.
--
-- Conventions (DESIGN.md): every history row carries server_id and ts; counters are
-- stored as deltas since the previous sample, NULL when zero (the null bitmap makes
-- an unused column free); only keys that changed get a row; names live once in a
-- dictionary; history is range-partitioned by day (rollups by month) and retention
-- drops whole partitions. State tables are UNLOGGED: they cost no WAL, and after a
-- crash they are empty, which the collectors treat as "no previous sample" (a
-- baseline, never a spike) - the same as the statistics themselves after a crash.

-- ----------------------------------------------------------------- registries
ALTER TABLE perfmon.jobs ADD COLUMN interval_key text;
COMMENT ON COLUMN perfmon.jobs.interval_key IS
    'configuration key holding the job''s interval in seconds, used when schedule is NULL';

CREATE TABLE perfmon.collectors (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    function_name text NOT NULL,
    schedule      text NOT NULL CHECK (schedule IN ('sample', 'sizes')),
    ordinal       integer NOT NULL,
    enabled       boolean NOT NULL DEFAULT true,
    description   text NOT NULL
);
COMMENT ON TABLE perfmon.collectors IS
    'Registry of collection stages: perfmon.collect() (schedule sample) and '
    'perfmon.collect_sizes() (schedule sizes) call each enabled function_name(ts) in ordinal '
    'order, timing it and keeping its errors to itself. Adding a source is adding a row.';

INSERT INTO perfmon.collectors (name, function_name, schedule, ordinal, description) VALUES
    ('databases',  'perfmon.collect_databases',  'sample', 10, 'pg_stat_database deltas per database'),
    ('statements', 'perfmon.collect_statements', 'sample', 20, 'pg_stat_statements deltas per statement'),
    ('tables',     'perfmon.collect_tables',     'sample', 30, 'table statistics and I/O of this database'),
    ('indexes',    'perfmon.collect_indexes',    'sample', 40, 'index statistics and I/O of this database'),
    ('activity',   'perfmon.collect_activity',   'sample', 50, 'sessions, waits and blocking locks'),
    ('server',     'perfmon.collect_server',     'sample', 60, 'bgwriter/checkpoints, WAL and archiver deltas'),
    ('replication','perfmon.collect_replication','sample', 70, 'replicas and replication slots'),
    ('settings',   'perfmon.collect_settings',   'sample', 80, 'settings that changed since the last sample'),
    ('sizes',      'perfmon.collect_relation_sizes', 'sizes', 10, 'database and relation sizes');

CREATE TABLE perfmon.partitioned_tables (
    table_name    text PRIMARY KEY,
    granularity   text NOT NULL CHECK (granularity IN ('day', 'month')),
    retention_key text NOT NULL
);
COMMENT ON TABLE perfmon.partitioned_tables IS
    'History tables perfmon.maintain() keeps partitions for: created ahead, dropped whole '
    'once older than the retention in days that the configuration key retention_key gives.';

INSERT INTO perfmon.jobs (name, schedule, interval_key, command, description) VALUES
    ('collect', NULL, 'collection.interval_seconds', 'SELECT perfmon.collect()',
     'take a sample of the server''s statistics'),
    ('collect_sizes', NULL, 'collection.size_interval_seconds', 'SELECT perfmon.collect_sizes()',
     'sample database and relation sizes'),
    ('rollup', '7 * * * *', NULL, 'SELECT perfmon.rollup()',
     'roll raw samples up into hourly and daily history'),
    ('maintain', '17 0 * * *', NULL, 'SELECT perfmon.maintain()',
     'create partitions ahead and drop those past retention');

-- ----------------------------------------------------------------- the sample log
CREATE TYPE perfmon.collect_result AS (stored integer, gaps integer, details jsonb);
COMMENT ON TYPE perfmon.collect_result IS
    'What one collection stage did: rows stored, keys whose counters went backwards or were '
    'lost (gaps), and stage-specific details.';

CREATE TABLE perfmon.samples (
    server_id   integer NOT NULL,
    ts          timestamptz NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('sample', 'sizes')),
    interval_s  real,
    duration_ms real NOT NULL,
    stages      jsonb NOT NULL,
    PRIMARY KEY (server_id, kind, ts)
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.samples IS
    'One row per collection run: seconds since the previous run of the same kind, total '
    'duration, and per stage {ms, stored, gaps, error?}.';

-- ----------------------------------------------------------------- dictionaries
CREATE TABLE perfmon.databases (
    server_id integer NOT NULL,
    datid     oid NOT NULL,
    datname   text NOT NULL,
    PRIMARY KEY (server_id, datid)
);
COMMENT ON TABLE perfmon.databases IS 'Database names by oid.';

CREATE TABLE perfmon.statements (
    stmt_id    integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id  integer NOT NULL,
    userid     oid NOT NULL,
    dbid       oid NOT NULL,
    queryid    bigint NOT NULL,
    toplevel   boolean NOT NULL,
    query      text NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    UNIQUE (server_id, userid, dbid, queryid, toplevel)
);
COMMENT ON TABLE perfmon.statements IS
    'Normalised statement texts from pg_stat_statements, stored once per '
    '(user, database, queryid, toplevel). stmt_id 0 stands for "all other statements" '
    'beyond collection.statement_top_n in a sample.';
INSERT INTO perfmon.statements (stmt_id, server_id, userid, dbid, queryid, toplevel, query)
    OVERRIDING SYSTEM VALUE VALUES (0, 0, 0, 0, 0, true, '(other statements)');

CREATE TABLE perfmon.relations (
    rel_id       integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id    integer NOT NULL,
    datid        oid NOT NULL,
    relid        oid NOT NULL,
    kind         "char" NOT NULL,
    schema_name  text NOT NULL,
    rel_name     text NOT NULL,
    table_rel_id integer,
    first_seen   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (server_id, datid, relid)
);
COMMENT ON TABLE perfmon.relations IS
    'Tables (kind r, p, m) and indexes (kind i) seen by the collectors, named once. '
    'table_rel_id links an index to its table.';

CREATE TABLE perfmon.applications (
    app_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name   text NOT NULL UNIQUE
);
COMMENT ON TABLE perfmon.applications IS 'application_name values seen in pg_stat_activity.';

-- ----------------------------------------------------------------- state (UNLOGGED)
CREATE UNLOGGED TABLE perfmon.state_sources (
    server_id integer NOT NULL,
    source    text NOT NULL,
    last_ts   timestamptz NOT NULL,
    reset_at  timestamptz,
    extra     jsonb,
    PRIMARY KEY (server_id, source)
);
COMMENT ON TABLE perfmon.state_sources IS
    'Per source: when it was last sampled and the stats reset time seen then. No row '
    '(first run, or after a crash) means the next sample is a baseline.';

CREATE UNLOGGED TABLE perfmon.state_statements (
    stmt_id             integer PRIMARY KEY,
    calls               bigint NOT NULL,
    plans               bigint NOT NULL,
    total_exec_time     double precision NOT NULL,
    total_plan_time     double precision NOT NULL,
    min_exec_time       double precision,
    max_exec_time       double precision,
    mean_exec_time      double precision,
    rows                bigint NOT NULL,
    shared_blks_hit     bigint NOT NULL,
    shared_blks_read    bigint NOT NULL,
    shared_blks_dirtied bigint NOT NULL,
    shared_blks_written bigint NOT NULL,
    local_blks_hit      bigint NOT NULL,
    local_blks_read     bigint NOT NULL,
    local_blks_dirtied  bigint NOT NULL,
    local_blks_written  bigint NOT NULL,
    temp_blks_read      bigint NOT NULL,
    temp_blks_written   bigint NOT NULL,
    blk_read_time       double precision NOT NULL,
    blk_write_time      double precision NOT NULL,
    wal_records         bigint NOT NULL,
    wal_fpi             bigint NOT NULL,
    wal_bytes           numeric NOT NULL,
    last_ts             timestamptz NOT NULL
);

CREATE UNLOGGED TABLE perfmon.state_databases (
    server_id          integer NOT NULL,
    datid              oid NOT NULL,
    xact_commit        bigint NOT NULL,
    xact_rollback      bigint NOT NULL,
    blks_read          bigint NOT NULL,
    blks_hit           bigint NOT NULL,
    tup_returned       bigint NOT NULL,
    tup_fetched        bigint NOT NULL,
    tup_inserted       bigint NOT NULL,
    tup_updated        bigint NOT NULL,
    tup_deleted        bigint NOT NULL,
    conflicts          bigint NOT NULL,
    temp_files         bigint NOT NULL,
    temp_bytes         bigint NOT NULL,
    deadlocks          bigint NOT NULL,
    checksum_failures  bigint NOT NULL,
    blk_read_time      double precision NOT NULL,
    blk_write_time     double precision NOT NULL,
    session_time       double precision NOT NULL,
    active_time        double precision NOT NULL,
    idle_in_transaction_time double precision NOT NULL,
    sessions           bigint NOT NULL,
    sessions_abandoned bigint NOT NULL,
    sessions_fatal     bigint NOT NULL,
    sessions_killed    bigint NOT NULL,
    numbackends        integer NOT NULL,
    PRIMARY KEY (server_id, datid)
);

CREATE UNLOGGED TABLE perfmon.state_tables (
    rel_id              integer PRIMARY KEY,
    seq_scan            bigint NOT NULL,
    seq_tup_read        bigint NOT NULL,
    idx_tup_fetch       bigint NOT NULL,
    n_tup_ins           bigint NOT NULL,
    n_tup_upd           bigint NOT NULL,
    n_tup_del           bigint NOT NULL,
    n_tup_hot_upd       bigint NOT NULL,
    vacuum_count        bigint NOT NULL,
    autovacuum_count    bigint NOT NULL,
    analyze_count       bigint NOT NULL,
    autoanalyze_count   bigint NOT NULL,
    heap_blks_read      bigint NOT NULL,
    heap_blks_hit       bigint NOT NULL,
    toast_blks_read     bigint NOT NULL,
    toast_blks_hit      bigint NOT NULL,
    n_live_tup          bigint NOT NULL,
    n_dead_tup          bigint NOT NULL,
    n_mod_since_analyze bigint NOT NULL,
    n_ins_since_vacuum  bigint NOT NULL,
    last_vacuum         timestamptz,
    last_autovacuum     timestamptz,
    last_analyze        timestamptz,
    last_autoanalyze    timestamptz
);
COMMENT ON TABLE perfmon.state_tables IS
    'Latest statistics of each table of this database, including its last (auto)vacuum and '
    '(auto)analyze times.';

CREATE UNLOGGED TABLE perfmon.state_indexes (
    rel_id        integer PRIMARY KEY,
    idx_scan      bigint NOT NULL,
    idx_tup_read  bigint NOT NULL,
    idx_tup_fetch bigint NOT NULL,
    idx_blks_read bigint NOT NULL,
    idx_blks_hit  bigint NOT NULL
);

CREATE UNLOGGED TABLE perfmon.state_server (
    server_id             integer PRIMARY KEY,
    checkpoints_timed     bigint NOT NULL,
    checkpoints_req       bigint NOT NULL,
    checkpoint_write_time double precision NOT NULL,
    checkpoint_sync_time  double precision NOT NULL,
    buffers_checkpoint    bigint NOT NULL,
    buffers_clean         bigint NOT NULL,
    maxwritten_clean      bigint NOT NULL,
    buffers_backend       bigint NOT NULL,
    buffers_backend_fsync bigint NOT NULL,
    buffers_alloc         bigint NOT NULL,
    wal_records           bigint NOT NULL,
    wal_fpi               bigint NOT NULL,
    wal_bytes             numeric NOT NULL,
    wal_buffers_full      bigint NOT NULL,
    wal_write             bigint NOT NULL,
    wal_sync              bigint NOT NULL,
    wal_write_time        double precision NOT NULL,
    wal_sync_time         double precision NOT NULL,
    archived_count        bigint NOT NULL,
    failed_count          bigint NOT NULL,
    bgwriter_reset        timestamptz,
    wal_reset             timestamptz,
    archiver_reset        timestamptz,
    last_ts               timestamptz
);

CREATE UNLOGGED TABLE perfmon.state_settings (
    server_id integer NOT NULL,
    name      text NOT NULL,
    setting   text,
    PRIMARY KEY (server_id, name)
);

CREATE UNLOGGED TABLE perfmon.state_sizes (
    server_id  integer NOT NULL,
    kind       "char" NOT NULL,
    object_id  bigint NOT NULL,
    size_bytes bigint NOT NULL,
    PRIMARY KEY (server_id, kind, object_id)
);

-- ----------------------------------------------------------------- history
CREATE TABLE perfmon.database_history (
    server_id        integer NOT NULL,
    ts               timestamptz NOT NULL,
    datid            oid NOT NULL,
    numbackends      integer,
    xact_commit      bigint,
    xact_rollback    bigint,
    blks_read        bigint,
    blks_hit         bigint,
    tup_returned     bigint,
    tup_fetched      bigint,
    tup_inserted     bigint,
    tup_updated      bigint,
    tup_deleted      bigint,
    conflicts        bigint,
    temp_files       bigint,
    temp_bytes       bigint,
    deadlocks        bigint,
    checksum_failures bigint,
    blk_read_ms      real,
    blk_write_ms     real,
    session_ms       real,
    active_ms        real,
    idle_in_xact_ms  real,
    sessions         bigint,
    sessions_abandoned bigint,
    sessions_fatal   bigint,
    sessions_killed  bigint
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.database_history IS
    'pg_stat_database per database and sample: deltas since the previous sample (NULL = 0); '
    'numbackends is the value at the sample.';

CREATE TABLE perfmon.statement_history (
    server_id      integer NOT NULL,
    ts             timestamptz NOT NULL,
    stmt_id        integer NOT NULL,
    calls          bigint,
    plans          bigint,
    exec_ms        real,
    plan_ms        real,
    rows           bigint,
    shared_hit     bigint,
    shared_read    bigint,
    shared_dirtied bigint,
    shared_written bigint,
    local_hit      bigint,
    local_read     bigint,
    local_dirtied  bigint,
    local_written  bigint,
    temp_read      bigint,
    temp_written   bigint,
    blk_read_ms    real,
    blk_write_ms   real,
    wal_records    bigint,
    wal_fpi        bigint,
    wal_bytes      bigint
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.statement_history IS
    'pg_stat_statements deltas per statement (perfmon.statements) and sample; NULL = 0. '
    'Only statements that ran since the previous sample have a row.';

CREATE TABLE perfmon.table_history (
    server_id       integer NOT NULL,
    ts              timestamptz NOT NULL,
    rel_id          integer NOT NULL,
    seq_scan        bigint,
    seq_tup_read    bigint,
    idx_tup_fetch   bigint,
    n_tup_ins       bigint,
    n_tup_upd       bigint,
    n_tup_del       bigint,
    n_tup_hot_upd   bigint,
    vacuum_count    integer,
    autovacuum_count integer,
    analyze_count   integer,
    autoanalyze_count integer,
    heap_blks_read  bigint,
    heap_blks_hit   bigint,
    toast_blks_read bigint,
    toast_blks_hit  bigint,
    n_live_tup      bigint,
    n_dead_tup      bigint,
    n_mod_since_analyze bigint,
    n_ins_since_vacuum  bigint
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.table_history IS
    'Table statistics per table (perfmon.relations) and sample: counter deltas (NULL = 0) '
    'and the n_* tuple gauges as they were at the sample. Index scans and index I/O are in '
    'perfmon.index_history, per index.';

CREATE TABLE perfmon.index_history (
    server_id     integer NOT NULL,
    ts            timestamptz NOT NULL,
    rel_id        integer NOT NULL,
    idx_scan      bigint,
    idx_tup_read  bigint,
    idx_tup_fetch bigint,
    idx_blks_read bigint,
    idx_blks_hit  bigint
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.index_history IS 'Index statistics deltas per index and sample (NULL = 0).';

CREATE TABLE perfmon.server_history (
    server_id              integer NOT NULL,
    ts                     timestamptz NOT NULL,
    max_connections        integer NOT NULL,
    sessions_total         integer NOT NULL,
    sessions_active        integer NOT NULL,
    sessions_idle          integer NOT NULL,
    sessions_idle_in_xact  integer NOT NULL,
    sessions_waiting       integer NOT NULL,
    blocked_sessions       integer NOT NULL,
    oldest_query_s         real,
    oldest_xact_s          real,
    oldest_idle_in_xact_s  real,
    max_xid_age            bigint,
    max_mxid_age           bigint,
    checkpoints_timed      integer,
    checkpoints_req        integer,
    checkpoint_write_ms    real,
    checkpoint_sync_ms     real,
    buffers_checkpoint     bigint,
    buffers_clean          bigint,
    maxwritten_clean       integer,
    buffers_backend        bigint,
    buffers_backend_fsync  integer,
    buffers_alloc          bigint,
    wal_records            bigint,
    wal_fpi                bigint,
    wal_bytes              bigint,
    wal_buffers_full       bigint,
    wal_write              bigint,
    wal_sync               bigint,
    wal_write_ms           real,
    wal_sync_ms            real,
    archived_count         integer,
    archive_failed_count   integer,
    last_archived_time     timestamptz,
    last_failed_time       timestamptz,
    interval_s             real,
    xact_commit            bigint,
    xact_rollback          bigint,
    blks_read              bigint,
    blks_hit               bigint,
    tup_returned           bigint,
    tup_fetched            bigint,
    tup_inserted           bigint,
    tup_updated            bigint,
    tup_deleted            bigint,
    temp_files             bigint,
    temp_bytes             bigint,
    deadlocks              bigint
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.server_history IS
    'One row per sample: sessions (counts and ages in seconds at the sample), the oldest '
    'XID/MXID age, deltas of pg_stat_bgwriter, pg_stat_wal and pg_stat_archiver, and the '
    'pg_stat_database deltas of all databases together (NULL = 0); interval_s is the time '
    'since the previous row. One table, so that a time range reads one set of partitions.';

CREATE TABLE perfmon.activity_history (
    server_id       integer NOT NULL,
    ts              timestamptz NOT NULL,
    datid           oid,
    app_id          integer,
    state           text,
    wait_event_type text,
    sessions        integer NOT NULL
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.activity_history IS
    'Client sessions that were not idle at the sample, counted by database, application, '
    'state and wait event type.';

CREATE TABLE perfmon.lock_history (
    server_id      integer NOT NULL,
    ts             timestamptz NOT NULL,
    blocked_pid    integer NOT NULL,
    blocking_pid   integer NOT NULL,
    datid          oid,
    blocked_app_id integer,
    blocking_app_id integer,
    wait_s         real,
    blocked_query_id  bigint,
    blocking_state text,
    locktype       text,
    relation       text
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.lock_history IS
    'Blocking pairs at each sample: who waited on whom, for how long (seconds), on what.';

CREATE TABLE perfmon.replication_history (
    server_id      integer NOT NULL,
    ts             timestamptz NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('replica', 'slot')),
    name           text NOT NULL,
    state          text,
    active         boolean,
    lag_bytes      bigint,
    write_lag_s    real,
    flush_lag_s    real,
    replay_lag_s   real,
    retained_bytes bigint
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.replication_history IS
    'Replicas (pg_stat_replication) and replication slots at each sample: lag in bytes and '
    'seconds, WAL retained by slots in bytes.';

CREATE TABLE perfmon.size_history (
    server_id   integer NOT NULL,
    ts          timestamptz NOT NULL,
    kind        "char" NOT NULL,
    object_id   bigint NOT NULL,
    size_bytes  bigint NOT NULL,
    table_bytes bigint,
    index_bytes bigint,
    toast_bytes bigint
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.size_history IS
    'Sizes in bytes when they changed: kind d = database (object_id = datid), '
    'r = table with its indexes and TOAST (object_id = perfmon.relations.rel_id).';

CREATE TABLE perfmon.settings_history (
    server_id integer NOT NULL,
    ts        timestamptz NOT NULL,
    name      text NOT NULL,
    old_value text,
    new_value text
);
COMMENT ON TABLE perfmon.settings_history IS 'Server settings that changed between two samples.';
CREATE INDEX ON perfmon.settings_history (ts);

-- ----------------------------------------------------------------- rollups
-- Hourly and daily tables have the same columns; each has its own retention.
CREATE TABLE perfmon.database_hourly (
    server_id     integer NOT NULL,
    ts            timestamptz NOT NULL,
    datid         oid NOT NULL,
    samples       integer NOT NULL,
    xact_commit   bigint,
    xact_rollback bigint,
    blks_read     bigint,
    blks_hit      bigint,
    tup_returned  bigint,
    tup_fetched   bigint,
    tup_inserted  bigint,
    tup_updated   bigint,
    tup_deleted   bigint,
    temp_files    bigint,
    temp_bytes    bigint,
    deadlocks     bigint,
    max_backends  integer
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.database_hourly IS
    'database_history summed per database and hour (ts = start of the hour); '
    'max_backends is the peak.';
CREATE TABLE perfmon.database_daily (LIKE perfmon.database_hourly) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.database_daily IS 'database_hourly summed per day (ts = start of the UTC day).';

CREATE TABLE perfmon.statement_hourly (
    server_id    integer NOT NULL,
    ts           timestamptz NOT NULL,
    stmt_id      integer NOT NULL,
    calls        bigint,
    exec_ms      double precision,
    plan_ms      double precision,
    rows         bigint,
    shared_hit   bigint,
    shared_read  bigint,
    temp_written bigint,
    wal_bytes    bigint
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.statement_hourly IS 'statement_history summed per statement and hour.';
CREATE TABLE perfmon.statement_daily (LIKE perfmon.statement_hourly) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.statement_daily IS 'statement_hourly summed per statement and UTC day.';

CREATE TABLE perfmon.server_hourly (
    server_id            integer NOT NULL,
    ts                   timestamptz NOT NULL,
    samples              integer NOT NULL,
    max_sessions         integer,
    avg_sessions_active  real,
    max_sessions_active  integer,
    max_blocked_sessions integer,
    checkpoints_timed    integer,
    checkpoints_req      integer,
    wal_bytes            bigint,
    max_xid_age          bigint
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.server_hourly IS 'server_history per hour: peaks, averages and sums.';
CREATE TABLE perfmon.server_daily (LIKE perfmon.server_hourly) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.server_daily IS 'server_hourly per UTC day.';

INSERT INTO perfmon.partitioned_tables (table_name, granularity, retention_key) VALUES
    ('samples',             'day',   'collection.retention_days'),
    ('database_history',    'day',   'collection.retention_days'),
    ('statement_history',   'day',   'collection.retention_days'),
    ('table_history',       'day',   'collection.retention_days'),
    ('index_history',       'day',   'collection.retention_days'),
    ('server_history',      'day',   'collection.retention_days'),
    ('activity_history',    'day',   'collection.retention_days'),
    ('lock_history',        'day',   'collection.retention_days'),
    ('replication_history', 'day',   'collection.retention_days'),
    ('size_history',        'month', 'collection.rollup_daily_retention_days'),
    ('database_hourly',     'month', 'collection.rollup_hourly_retention_days'),
    ('statement_hourly',    'month', 'collection.rollup_hourly_retention_days'),
    ('server_hourly',       'month', 'collection.rollup_hourly_retention_days'),
    ('database_daily',      'month', 'collection.rollup_daily_retention_days'),
    ('statement_daily',     'month', 'collection.rollup_daily_retention_days'),
    ('server_daily',        'month', 'collection.rollup_daily_retention_days');

-- BRIN on ts: history is appended in time order, so a few pages index a whole day.
CREATE INDEX ON perfmon.database_history USING brin (ts);
CREATE INDEX ON perfmon.statement_history USING brin (ts);
CREATE INDEX ON perfmon.table_history USING brin (ts);
CREATE INDEX ON perfmon.index_history USING brin (ts);
CREATE INDEX ON perfmon.server_history USING brin (ts);
CREATE INDEX ON perfmon.activity_history USING brin (ts);
CREATE INDEX ON perfmon.lock_history USING brin (ts);
CREATE INDEX ON perfmon.replication_history USING brin (ts);
CREATE INDEX ON perfmon.size_history (kind, object_id, ts);
CREATE UNIQUE INDEX ON perfmon.database_hourly (server_id, ts, datid);
CREATE UNIQUE INDEX ON perfmon.database_daily (server_id, ts, datid);
CREATE UNIQUE INDEX ON perfmon.statement_hourly (server_id, ts, stmt_id);
CREATE UNIQUE INDEX ON perfmon.statement_daily (server_id, ts, stmt_id);
CREATE UNIQUE INDEX ON perfmon.server_hourly (server_id, ts);
CREATE UNIQUE INDEX ON perfmon.server_daily (server_id, ts);
