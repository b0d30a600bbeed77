CREATE OR REPLACE FUNCTION perfmon.collect_settings(sample_ts timestamptz)
RETURNS perfmon.collect_result
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Server settings that changed since the previous sample (the first sample only
-- records where they stand). Values a session or client set for itself (the
-- collector's own lock_timeout, a client's application_name) are not server
-- settings and are left out.
DECLARE
    first_run boolean := NOT EXISTS (SELECT FROM perfmon.state_settings WHERE server_id = 1);
    n int;
BEGIN
    WITH diff AS (
        SELECT s.name, p.setting AS old_value, s.setting AS new_value
        FROM pg_settings AS s
        LEFT JOIN perfmon.state_settings AS p ON p.server_id = 1 AND p.name = s.name
        WHERE s.source NOT IN ('client', 'session')
          AND s.setting IS DISTINCT FROM p.setting
    ),
    saved AS (
        INSERT INTO perfmon.state_settings AS st (server_id, name, setting)
        SELECT 1, name, new_value FROM diff
        ON CONFLICT (server_id, name) DO UPDATE SET setting = EXCLUDED.setting
    ),
    stored AS (
        INSERT INTO perfmon.settings_history (server_id, ts, name, old_value, new_value)
        SELECT 1, sample_ts, name, old_value, new_value FROM diff
        WHERE NOT first_run
        RETURNING 1
    )
    SELECT count(*) INTO n FROM stored;
    -- No state although an earlier sample exists: a crash emptied it, and what changed
    -- across the crash cannot be told (a gap).
    RETURN ROW(n, CASE WHEN first_run AND perfmon.sampled_before(sample_ts) THEN 1 ELSE 0 END,
               NULL)::perfmon.collect_result;
END
$$;
COMMENT ON FUNCTION perfmon.collect_settings(timestamptz) IS
    'Collection stage: settings that changed since the previous sample into perfmon.settings_history.';
