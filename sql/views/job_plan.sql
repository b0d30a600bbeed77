CREATE OR REPLACE VIEW perfmon.job_plan AS
SELECT j.name,
       coalesce(j.schedule, perfmon.cron_schedule(i.seconds)) AS schedule,
       CASE
           WHEN j.schedule IS NULL AND i.seconds < 60
               -- The PL/Python loop waits between slots without a snapshot (see its comment).
               THEN format('CALL perfmon.%s(%L, %s)',
                           CASE WHEN to_regprocedure('perfmon.run_every_interval_py(text,integer)') IS NULL
                                THEN 'run_every_interval' ELSE 'run_every_interval_py' END,
                           j.command, i.seconds)
           ELSE j.command
       END AS command,
       j.description
FROM perfmon.jobs AS j
CROSS JOIN LATERAL (
    SELECT CASE WHEN j.interval_key IS NOT NULL THEN perfmon.setting(j.interval_key)::int END AS seconds
) AS i
WHERE j.enabled
  -- Capabilities as they are now, at every install: a job whose extension came later runs.
  AND NOT EXISTS (SELECT FROM unnest(j.requires) AS r(extname)
                  WHERE NOT EXISTS (SELECT FROM pg_extension AS e WHERE e.extname = r.extname));
COMMENT ON VIEW perfmon.job_plan IS
    'The pg_cron jobs pgperfmon install schedules: cron expression and command for each enabled '
    'row of perfmon.jobs whose required extensions are created, with its configured interval applied.';
