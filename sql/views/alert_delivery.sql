CREATE OR REPLACE VIEW perfmon.alert_delivery AS
SELECT o.message_id, o.alert_id, o.created_at AS ts, o.event, o.channel, o.level, o.status, o.attempts,
       o.next_attempt_at, o.delivered_at,
       round(extract(epoch FROM o.delivered_at - o.created_at)::numeric * 1000, 1) AS delivery_ms,
       o.last_error,
       o.payload ->> 'summary' AS summary,
       o.recipients_left
FROM perfmon.alert_outbox AS o
ORDER BY o.message_id DESC;
COMMENT ON VIEW perfmon.alert_delivery IS
    'The alert outbox: each notification per channel, its status (pending, delivered, dead), '
    'attempts, next attempt, delivery_ms (queued to delivered, ms), the last (redacted) error and, '
    'of an email or SMS other recipients accepted, the recipients it is still retried to. '
    'Every attempt: perfmon.delivery_log.';
