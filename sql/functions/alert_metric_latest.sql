CREATE OR REPLACE FUNCTION perfmon.alert_metric_latest(metric_name text, within interval DEFAULT '10 minutes')
RETURNS TABLE (target text, value double precision, details jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(nullif(concat_ws(' ', s.labels ->> 'host', s.labels ->> 'mount',
                                     s.labels ->> 'device', s.labels ->> 'interface'), ''), 'local'),
           x.value,
           jsonb_build_object('ts', x.ts, 'labels', s.labels)
    FROM perfmon.metrics AS m
    JOIN perfmon.metric_series AS s ON s.metric_id = m.metric_id
    CROSS JOIN LATERAL (
        SELECT ms.ts, ms.value FROM perfmon.metric_samples AS ms
        WHERE ms.series_id = s.series_id AND ms.server_id = 1 AND ms.ts > now() - within
        ORDER BY ms.ts DESC LIMIT 1
    ) AS x
    WHERE m.name = metric_name
$$;
COMMENT ON FUNCTION perfmon.alert_metric_latest(text, interval) IS
    'The latest value (in the metric''s unit) of each series of a metric of the metric store sampled '
    'within the interval, with its labels as target (host, mount, device, interface).';
