-- The rollups as data: which table each reads, per which UTC bucket, and how it sums
-- each column (as pgwatch keeps its metrics' SQL, and PoWA registers a source as a row).
--
-- perfmon.rollup() had its three hourly and three daily INSERTs written out, and
-- perfmon.maintain_partitions() a list of its own of the six tables those read (to roll up
-- before retention drops one of their partitions): a rollup added to the one and forgotten
-- in the other had its unrolled raw days dropped for good. Both now read this table:
-- adding a rollup is adding a row.
CREATE TABLE perfmon.rollups (
    target_table text PRIMARY KEY REFERENCES perfmon.partitioned_tables (table_name),
    source_table text NOT NULL REFERENCES perfmon.partitioned_tables (table_name),
    bucket       text NOT NULL CHECK (bucket IN ('hour', 'day')),
    key_columns  text[] NOT NULL DEFAULT '{}',
    columns      text[] NOT NULL,
    aggregates   text[] NOT NULL,
    CHECK (cardinality(columns) > 0 AND cardinality(columns) = cardinality(aggregates))
);
COMMENT ON TABLE perfmon.rollups IS
    'Registry of rollups: perfmon.rollup() fills target_table from source_table per UTC bucket '
    '(hour: from raw history; day: from an hourly table), grouped by server_id, the bucket and '
    'key_columns, each of columns being the aggregate (SQL over source_table) at the same place in '
    'aggregates. perfmon.maintain_partitions() rolls up before it drops a partition of a source_table.';

INSERT INTO perfmon.rollups (target_table, source_table, bucket, key_columns, columns, aggregates) VALUES
    ('database_hourly', 'database_history', 'hour', '{datid}',
     '{samples, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched, tup_inserted,
       tup_updated, tup_deleted, temp_files, temp_bytes, deadlocks, max_backends}',
     ARRAY['count(*)', 'sum(xact_commit)', 'sum(xact_rollback)', 'sum(blks_read)', 'sum(blks_hit)',
           'sum(tup_returned)', 'sum(tup_fetched)', 'sum(tup_inserted)', 'sum(tup_updated)',
           'sum(tup_deleted)', 'sum(temp_files)', 'sum(temp_bytes)', 'sum(deadlocks)', 'max(numbackends)']),
    ('statement_hourly', 'statement_history', 'hour', '{stmt_id}',
     '{calls, exec_ms, plan_ms, rows, shared_hit, shared_read, temp_written, wal_bytes}',
     ARRAY['sum(calls)', 'sum(exec_ms)', 'sum(plan_ms)', 'sum(rows)', 'sum(shared_hit)', 'sum(shared_read)',
           'sum(temp_written)', 'sum(wal_bytes)']),
    ('server_hourly', 'server_history', 'hour', '{}',
     '{samples, max_sessions, avg_sessions_active, max_sessions_active, max_blocked_sessions,
       checkpoints_timed, checkpoints_req, wal_bytes, max_xid_age, covered_s}',
     ARRAY['count(*)', 'max(sessions_total)', 'avg(sessions_active)', 'max(sessions_active)',
           'max(blocked_sessions)', 'sum(checkpoints_timed)', 'sum(checkpoints_req)', 'sum(wal_bytes)',
           'max(max_xid_age)', 'coalesce(sum(interval_s) FILTER (WHERE interval_s > 0), 0)']),
    ('database_daily', 'database_hourly', 'day', '{datid}',
     '{samples, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched, tup_inserted,
       tup_updated, tup_deleted, temp_files, temp_bytes, deadlocks, max_backends}',
     ARRAY['sum(samples)', 'sum(xact_commit)', 'sum(xact_rollback)', 'sum(blks_read)', 'sum(blks_hit)',
           'sum(tup_returned)', 'sum(tup_fetched)', 'sum(tup_inserted)', 'sum(tup_updated)',
           'sum(tup_deleted)', 'sum(temp_files)', 'sum(temp_bytes)', 'sum(deadlocks)', 'max(max_backends)']),
    ('statement_daily', 'statement_hourly', 'day', '{stmt_id}',
     '{calls, exec_ms, plan_ms, rows, shared_hit, shared_read, temp_written, wal_bytes}',
     ARRAY['sum(calls)', 'sum(exec_ms)', 'sum(plan_ms)', 'sum(rows)', 'sum(shared_hit)', 'sum(shared_read)',
           'sum(temp_written)', 'sum(wal_bytes)']),
    ('server_daily', 'server_hourly', 'day', '{}',
     '{samples, max_sessions, avg_sessions_active, max_sessions_active, max_blocked_sessions,
       checkpoints_timed, checkpoints_req, wal_bytes, max_xid_age, covered_s}',
     ARRAY['sum(samples)', 'max(max_sessions)', 'sum(avg_sessions_active * samples) / nullif(sum(samples), 0)',
           'max(max_sessions_active)', 'max(max_blocked_sessions)', 'sum(checkpoints_timed)',
           'sum(checkpoints_req)', 'sum(wal_bytes)', 'max(max_xid_age)',
           'CASE WHEN count(covered_s) = count(*) THEN sum(covered_s) END']);
