-- Follow-ups of issue 4: heartbeats that do not wait for a WAL flush, and jobs that
-- follow the server's capabilities at every install.

-- ----------------------------------------------------------------- heartbeat commits
-- At COMMIT, a transaction whose only writes are heartbeats is made to commit
-- without waiting for its WAL flush (see sql/functions/heartbeat_commit_async.sql
-- and docs/host-and-agents.md, "Durability of heartbeats"). A deferred constraint
-- trigger is the one place SQL runs at commit time, after all the transaction's
-- other work. The function is created here only so that the trigger can name it;
-- its body is the file's, which every install applies right after the migrations.
CREATE OR REPLACE FUNCTION perfmon.heartbeat_commit_async()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN NULL; END $$;

-- On the partitioned table: PostgreSQL clones it onto every partition, present and future.
CREATE CONSTRAINT TRIGGER heartbeat_commit_async
    AFTER INSERT ON perfmon.agent_heartbeats
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION perfmon.heartbeat_commit_async();

-- ----------------------------------------------------------------- job requirements
-- A job that needs an extension names it; perfmon.job_plan (so pgperfmon install)
-- schedules it only while the extension is there. `enabled` is left to the DBA.
ALTER TABLE perfmon.jobs ADD COLUMN requires text[] NOT NULL DEFAULT '{}';
COMMENT ON COLUMN perfmon.jobs.requires IS
    'extensions the job needs (e.g. plpython3u): pgperfmon install schedules an enabled job '
    'only while all of them are created in the database (see perfmon.job_plan)';
-- Until now these two rows were disabled when plpython3u was missing as their migration
-- ran, and stayed so after plpython3u came. Such a row is switched on again: the
-- requirement now keeps it unscheduled while plpython3u is missing. A row last written
-- after plpython3u was created (a DBA's UPDATE ... SET enabled = false, made while it
-- was there) keeps its setting: age() compares the transaction ids of the two writes.
UPDATE perfmon.jobs AS j
   SET requires = '{plpython3u}',
       enabled = j.enabled OR NOT EXISTS (SELECT FROM pg_extension AS e
                                          WHERE e.extname = 'plpython3u' AND age(e.xmin) > age(j.xmin))
 WHERE j.name IN ('sample_host', 'deliver_alerts');
