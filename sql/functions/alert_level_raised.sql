CREATE OR REPLACE FUNCTION perfmon.alert_level_raised(alert_id bigint, level text, value double precision,
                                                      notified_level text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- A raised level, recorded; notified only above the highest level already notified
-- (notified_level), so that a level flapping below it does not page again.
DECLARE
    above boolean := perfmon.alert_level_rank(level) > coalesce(perfmon.alert_level_rank(notified_level), -1);
BEGIN
    INSERT INTO perfmon.alert_events (alert_id, event, level, value, details)
    VALUES (alert_level_raised.alert_id, 'level_raised', level, value,
            CASE WHEN NOT above THEN '{"notified": false}'::jsonb END);
    IF above THEN
        PERFORM perfmon.alert_notify(alert_level_raised.alert_id, 'level_raised');
    END IF;
END
$$;
COMMENT ON FUNCTION perfmon.alert_level_raised(bigint, text, double precision, text) IS
    'Records an alert''s raised level (event level_raised) and notifies it when it is above the '
    'highest level already notified.';
