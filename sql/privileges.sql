-- Privileges, re-applied by every install after all objects exist, as the installing
-- superuser. Least privilege: PUBLIC gets nothing; perfmon_reader reads the views;
-- perfmon_agent may only call the ingest functions; perfmon_admin owns the rest.

REVOKE ALL ON SCHEMA perfmon FROM PUBLIC;
GRANT USAGE ON SCHEMA perfmon TO perfmon_reader, perfmon_agent;

REVOKE ALL ON ALL TABLES IN SCHEMA perfmon FROM PUBLIC, perfmon_reader, perfmon_agent;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA perfmon FROM PUBLIC, perfmon_reader, perfmon_agent;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA perfmon FROM PUBLIC, perfmon_reader, perfmon_agent;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA perfmon FROM PUBLIC, perfmon_reader, perfmon_agent;

-- Readers see every view (never the tables behind them).
DO $$
DECLARE
    v regclass;
BEGIN
    FOR v IN
        SELECT c.oid::regclass FROM pg_class AS c
        WHERE c.relnamespace = 'perfmon'::regnamespace AND c.relkind IN ('v', 'm')
    LOOP
        EXECUTE format('GRANT SELECT ON %s TO perfmon_reader', v);
    END LOOP;
END
$$;

-- Functions a reader may call: those views use, and read-only reports.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc AS p
        WHERE p.pronamespace = 'perfmon'::regnamespace
          AND p.proname = ANY (ARRAY['setting', 'cron_schedule', 'statement_totals',
                                    'health_score', 'executive_report', 'archive_ready_files', 'live_sessions',
                                    'workload_trend', 'linear_trend', 'student_t_975', 'size_trends',
                                    'redact_secrets', 'anomaly_severity', 'agent_interval_s'])
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO perfmon_reader', f);
    END LOOP;
END
$$;

-- Functions the agent may call to feed data in, and nothing else.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc AS p
        WHERE p.pronamespace = 'perfmon'::regnamespace
          AND p.proname = ANY (ARRAY['agent_heartbeat', 'ingest_metric', 'ingest_open',
                                    'ingest_series', 'ingest_batch'])
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO perfmon_agent', f);
    END LOOP;
END
$$;

-- The PL/Python code store belongs to the superuser: writing it means running code
-- as the server's OS user. perfmon_admin (whom pg_cron runs the jobs as) may read it.
ALTER TABLE perfmon.python_modules OWNER TO CURRENT_USER;
REVOKE ALL ON perfmon.python_modules FROM perfmon_admin;
GRANT SELECT ON perfmon.python_modules TO perfmon_admin;

-- Automated recovery (off by default) cancels and terminates sessions as perfmon_admin
-- under pg_cron; pg_signal_backend never reaches superusers' sessions.
GRANT pg_signal_backend TO perfmon_admin;

-- PL/Python functions are created by the superuser (untrusted language); only
-- perfmon_admin may run them.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc AS p
        JOIN pg_language AS l ON l.oid = p.prolang
        WHERE p.pronamespace = 'perfmon'::regnamespace AND l.lanname = 'plpython3u'
    LOOP
        EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO perfmon_admin', f);  -- procedures too
    END LOOP;
END
$$;
