CREATE OR REPLACE FUNCTION perfmon.queue_report(period text, due_for timestamptz DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- The executive report's summary, queued in the alert outbox for each channel of
-- reporting.channels that is enabled, in the caller's transaction (a report run and its
-- messages commit together). due_for set = a scheduled report for that UTC day/week/month:
-- a second one for the same period and due_for is not queued.
DECLARE
    report jsonb;
    headline text;
    run_id bigint;
    wanted text[];
    chosen text[] := '{}';
    skipped jsonb := '{}';
    c text;
    s jsonb;
    queued integer;
BEGIN
    IF period IS NULL OR period NOT IN ('daily', 'weekly', 'monthly') THEN
        RAISE EXCEPTION 'pgperfmon: unknown report period %', coalesce(quote_literal(period), 'NULL')
            USING HINT = 'expected one of daily, weekly, monthly';
    END IF;
    SELECT coalesce(array_agg(x), '{}') INTO wanted
    FROM jsonb_array_elements_text(perfmon.setting('reporting.channels')) AS x;
    FOREACH c IN ARRAY wanted LOOP
        SELECT perfmon.settings_under(ch.config_key) INTO s FROM perfmon.alert_channels AS ch
        WHERE ch.name = c;
        IF NOT FOUND THEN
            skipped := skipped || jsonb_build_object(c, 'no such channel in perfmon.alert_channels');
        ELSIF NOT coalesce((s ->> 'enabled')::boolean, false) THEN
            skipped := skipped || jsonb_build_object(c, format('alerting.channels.%s.enabled is false', c));
        ELSE
            chosen := chosen || c;
        END IF;
    END LOOP;

    report := perfmon.executive_report(period);
    headline := report #>> '{executive_summary,headline}';
    INSERT INTO perfmon.report_runs (period, trigger, due_for, channels, skipped, headline)
    VALUES (period, CASE WHEN due_for IS NULL THEN 'manual' ELSE 'schedule' END, due_for, chosen,
            skipped, headline)
    ON CONFLICT ON CONSTRAINT report_runs_period_due_for_key DO NOTHING
    RETURNING report_id INTO run_id;
    IF run_id IS NULL THEN
        RETURN jsonb_build_object('queued', 0, 'period', period, 'due_for', due_for,
                                  'reason', 'already queued for this period');
    END IF;

    INSERT INTO perfmon.alert_outbox (alert_id, report_id, event, channel, level, payload)
    SELECT NULL, run_id, 'report', ch, 'info',
           jsonb_build_object('kind', 'report', 'event', 'report', 'report_id', run_id,
                              'database', current_database(), 'sent_for', clock_timestamp(),
                              'period', period, 'level', 'info',
                              'summary', format('%s report: %s', initcap(period),
                                                coalesce(headline, 'no headline')),
                              'report', report)
    FROM unnest(chosen) AS ch;
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM pg_notify('perfmon_alerts', queued::text);
    END IF;
    RETURN jsonb_build_object('queued', queued, 'report_id', run_id, 'period', period,
                              'due_for', due_for, 'channels', to_jsonb(chosen), 'skipped', skipped,
                              'headline', headline);
END
$$;
COMMENT ON FUNCTION perfmon.queue_report(text, timestamptz) IS
    'Queues the executive report of a period (daily, weekly, monthly) in perfmon.alert_outbox for each '
    'channel of reporting.channels that is enabled (event report; the delivery workers send it like an '
    'alert, with retries and dead letters) and records it in perfmon.report_runs. due_for (the UTC '
    'day/week/month start of a scheduled report) makes it once per period. Returns {queued, report_id, '
    'channels, skipped: {channel: why}, headline}.';
