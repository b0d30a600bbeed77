CREATE OR REPLACE FUNCTION perfmon.capabilities()
RETURNS TABLE (capability text, in_force boolean, detail text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Which of pgperfmon's modes are in force on this server, and why: the
-- in-database half of `pgperfmon status`.
DECLARE
    preload text[] := string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',');
    has_plpython boolean := EXISTS (SELECT FROM pg_extension WHERE extname = 'plpython3u');
    env jsonb;
    missing text[];
    algorithm text;
BEGIN
    capability := 'pg_cron';
    in_force := 'pg_cron' = ANY (preload);
    detail := CASE WHEN in_force
        THEN format('preloaded; jobs are kept in database %s', current_setting('cron.database_name', true))
        ELSE 'pg_cron is not in shared_preload_libraries: add it and restart the server '
             '(without it nothing samples on its own: perfmon.job_plan lists the jobs for '
             'another scheduler to run)' END;
    RETURN NEXT;

    capability := 'pg_stat_statements';
    in_force := 'pg_stat_statements' = ANY (preload)
        AND EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_stat_statements');
    detail := CASE
        WHEN NOT 'pg_stat_statements' = ANY (preload)
            THEN 'not in shared_preload_libraries: add it and restart the server; statement history is off'
        WHEN NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_stat_statements')
            THEN 'extension not created in this database: run pgperfmon install again'
        ELSE format('max %s statements, track %s',
                    current_setting('pg_stat_statements.max', true),
                    current_setting('pg_stat_statements.track', true)) END;
    RETURN NEXT;

    capability := 'plpython3u';
    IF has_plpython AND to_regprocedure('perfmon.python_environment()') IS NOT NULL THEN
        EXECUTE 'SELECT perfmon.python_environment()' INTO env;
        SELECT array_agg(p.key || ' (' || (p.value ->> 'error') || ')' ORDER BY p.key)
          INTO missing
          FROM jsonb_each(env -> 'packages') AS p
         WHERE p.value ->> 'version' IS NULL;
        in_force := missing IS NULL;
        detail := format('Python %s; %s', env ->> 'python',
            CASE WHEN missing IS NULL
                THEN (SELECT string_agg(p.key || ' ' || (p.value ->> 'version'), ', ' ORDER BY p.key)
                        FROM jsonb_each(env -> 'packages') AS p)
                ELSE 'cannot import: ' || array_to_string(missing, '; ')
                     || ' (on Debian: apt-get install python3-numpy python3-sklearn python3-psutil)'
            END);
    ELSE
        in_force := false;
        detail := 'plpython3u is not available: anomaly scoring uses the SQL envelope (envelope_sql)'
                  || coalesce('; advisor rules ' || (SELECT string_agg(u.rule, ', ' ORDER BY u.rule)
                                                     FROM perfmon.advisor_unavailable_rules() AS u)
                              || ' are unavailable', '')
                  || ' (on Debian: apt-get install postgresql-plpython3-'
                  || current_setting('server_version_num')::int / 10000 || ', then pgperfmon install)';
    END IF;
    RETURN NEXT;

    capability := 'anomaly_detector';
    IF to_regprocedure('perfmon.anomaly_detector()') IS NOT NULL THEN
        EXECUTE 'SELECT perfmon.anomaly_detector(), perfmon.setting(''anomaly_detection.enabled'')::boolean, '
                'perfmon.setting(''anomaly_detection.algorithm'') #>> ''{}'''
            INTO detail, in_force, algorithm;
        env := NULL;
        IF to_regprocedure('perfmon.anomaly_python_missing()') IS NOT NULL THEN
            EXECUTE 'SELECT perfmon.anomaly_python_missing()' INTO env;
        END IF;
        -- Why this detector and not the configured one: what that one needs that the server lacks.
        detail := detail || CASE
            WHEN detail = CASE WHEN algorithm = 'auto' THEN 'envelope' ELSE algorithm END THEN
                CASE WHEN detail = 'envelope_sql' THEN ' (SQL, as anomaly_detection.algorithm chooses)'
                     ELSE ' (PL/Python)' END
            WHEN to_regprocedure('perfmon.score_anomalies_py(text,text,integer)') IS NULL
                THEN ' (SQL: plpython3u is not available)'
            WHEN env ? 'numpy'
                THEN format(' (SQL: anomaly_detection.algorithm %s needs numpy, which the server''s Python '
                            'cannot import: %s; on Debian: apt-get install python3-numpy)',
                            algorithm, env ->> 'numpy')
            WHEN env ? 'scikit-learn'
                THEN format(' (PL/Python: anomaly_detection.algorithm %s needs scikit-learn, which the '
                            'server''s Python cannot import: %s; on Debian: apt-get install python3-sklearn)',
                            algorithm, env ->> 'scikit-learn')
            ELSE ' (PL/Python)' END
            || CASE WHEN in_force THEN '' ELSE '; disabled' END;
        in_force := true;  -- a detector is always there; disabling it is a choice, not a fault
    ELSE
        in_force := false;
        detail := 'not installed';
    END IF;
    RETURN NEXT;

    capability := 'advisor_scope';
    in_force := pg_has_role('perfmon_admin', 'pg_read_all_data', 'MEMBER');
    detail := CASE WHEN in_force
        THEN 'the scheduled advisor may plan statements on every table (pg_read_all_data)'
        ELSE 'the scheduled advisor plans only statements on tables perfmon_admin may read '
             '(optimization.advisor_reads_all_tables: true grants it pg_read_all_data)' END;
    RETURN NEXT;

    capability := 'hypopg';
    in_force := EXISTS (SELECT FROM pg_extension WHERE extname = 'hypopg');
    detail := CASE WHEN in_force
        THEN 'index advice is checked with hypothetical indexes'
        ELSE 'hypopg is not available: index advice falls back to statistics heuristics '
             '(on Debian: apt-get install postgresql-'
             || current_setting('server_version_num')::int / 10000 || '-hypopg, then pgperfmon install)' END;
    RETURN NEXT;

END
$$;
COMMENT ON FUNCTION perfmon.capabilities() IS
    'Which pgperfmon capabilities are in force on this server (pg_cron, pg_stat_statements, '
    'plpython3u with numpy/scikit-learn/psutil, hypopg) and why.';
