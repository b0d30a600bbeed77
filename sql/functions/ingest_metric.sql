CREATE OR REPLACE FUNCTION perfmon.ingest_metric(metric text, value double precision,
                                                 ts timestamptz DEFAULT now(),
                                                 labels jsonb DEFAULT '{}', unit text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
-- One value, through the same validation as a batch (perfmon.ingest_series()
-- for the name, labels and unit; perfmon.ingest_batch() for the value and
-- time). Raises with the reason when it is refused. Returns the series id.
DECLARE
    s record;
    result jsonb;
BEGIN
    SELECT * INTO s FROM perfmon.ingest_series(ARRAY[metric], ARRAY[labels], ARRAY[unit]);
    IF s.refused IS NOT NULL THEN
        RAISE EXCEPTION 'pgperfmon: % refused: %', coalesce(quote_literal(left(metric, 60)), 'metric'), s.refused
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM perfmon.ingest_open();
    INSERT INTO pg_temp.perfmon_ingest (seq, series_id, ts, value) VALUES (1, s.series_id, ts, value);
    result := perfmon.ingest_batch(gen_random_uuid(), session_user);
    IF (result ->> 'refused')::int > 0 THEN
        RAISE EXCEPTION 'pgperfmon: value refused: %', result -> 'errors' -> 0 ->> 'reason'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN s.series_id;
END
$$;
COMMENT ON FUNCTION perfmon.ingest_metric(text, double precision, timestamptz, jsonb, text) IS
    'Stores one value of a metric (at ts, default now, with optional labels); naming a unit adds an '
    'unknown metric to the catalog as a custom gauge. Raises with the reason when refused; returns '
    'the series id.';
