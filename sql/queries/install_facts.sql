-- Version and install time, for pgperfmon status.
SELECT (SELECT value FROM perfmon.meta WHERE key = 'version')                     AS version,
       (SELECT value::timestamptz FROM perfmon.meta WHERE key = 'installed_at')   AS installed_at,
       (SELECT max(applied_at) FROM perfmon.schema_migrations)                    AS migrated_at,
       (SELECT max(version) FROM perfmon.schema_migrations)                       AS schema_version,
       perfmon.setting('collection.interval_seconds')::int                        AS interval_seconds,
       now()                                                                       AS now
