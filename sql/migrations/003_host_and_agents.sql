-- Host metrics, application agents and the ingest path (issue 4).
--
-- One metric store holds what the database cannot see for itself: host metrics
-- (from the in-database sampler or `pgperfmon agent`), custom and business
-- metrics (`pgperfmon ingest`, perfmon.ingest_metric()). A metric is named once
-- in a catalog with its unit and kind; a series is a metric with its labels
-- (host, mount, device, interface ...), named once in a dictionary; a sample is
-- 24 bytes of (server_id, series_id, ts, value) in a table partitioned by day.
-- Application agents report through perfmon.agent_heartbeat() into a registry
-- and a heartbeat history.

-- ----------------------------------------------------------------- metric catalog
CREATE TABLE perfmon.metric_units (
    unit         text PRIMARY KEY,
    non_negative boolean NOT NULL,
    description  text NOT NULL
);
COMMENT ON TABLE perfmon.metric_units IS
    'Units a metric may be measured in; a value below zero is refused for a non_negative unit.';
INSERT INTO perfmon.metric_units (unit, non_negative, description) VALUES
    ('pct',         true,  'percent (0-100; a process on several cores may exceed 100)'),
    ('bytes',       true,  'bytes'),
    ('bytes_per_s', true,  'bytes per second'),
    ('per_s',       true,  'events (operations, packets, transactions) per second'),
    ('count',       true,  'a number of things or events'),
    ('ms',          true,  'milliseconds'),
    ('s',           true,  'seconds'),
    ('ratio',       true,  'a ratio, usually 0-1'),
    ('score',       false, 'a score on a scale of the metric''s own (e.g. CSAT 1-5, NPS -100..100)'),
    ('currency',    false, 'an amount of money in the organisation''s currency'),
    ('none',        false, 'a dimensionless number');

