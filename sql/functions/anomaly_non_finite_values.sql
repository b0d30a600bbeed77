CREATE OR REPLACE FUNCTION perfmon.anomaly_non_finite_values(since timestamptz, until timestamptz DEFAULT now(),
                                                             feature_names text[] DEFAULT NULL)
RETURNS TABLE (feature text, series text, samples bigint, last_ts timestamptz, last_value text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- What perfmon.anomaly_feature_values() leaves out of the same features and times:
-- NaN and infinities, which no model can fit or score (an infinity made the SQL
-- envelope's range infinite, and NaN its maximum NaN). NULL is no sample, not counted.
DECLARE
    f record;
BEGIN
    FOR f IN SELECT a.name, a.query FROM perfmon.anomaly_features AS a
              WHERE a.enabled AND (feature_names IS NULL OR a.name = ANY (feature_names))
              ORDER BY a.name LOOP
        RETURN QUERY EXECUTE format(
            'SELECT %L::text, coalesce(q.series, %L), count(*), max(q.ts), '
            '(array_agg(q.value::text ORDER BY q.ts DESC))[1] FROM (%s) AS q(series, ts, value) '
            'WHERE q.value IS NOT NULL AND NOT (q.value > ''-Infinity'' AND q.value < ''Infinity'') '
            'GROUP BY 2 ORDER BY 2', f.name, '', f.query)
            USING since, until;
    END LOOP;
END
$$;
COMMENT ON FUNCTION perfmon.anomaly_non_finite_values(timestamptz, timestamptz, text[]) IS
    'Per anomaly feature and series, the samples between two times whose value is not a finite '
    'number (NaN, Infinity, -Infinity), which training and scoring skip: how many, the newest''s '
    'time and value.';
