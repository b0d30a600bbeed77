CREATE OR REPLACE FUNCTION perfmon.report_schedule(at timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Run hourly by pg_cron. reporting.schedule daily/weekly/monthly: the report of the
-- current UTC day/ISO week/month is queued on the first run at or after
-- reporting.hour_utc of its first day, so a run missed (server down) is caught up by the
-- next one within the same period, and never sent twice.
DECLARE
    schedule text := perfmon.setting('reporting.schedule') #>> '{}';
    hour_utc integer := perfmon.setting('reporting.hour_utc')::int;
    bucket timestamptz;
    done bigint;
BEGIN
    IF schedule IS NULL THEN
        RETURN jsonb_build_object('due', false, 'reason', 'reporting.schedule is not set');
    END IF;
    bucket := date_trunc(CASE schedule WHEN 'daily' THEN 'day' WHEN 'weekly' THEN 'week' ELSE 'month' END,
                         at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    IF at < bucket + make_interval(hours => hour_utc) THEN
        RETURN jsonb_build_object('due', false, 'schedule', schedule, 'due_for', bucket,
                                  'reason', format('not before %s', bucket + make_interval(hours => hour_utc)));
    END IF;
    SELECT r.report_id INTO done FROM perfmon.report_runs AS r
    WHERE r.period = schedule AND r.due_for = bucket;
    IF FOUND THEN
        RETURN jsonb_build_object('due', false, 'schedule', schedule, 'due_for', bucket,
                                  'reason', 'already queued', 'report_id', done);
    END IF;
    RETURN jsonb_build_object('due', true, 'schedule', schedule)
           || perfmon.queue_report(schedule, bucket);
END
$$;
COMMENT ON FUNCTION perfmon.report_schedule(timestamptz) IS
    'The scheduled report (job report, hourly): with reporting.schedule daily, weekly or monthly, queues '
    'perfmon.queue_report() once per UTC day, ISO week or month, on the first run at or after '
    'reporting.hour_utc of its first day. Returns {due, reason | what queue_report returned}.';
