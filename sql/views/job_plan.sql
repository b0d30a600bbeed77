CREATE OR REPLACE VIEW perfmon.job_plan AS
WITH cfg AS (
    SELECT perfmon.setting('collection.interval_seconds')::int AS interval_s
)
SELECT j.name,
       CASE
           WHEN j.schedule IS NOT NULL THEN j.schedule
           WHEN cfg.interval_s < 60 THEN '* * * * *'
           WHEN cfg.interval_s = 3600 THEN '0 * * * *'
           ELSE format('*/%s * * * *', cfg.interval_s / 60)
       END AS schedule,
       CASE
           WHEN j.schedule IS NULL AND cfg.interval_s < 60
               THEN format('CALL perfmon.run_every_interval(%L)', j.command)
           ELSE j.command
       END AS command,
       j.description
FROM perfmon.jobs AS j
CROSS JOIN cfg
WHERE j.enabled;
COMMENT ON VIEW perfmon.job_plan IS
    'The pg_cron jobs pgperfmon install schedules: cron expression and command for each enabled '
    'row of perfmon.jobs, with collection.interval_seconds applied.';
