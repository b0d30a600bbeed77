CREATE OR REPLACE FUNCTION perfmon.anomaly_timezone()
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- anomaly_detection.timezone, checked: the IANA time zone on whose clocks the envelope's
-- daily profile counts hours. Only a name of pg_timezone_names: PostgreSQL alone would
-- take POSIX forms too ('UTC+3' is three hours west of Greenwich), which PL/Python's
-- zoneinfo refuses, and both envelopes must count the same hours.
DECLARE
    zone text := perfmon.setting('anomaly_detection.timezone') #>> '{}';
BEGIN
    IF zone IS NULL OR NOT EXISTS (SELECT FROM pg_timezone_names AS z WHERE z.name = zone) THEN
        RAISE EXCEPTION 'pgperfmon: anomaly_detection.timezone %: not a time zone name',
                        quote_nullable(zone)
            USING HINT = 'expected an IANA name such as Europe/Berlin, or UTC (SELECT name FROM pg_timezone_names)';
    END IF;
    RETURN zone;
END
$$;
COMMENT ON FUNCTION perfmon.anomaly_timezone() IS
    'The time zone (anomaly_detection.timezone, checked against pg_timezone_names) whose hours '
    'the anomaly envelope''s daily profile follows.';
