-- The highest level notified for each alert.
--
-- A value flapping across a threshold (95, 75, 95, 75, ...) raised the level again at
-- every return to 95, because the comparison was with the current level, which the 75
-- had just lowered: each return was a new level_raised notification, each reaching the
-- channels of that level only (SMS). A level_raised is now notified only above the
-- highest level already notified for the alert, kept here.
ALTER TABLE perfmon.alert_log ADD COLUMN notified_level text REFERENCES perfmon.alert_levels;
COMMENT ON COLUMN perfmon.alert_log.notified_level IS
    'The highest level this alert has been notified at (firing, level_raised, escalated); NULL = '
    'never notified (still pending, or fired during a silence). A raised level is notified only above it.';

-- Alerts notified before this column existed: the highest level queued for them, else
-- their level (notified to no channel, or reopened within the cooldown after a notified
-- firing). An alert whose firing a silence suppressed and that nobody heard of stays NULL.
UPDATE perfmon.alert_log AS l
SET notified_level = coalesce(
        (SELECT o.level FROM perfmon.alert_outbox AS o JOIN perfmon.alert_levels AS v ON v.level = o.level
         WHERE o.alert_id = l.alert_id AND o.event <> 'resolved'
         ORDER BY v.rank DESC LIMIT 1),
        l.level)
WHERE l.fired_at IS NOT NULL
  AND (l.notified_at IS NOT NULL
       OR EXISTS (SELECT FROM perfmon.alert_outbox AS o WHERE o.alert_id = l.alert_id)
       OR NOT EXISTS (SELECT FROM perfmon.alert_events AS e
                      WHERE e.alert_id = l.alert_id AND e.event = 'suppressed'));
