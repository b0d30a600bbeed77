CREATE OR REPLACE FUNCTION perfmon.recovery_verify(action text, target jsonb, acted_at timestamptz,
                                                   timeout_ms integer,
                                                   OUT verified boolean, OUT detail text, OUT at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
-- Re-check the condition a session action was meant to clear, until it is clear or
-- timeout_ms has passed.
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_ms / 1000.0);
    target_pid integer := (target ->> 'pid')::int;
    started timestamptz := (target ->> 'backend_start')::timestamptz;
    alive boolean;
    still integer;
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();  -- pg_stat_activity is otherwise frozen for the transaction
        alive := EXISTS (SELECT FROM pg_stat_activity AS a WHERE a.pid = target_pid
                         AND a.backend_start = started);
        IF action = 'cancel_long_queries' THEN
            verified := NOT EXISTS (SELECT FROM pg_stat_activity AS a WHERE a.pid = target_pid
                                    AND a.backend_start = started AND a.state = 'active'
                                    AND a.query_start = (target ->> 'query_start')::timestamptz);
            detail := CASE WHEN verified THEN 'the query is no longer running'
                           ELSE 'the query is still running' END;
        ELSIF action = 'terminate_lock_blockers' THEN
            SELECT count(DISTINCT l.pid) INTO still FROM pg_locks AS l
            WHERE NOT l.granted AND l.waitstart <= acted_at
              AND l.pid IN (SELECT jsonb_array_elements_text(target -> 'chain')::int);
            verified := NOT alive AND still = 0;
            detail := CASE WHEN verified
                           THEN format('the blocker is gone and none of the %s waiting sessions still waits',
                                       target ->> 'waiters')
                           WHEN alive THEN 'the blocker is still there'
                           ELSE format('%s sessions of the chain still wait', still) END;
        ELSE
            verified := NOT alive;
            detail := CASE WHEN verified THEN 'the session is gone' ELSE 'the session is still there' END;
        END IF;
        at := clock_timestamp();
        EXIT WHEN verified OR at >= deadline;
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;
COMMENT ON FUNCTION perfmon.recovery_verify(text, jsonb, timestamptz, integer) IS
    'Re-checks, every 20 ms for up to timeout_ms, that a session action cleared its condition '
    '(session gone, query no longer running, lock chain no longer waiting); returns whether, why, and when.';
