-- Scheduled reports (issue 8): the executive report's summary is queued in the alert
-- outbox, one message per channel, so the existing delivery (the in-database worker and
-- pgperfmon deliver) carries it with the same retries, dead letters and delivery log.
--
-- A report is not an alert: an outbox row now belongs to an alert or to a report run.
-- perfmon.report_runs keeps one row per report queued (at most a few a day: no
-- partitioning; rows are small and a year of daily reports is 365 rows).

CREATE TABLE perfmon.report_runs (
    report_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    period     text NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly')),
    trigger    text NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    -- The day, week or month (UTC, start) a scheduled report belongs to: one per period.
    due_for    timestamptz,
    queued_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    channels   text[] NOT NULL,
    skipped    jsonb NOT NULL DEFAULT '{}',
    headline   text,
    CHECK ((trigger = 'schedule') = (due_for IS NOT NULL)),
    UNIQUE (period, due_for)
);
COMMENT ON TABLE perfmon.report_runs IS
    'Every executive report queued for delivery: period (daily, weekly, monthly), trigger (schedule '
    'or manual), the UTC day/week/month a scheduled one is due for (one per period), the channels its '
    'message was queued to, the configured channels skipped and why, and its headline.';

ALTER TABLE perfmon.alert_outbox ALTER COLUMN alert_id DROP NOT NULL;
ALTER TABLE perfmon.alert_outbox
    ADD COLUMN report_id bigint REFERENCES perfmon.report_runs ON DELETE CASCADE;
ALTER TABLE perfmon.alert_outbox
    ADD CONSTRAINT alert_outbox_alert_or_report CHECK ((alert_id IS NULL) <> (report_id IS NULL));
COMMENT ON COLUMN perfmon.alert_outbox.report_id IS
    'The report run (perfmon.report_runs) of a scheduled or manual report message (event report); '
    'NULL for an alert notification.';

INSERT INTO perfmon.jobs (name, schedule, interval_key, command, description) VALUES
    ('report', '7 * * * *', NULL, 'SELECT perfmon.report_schedule()',
     'queue the scheduled executive report (reporting.schedule) for the alert channels when due');
