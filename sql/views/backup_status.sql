CREATE OR REPLACE VIEW perfmon.backup_status AS
WITH cfg AS (
    SELECT perfmon.setting('optimization.backup_max_age_hours')::int AS max_age_h
),
arch AS (
    SELECT current_setting('archive_mode') AS archive_mode,
           a.archived_count, a.last_archived_wal, a.last_archived_time,
           a.failed_count, a.last_failed_wal, a.last_failed_time,
           r.ready_files, r.oldest_ready,
           -- archive_mode on with no archive_command and no archive_library: the server
           -- keeps every segment for an archiver that never runs, and logs only a warning.
           -- A standby archives only with archive_mode = always.
           current_setting('archive_mode') <> 'off'
             AND current_setting('archive_command') = '' AND current_setting('archive_library') = ''
             AND (current_setting('archive_mode') = 'always' OR NOT pg_is_in_recovery()) AS unconfigured,
           -- The archiver's counters outlive archive_mode = off: failures count only while on.
           current_setting('archive_mode') <> 'off' AND a.last_failed_time IS NOT NULL
             AND a.last_failed_time > coalesce(a.last_archived_time, '-infinity') AS failing
    FROM pg_stat_archiver AS a, perfmon.archive_ready_files() AS r
),
last_ok AS (
    SELECT b.tool, b.finished_at, b.verified, b.restored, b.size_bytes
    FROM perfmon.backup_log AS b
    WHERE b.server_id = 1 AND b.ok
    ORDER BY b.finished_at DESC LIMIT 1
),
last_any AS (
    SELECT b.tool, b.finished_at, b.ok, b.detail
    FROM perfmon.backup_log AS b
    WHERE b.server_id = 1
    ORDER BY b.finished_at DESC LIMIT 1
)
SELECT 'wal_archiving'::text AS component,
       CASE WHEN arch.archive_mode = 'off' THEN 'off'
            WHEN arch.unconfigured THEN 'not configured'
            WHEN arch.failing THEN 'failing'
            WHEN arch.ready_files >= 16 THEN 'lagging' ELSE 'ok' END AS state,
       arch.last_archived_time AS last_success_at,
       arch.last_failed_time AS last_failure_at,
       round(extract(epoch FROM now() - arch.oldest_ready)::numeric) AS lag_s,
       jsonb_build_object('archive_mode', arch.archive_mode, 'archived_count', arch.archived_count,
                          'last_archived_wal', arch.last_archived_wal,
                          'failed_count', arch.failed_count, 'last_failed_wal', arch.last_failed_wal,
                          'ready_files', arch.ready_files,
                          'archive_command_set', NOT arch.unconfigured) AS details,
       'wal_archiving'::text AS target,
       CASE WHEN arch.archive_mode = 'off' THEN 'info'
            WHEN arch.unconfigured OR arch.failing THEN 'critical'
            WHEN arch.ready_files >= 16 THEN 'warning'
            ELSE 'ok' END AS severity,
       CASE WHEN arch.unconfigured
            THEN format('WAL archiving is not configured: archive_mode = %s but archive_command and '
                        'archive_library are empty, so nothing is archived and every WAL segment is '
                        'kept for it (%s wait now): pg_wal grows until the disk is full, and there is '
                        'no point-in-time recovery', arch.archive_mode, arch.ready_files)
            WHEN arch.failing
            THEN format('WAL archiving is failing: the last attempt (%s, at %s) failed, %s failures '
                        'in all, and %s segment(s) wait; until it works pg_wal grows, and %s',
                        arch.last_failed_wal, date_trunc('second', arch.last_failed_time),
                        arch.failed_count, arch.ready_files,
                        CASE WHEN arch.last_archived_wal IS NULL
                             THEN 'no WAL has been archived yet: there is no point-in-time recovery'
                             ELSE format('point-in-time recovery stops at %s', arch.last_archived_wal)
                        END)
            WHEN arch.archive_mode = 'off'
            THEN 'WAL archiving is off (archive_mode = off): a base backup can be restored only to '
                 'the moment it was taken, with no point-in-time recovery after it'
            WHEN arch.ready_files >= 16
            THEN format('WAL archiving lags: %s segments wait, the oldest for %s',
                        arch.ready_files, justify_interval(date_trunc('second', now() - arch.oldest_ready)))
            ELSE 'WAL archiving works' END AS finding,
       jsonb_build_object('archive_mode', arch.archive_mode, 'failed_count', arch.failed_count,
                          'last_failed_wal', arch.last_failed_wal, 'last_failed_time', arch.last_failed_time,
                          'last_archived_wal', arch.last_archived_wal,
                          'last_archived_time', arch.last_archived_time,
                          'ready_files', arch.ready_files,
                          'archive_command', nullif(current_setting('archive_command'), ''),
                          'archive_library', nullif(current_setting('archive_library'), '')) AS evidence,
       CASE WHEN arch.unconfigured
            THEN '-- set archive_command (or archive_library) to your archiver, e.g. ALTER SYSTEM SET '
                 'archive_command = ''pgbackrest --stanza=main archive-push %p''; SELECT pg_reload_conf(); '
                 '(or set archive_mode = off, which needs a restart)'
            WHEN arch.archive_mode = 'off'
            THEN '-- set archive_mode = on and archive_command (or use pgBackRest/Barman); needs a restart'
            ELSE '-- check archive_command and the server log for its error: SHOW archive_command;'
       END AS apply_sql,
       arch.ready_files::numeric AS benefit,
       'WAL segments waiting'::text AS benefit_unit,
       'high'::text AS confidence
