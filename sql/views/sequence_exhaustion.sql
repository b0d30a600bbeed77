CREATE OR REPLACE VIEW perfmon.sequence_exhaustion AS
WITH cfg AS (
    SELECT perfmon.setting('optimization.sequence_warning_pct')::numeric AS warn_pct
),
s AS (
    SELECT s.schemaname AS schema_name, s.sequencename AS sequence_name, s.data_type::text AS sequence_type,
           s.last_value, s.max_value AS sequence_max, s.min_value, s.increment_by,
           col.table_name, col.column_name, col.column_type,
           CASE col.column_type WHEN 'smallint' THEN 32767 WHEN 'integer' THEN 2147483647
                                ELSE 9223372036854775807 END AS column_max
    FROM pg_sequences AS s
    LEFT JOIN LATERAL (
        -- the column the sequence feeds (serial: auto dependency; identity: internal)
        SELECT format('%s.%s', tn.nspname, t.relname) AS table_name, a.attname AS column_name,
               format_type(a.atttypid, NULL) AS column_type
        FROM pg_depend AS d
        JOIN pg_class AS t ON t.oid = d.refobjid
        JOIN pg_namespace AS tn ON tn.oid = t.relnamespace
        JOIN pg_attribute AS a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
          AND d.objid = format('%I.%I', s.schemaname, s.sequencename)::regclass
          AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
        LIMIT 1
    ) AS col ON true
    WHERE s.increment_by > 0
      AND s.schemaname <> ALL (ARRAY(SELECT jsonb_array_elements_text(perfmon.setting('collection.exclude_schemas')))
                               || ARRAY['perfmon'])
),
u AS (
    SELECT s.*, least(s.sequence_max, s.column_max) AS effective_max,
           round(100.0 * coalesce(s.last_value, 0) / least(s.sequence_max, s.column_max), 2) AS used_pct,
           least(s.sequence_max, s.column_max) - coalesce(s.last_value, s.min_value) AS values_left
    FROM s
)
SELECT u.schema_name, u.sequence_name, u.sequence_type, u.table_name, u.column_name, u.column_type,
       u.last_value, u.effective_max, u.used_pct, u.values_left,
       format('%I.%I', u.schema_name, u.sequence_name) AS target,
       CASE WHEN u.last_value IS NULL OR u.used_pct < cfg.warn_pct THEN 'ok'
            WHEN u.used_pct >= greatest(cfg.warn_pct, 90) THEN 'critical'
            ELSE 'warning' END AS severity,
       format('sequence %s.%s has used %s%% of its values (%s of %s%s); %s are left',
              u.schema_name, u.sequence_name, u.used_pct, u.last_value, u.effective_max,
              CASE WHEN u.column_max < u.sequence_max
                   THEN format(', the maximum of %s column %s.%s', u.column_type, u.table_name, u.column_name)
                   ELSE '' END, u.values_left) AS finding,
       jsonb_build_object('last_value', u.last_value, 'sequence_max', u.sequence_max,
                          'column', u.table_name || '.' || u.column_name, 'column_type', u.column_type,
                          'increment_by', u.increment_by) AS evidence,
       CASE WHEN u.column_max < u.sequence_max OR u.sequence_type <> 'bigint' THEN
           concat_ws(' ',
               CASE WHEN u.column_type IN ('smallint', 'integer')
                    THEN format('ALTER TABLE %s ALTER COLUMN %I TYPE bigint;  -- rewrites the table',
                                u.table_name, u.column_name) END,
               format('ALTER SEQUENCE %I.%I AS bigint;', u.schema_name, u.sequence_name))
            ELSE format('ALTER SEQUENCE %I.%I MAXVALUE 9223372036854775807;', u.schema_name, u.sequence_name)
       END AS apply_sql,
       u.values_left::numeric AS benefit,
       'values left'::text AS benefit_unit,
       'high'::text AS confidence
FROM u, cfg
ORDER BY u.used_pct DESC NULLS LAST;
COMMENT ON VIEW perfmon.sequence_exhaustion IS
    'Ascending sequences of this database with the column they feed: last value, the effective '
    'maximum (the lower of the sequence''s and its column type''s), used_pct (%) and values left. '
    'Findings: used_pct >= optimization.sequence_warning_pct (critical from 90%). last_value is '
    'NULL for sequences the reading role may not use.';
