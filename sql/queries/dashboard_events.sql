-- Developer: the timeline of the window (perfmon.events), newest first.
SELECT ts, kind, severity, title, detail, source
FROM perfmon.events
WHERE ts > now() - make_interval(secs => %(window_s)s)
ORDER BY ts DESC
LIMIT 60