FROM arch
UNION ALL
SELECT 'base_backup',
       CASE WHEN last_ok.finished_at IS NULL THEN 'none recorded'
            WHEN last_ok.finished_at < now() - make_interval(hours => cfg.max_age_h) THEN 'too old'
            ELSE 'ok' END,
       last_ok.finished_at,
       (SELECT max(b.finished_at) FROM perfmon.backup_log AS b WHERE b.server_id = 1 AND NOT b.ok),
       round(extract(epoch FROM now() - last_ok.finished_at)::numeric),
       jsonb_build_object('tool', last_ok.tool, 'verified', last_ok.verified,
                          'restored', last_ok.restored, 'size_bytes', last_ok.size_bytes,
                          'last_attempt_ok', last_any.ok, 'last_attempt_detail', last_any.detail),
       'base_backup',
       CASE WHEN last_ok.finished_at IS NULL OR last_ok.finished_at < now() - make_interval(hours => cfg.max_age_h)
                 THEN 'warning'
            WHEN last_any.ok = false THEN 'warning'
            ELSE 'ok' END,
       CASE WHEN last_ok.finished_at IS NULL
                THEN 'no successful backup is recorded in perfmon.backup_log: run `pgperfmon backup '
                     'verify`, or let your backup tool call perfmon.record_backup()'
            WHEN last_ok.finished_at < now() - make_interval(hours => cfg.max_age_h)
                THEN format('the last successful backup finished %s ago (%s), more than %s hours',
                            justify_interval(now() - last_ok.finished_at), last_ok.tool, cfg.max_age_h)
            ELSE format('the last backup attempt (%s) failed: %s', last_any.tool, last_any.detail) END,
       jsonb_build_object('last_success_at', last_ok.finished_at, 'tool', last_ok.tool,
                          'verified', last_ok.verified, 'last_attempt_ok', last_any.ok,
                          'last_attempt_detail', last_any.detail, 'max_age_hours', cfg.max_age_h),
       '-- pgperfmon backup verify --dsn ...  (or run your backup tool)',
       round(extract(epoch FROM now() - last_ok.finished_at)::numeric / 3600, 1),
       'hours since the last good backup',
       'high'
FROM cfg
LEFT JOIN last_ok ON true
LEFT JOIN last_any ON true;
COMMENT ON VIEW perfmon.backup_status IS
    'One row per component: wal_archiving (archive_mode, archiver failures, segments waiting, '
    'lag_s = seconds the oldest has waited) and base_backup (the last successful backup recorded '
    'in perfmon.backup_log by `pgperfmon backup verify` or perfmon.record_backup(), lag_s = its age '
    'in seconds). state: ok, off, not configured (archive_mode on, archive_command and '
    'archive_library empty), failing, lagging (16 or more segments wait), none recorded, too old.';
