-- pgperfmon's jobs for one monitored database, with their latest run.
-- Runs in pg_cron's database. %(prefix)s is 'pgperfmon.<database>.', %(dbname)s the database
-- (the prefix alone also matches the jobs of a database named '<database>.x').
SELECT j.jobname,
       j.schedule,
       j.command,
       j.active,
       r.status          AS last_status,
       r.return_message  AS last_message,
       r.start_time      AS last_start,
       r.end_time        AS last_end,
       round(extract(epoch FROM r.end_time - r.start_time) * 1000)::bigint AS last_duration_ms
FROM cron.job AS j
LEFT JOIN LATERAL (
    SELECT d.status, d.return_message, d.start_time, d.end_time
    FROM cron.job_run_details AS d
    WHERE d.jobid = j.jobid
    ORDER BY d.runid DESC
    LIMIT 1
) AS r ON true
WHERE starts_with(j.jobname, %(prefix)s) AND j.database = %(dbname)s
ORDER BY j.jobname
