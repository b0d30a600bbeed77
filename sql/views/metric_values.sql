CREATE OR REPLACE VIEW perfmon.metric_values AS
SELECT v.server_id, v.ts, m.name AS metric, s.labels, v.value, m.unit, m.category, m.kind, v.series_id
FROM perfmon.metric_samples AS v
JOIN perfmon.metric_series AS s ON s.series_id = v.series_id
JOIN perfmon.metrics AS m ON m.metric_id = s.metric_id;
COMMENT ON VIEW perfmon.metric_values IS
    'Every stored metric value with its metric name, labels, unit (the value is in that unit), '
    'category and kind. Filter on ts and metric.';
