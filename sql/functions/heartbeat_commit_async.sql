CREATE OR REPLACE FUNCTION perfmon.heartbeat_commit_async()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- The deferred constraint trigger heartbeat_commit_async on perfmon.agent_heartbeats
-- (and so on each of its partitions) runs this at COMMIT, after all the
-- transaction's other work, as the caller. When the transaction wrote nothing but
-- heartbeats (perfmon.agents and perfmon.agent_heartbeats, with their partitions
-- and indexes), its commit does not wait for the WAL flush: synchronous_commit is
-- set off for this transaction only. A crash of the server may then lose the last
-- fraction of a second of heartbeats, as whole transactions, and nothing else.
-- Any other write in the transaction to a table that outlives a crash (not
-- temporary, not unlogged), before or after the heartbeat, leaves the caller's
-- synchronous_commit as it was. Writes are seen in the locks the transaction holds
-- until its end: a relation held in a mode stronger than the reading ones (INSERT,
-- UPDATE, DELETE, MERGE, COPY, nextval, DDL, LOCK) is one it wrote or meant to
-- write. An index or TOAST table is written only with its table, whose own lock
-- decides. Catalog lookups only: the caller needs no rights on perfmon's tables.
DECLARE
    heartbeats oid := pg_partition_root(TG_RELID);
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_lock_status() AS l
          LEFT JOIN pg_class AS c ON c.oid = l.relation
         WHERE l.pid = pg_backend_pid()
           AND l.locktype = 'relation'
           AND l.mode <> 'AccessShareLock' AND l.mode <> 'RowShareLock'
           AND (c.oid IS NULL  -- dropped by this transaction
                OR (c.relkind NOT IN ('i', 'I', 't') AND c.relpersistence = 'p'
                    AND c.oid <> heartbeats
                    AND NOT (c.relnamespace = 'perfmon'::regnamespace AND c.relname = 'agents')
                    AND NOT (c.relispartition AND pg_partition_root(c.oid) = heartbeats))))
    THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION perfmon.heartbeat_commit_async() IS
    'Trigger function (deferred, at COMMIT): a transaction that wrote only heartbeats commits '
    'without waiting for its WAL flush; see docs/host-and-agents.md, "Durability of heartbeats".';