CREATE TABLE perfmon.metrics (
    metric_id   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE
                CHECK (length(name) <= 100 AND name ~ '^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$'),
    category    text NOT NULL CHECK (category IN ('database', 'system', 'agents', 'business', 'custom')),
    unit        text NOT NULL REFERENCES perfmon.metric_units,
    kind        text NOT NULL CHECK (kind IN ('gauge', 'counter')),
    description text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE perfmon.metrics IS
    'Metric catalog: every metric the store accepts, with its category, unit and kind. '
    'gauge = a level at the sample time; counter = events counted since the previous sample '
    '(never negative). A feeder may add a custom metric by naming its unit.';

INSERT INTO perfmon.metrics (name, category, unit, kind, description) VALUES
    -- database (the collectors keep these in their own history; the catalog names them
    -- for feeders and reports)
    ('db.connections.total',        'database', 'count', 'gauge',   'client connections'),
    ('db.connections.active',       'database', 'count', 'gauge',   'client connections running a query'),
    ('db.connections.used_pct',     'database', 'pct',   'gauge',   'client connections as a share of max_connections'),
    ('db.cache_hit_pct',            'database', 'pct',   'gauge',   'shared buffer hits as a share of block reads'),
    ('db.transactions_per_s',       'database', 'per_s', 'gauge',   'commits and rollbacks per second'),
    ('db.query.mean_ms',            'database', 'ms',    'gauge',   'mean statement execution time'),
    ('db.slow_queries',             'database', 'count', 'counter', 'statements slower than database.performance_thresholds.slow_query_ms'),
    ('db.deadlocks',                'database', 'count', 'counter', 'deadlocks detected'),
    ('db.replication_lag_s',        'database', 's',     'gauge',   'replay lag of the slowest replica'),
    ('db.size_bytes',               'database', 'bytes', 'gauge',   'database size on disk'),
    -- system: what perfmon_py.hostmetrics samples
    ('host.cpu.total_pct',          'system', 'pct',   'gauge', 'CPU busy (not idle, not iowait), all cores'),
    ('host.cpu.user_pct',           'system', 'pct',   'gauge', 'CPU in user mode (incl. nice)'),
    ('host.cpu.system_pct',         'system', 'pct',   'gauge', 'CPU in kernel mode (incl. irq, softirq)'),
    ('host.cpu.iowait_pct',         'system', 'pct',   'gauge', 'CPU idle while waiting for I/O'),
    ('host.cpu.steal_pct',          'system', 'pct',   'gauge', 'CPU taken by the hypervisor for other guests'),
    ('host.cpu.count',              'system', 'count', 'gauge', 'logical CPUs'),
    ('host.load.1m',                'system', 'count', 'gauge', 'load average over 1 minute (runnable + uninterruptible tasks)'),
    ('host.load.5m',                'system', 'count', 'gauge', 'load average over 5 minutes'),
    ('host.load.15m',               'system', 'count', 'gauge', 'load average over 15 minutes'),
    ('host.memory.used_pct',        'system', 'pct',   'gauge', 'memory in use: (total - available) / total'),
    ('host.memory.available_bytes', 'system', 'bytes', 'gauge', 'memory available to new work without swapping'),
    ('host.memory.total_bytes',     'system', 'bytes', 'gauge', 'physical memory'),
    ('host.swap.used_pct',          'system', 'pct',   'gauge', 'swap in use'),
    ('host.swap.used_bytes',        'system', 'bytes', 'gauge', 'swap in use'),
    ('host.disk.used_bytes',        'system', 'bytes', 'gauge', 'space used on a mount (label mount)'),
    ('host.disk.total_bytes',       'system', 'bytes', 'gauge', 'size of a mount (label mount)'),
    ('host.disk.used_pct',          'system', 'pct',   'gauge', 'space used on a mount, as df shows it (label mount)'),
    ('host.diskio.read_bytes_per_s',  'system', 'bytes_per_s', 'gauge', 'bytes read from a block device (label device)'),
    ('host.diskio.write_bytes_per_s', 'system', 'bytes_per_s', 'gauge', 'bytes written to a block device (label device)'),
    ('host.diskio.read_iops',       'system', 'per_s', 'gauge', 'read operations per second (label device)'),
    ('host.diskio.write_iops',      'system', 'per_s', 'gauge', 'write operations per second (label device)'),
    ('host.diskio.busy_pct',        'system', 'pct',   'gauge', 'share of time the device was busy (label device)'),
    ('host.net.recv_bytes_per_s',   'system', 'bytes_per_s', 'gauge', 'bytes received (label interface)'),
    ('host.net.sent_bytes_per_s',   'system', 'bytes_per_s', 'gauge', 'bytes sent (label interface)'),
    ('host.net.recv_packets_per_s', 'system', 'per_s', 'gauge',   'packets received (label interface)'),
    ('host.net.sent_packets_per_s', 'system', 'per_s', 'gauge',   'packets sent (label interface)'),
    ('host.net.errors',             'system', 'count', 'counter', 'receive and send errors since the previous sample (label interface)'),
    ('host.net.drops',              'system', 'count', 'counter', 'dropped packets, in and out, since the previous sample (label interface)'),
    ('host.postgres.cpu_pct',       'system', 'pct',   'gauge', 'CPU of the PostgreSQL processes (100 = one core), exited backends included'),
    ('host.postgres.rss_bytes',     'system', 'bytes', 'gauge', 'resident memory of the PostgreSQL processes, shared memory counted once'),
    ('host.postgres.processes',     'system', 'count', 'gauge', 'PostgreSQL processes (postmaster and its children)'),
    -- agents
    ('agent.response_ms',           'agents', 'ms',    'gauge',   'response time an application agent reports'),
    ('agent.errors',                'agents', 'count', 'counter', 'errors an application agent reports'),
    ('agent.availability_pct',      'agents', 'pct',   'gauge',   'share of time an agent was up'),
    ('agent.spool.pending_batches', 'agents', 'count', 'gauge',   'batches waiting in a pgperfmon agent''s spool'),
    ('agent.spool.dropped_batches', 'agents', 'count', 'counter', 'batches a pgperfmon agent dropped because its spool was full'),
    -- business
    ('business.uptime_pct',             'business', 'pct',      'gauge', 'service uptime'),
    ('business.cost_per_transaction',   'business', 'currency', 'gauge', 'cost of one business transaction'),
    ('business.user_satisfaction_score','business', 'score',    'gauge', 'user satisfaction score'),
    ('business.revenue_impact',         'business', 'currency', 'gauge', 'revenue gained (+) or lost (-) through performance');

-- ----------------------------------------------------------------- series and samples
CREATE TABLE perfmon.metric_series (
    series_id  integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    metric_id  integer NOT NULL REFERENCES perfmon.metrics,
    labels     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
    first_seen timestamptz NOT NULL DEFAULT now(),
    UNIQUE (metric_id, labels)
);
COMMENT ON TABLE perfmon.metric_series IS
    'Series dictionary: a metric with one set of labels (host, mount, device, interface, ...), '
    'named once; samples refer to it by series_id.';

CREATE TABLE perfmon.metric_samples (
    server_id integer NOT NULL,
    series_id integer NOT NULL,
    ts        timestamptz NOT NULL,
    value     double precision NOT NULL
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.metric_samples IS
    'Metric values per series (perfmon.metric_series) and time, in the unit of the metric. '
    'Written only through the ingest functions, which validate every row.';
-- BRIN on ts, as for the other history: samples arrive in time order, and a b-tree
-- would cost every ingested row an index insertion.
CREATE INDEX ON perfmon.metric_samples USING brin (ts);

CREATE TABLE perfmon.ingest_batches (
    batch_key   uuid PRIMARY KEY,
    agent       text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    stored      integer NOT NULL,
    refused     integer NOT NULL,
    refusals    jsonb
);
COMMENT ON TABLE perfmon.ingest_batches IS
    'Idempotency keys of the batches stored by perfmon.ingest_batch(): a batch sent again '
    'with the same key is not stored twice. refusals holds the first 100 refused rows and why.';
CREATE INDEX ON perfmon.ingest_batches (received_at);

-- Counters of the in-database host sampler between runs (pg_cron runs each in a new session).
CREATE UNLOGGED TABLE perfmon.state_host (
    host  text PRIMARY KEY,
    state jsonb NOT NULL
);
COMMENT ON TABLE perfmon.state_host IS
    'The in-database host sampler''s previous counters, per host; no row = next sample is a baseline.';

-- ----------------------------------------------------------------- application agents
CREATE TABLE perfmon.agents (
    agent_id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text NOT NULL UNIQUE,
    first_seen          timestamptz NOT NULL DEFAULT now(),
    last_seen           timestamptz NOT NULL DEFAULT now(),
    last_status         text NOT NULL,
    expected_interval_s real,
    heartbeats          bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE perfmon.agents IS
    'Registry of application agents: first and last heartbeat, the last reported status, and '
    'the expected seconds between heartbeats (given by the agent, else learned from its gaps).';

CREATE TABLE perfmon.agent_heartbeats (
    server_id   integer NOT NULL,
    ts          timestamptz NOT NULL,
    agent_id    integer NOT NULL,
    status      text NOT NULL,
    response_ms real,
    errors      integer NOT NULL,
    details     jsonb
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.agent_heartbeats IS
    'Every heartbeat: reported status (ok, degraded, error, down), response time in ms, '
    'errors since the previous heartbeat, free-form details.';
CREATE INDEX ON perfmon.agent_heartbeats (agent_id, ts);

INSERT INTO perfmon.partitioned_tables (table_name, granularity, retention_key) VALUES
    ('metric_samples',   'day', 'collection.retention_days'),
    ('agent_heartbeats', 'day', 'collection.retention_days');

-- ----------------------------------------------------------------- jobs
-- The in-database host sampler needs plpython3u (and psutil in the server's Python,
-- which it checks itself); without plpython3u the job stays off and `pgperfmon agent`
-- samples the host instead.
INSERT INTO perfmon.jobs (name, schedule, interval_key, command, description, enabled)
SELECT 'sample_host', NULL, 'system.agent_interval_seconds', 'SELECT perfmon.sample_host()',
       'sample the host''s CPU, memory, disks and network (PL/Python, psutil)',
       EXISTS (SELECT FROM pg_extension WHERE extname = 'plpython3u');
INSERT INTO perfmon.jobs (name, schedule, interval_key, command, description) VALUES
    ('ingest_housekeeping', '37 0 * * *', NULL, 'SELECT perfmon.ingest_housekeeping()',
     'forget idempotency keys past retention');
