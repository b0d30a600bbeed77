-- Developer: what the recommendations named by id are (perfmon.recommendations).
SELECT id, kind, rule, severity, target, finding, status, status_reason, status_changed
FROM perfmon.recommendations
WHERE id = ANY (%(ids)s)
