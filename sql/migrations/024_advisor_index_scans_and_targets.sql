-- The advisor: what the unused-index advice needs to know of every index, not only of the
-- busiest; and findings' targets that stay apart when names contain dots (below).
--
-- perfmon.unused_indexes counted scans in perfmon.index_history, which holds only the
-- collection.relation_top_n busiest indexes of each sample: an index scanned now and then
-- but never among them looked unused and was advised dropped. collect_indexes() now notes,
-- for every index, a sample that saw it scanned, and the spans its statistics cannot account
-- for (a statistics reset or a crash after a sample loses the scans in between).
CREATE TABLE IF NOT EXISTS perfmon.index_scans_seen (
    rel_id         integer PRIMARY KEY,
    last_scan_seen timestamptz NOT NULL
);
COMMENT ON TABLE perfmon.index_scans_seen IS
    'Per index (perfmon.relations), the latest sample that saw its idx_scan grow, to the hour '
    '(written at most once an hour per index). No row: no scan seen since it was first seen.';

CREATE TABLE IF NOT EXISTS perfmon.index_stats_gaps (
    server_id integer NOT NULL,
    gap_from  timestamptz NOT NULL,
    gap_to    timestamptz NOT NULL,
    PRIMARY KEY (server_id, gap_from)
);
COMMENT ON TABLE perfmon.index_stats_gaps IS
    'Spans whose index scans pgperfmon cannot know: from the last sample before a statistics '
    'reset or crash to the reset (the sample after a crash). They do not count as observed time '
    'in perfmon.unused_indexes.';

-- What the history kept before: the latest sample in which each index was seen scanned.
INSERT INTO perfmon.index_scans_seen (rel_id, last_scan_seen)
SELECT h.rel_id, max(h.ts) FROM perfmon.index_history AS h WHERE h.idx_scan > 0 GROUP BY h.rel_id
ON CONFLICT (rel_id) DO NOTHING;

-- A sample that stored relation_top_n indexes may have left scanned ones out, so the history
-- cannot say which indexes went unscanned: observation starts again now.
INSERT INTO perfmon.index_stats_gaps (server_id, gap_from, gap_to)
SELECT 1, '-infinity', now()
WHERE EXISTS (SELECT FROM perfmon.samples AS s
              WHERE s.kind = 'sample'
                AND (s.stages -> 'indexes' ->> 'stored')::bigint
                    >= coalesce((SELECT (c.value #>> '{}')::bigint FROM perfmon.config AS c
                                 WHERE c.key = 'collection.relation_top_n'), 5000))
ON CONFLICT DO NOTHING;

-- Advisor targets name objects with quoted identifiers (format('%I.%I')): unquoted, schema
-- "a.b" table "c" and schema "a" table "b.c" were one target, and their findings one row of
-- perfmon.recommendation_log. A stored finding is given the new target when one object of this
-- database has its unquoted name, so that its id, first_seen and status (dismissed, applied)
-- go on, with the alerts raised from it. Any other (its object gone, or two objects sharing the
-- name) is left as it is: the next refresh resolves it if it is open. Names that need no
-- quotes do not change.
WITH parts AS (
    SELECT l.id, l.rule, l.target, m[1] AS head, m[2] AS name, m[3] AS tail
    FROM perfmon.recommendation_log AS l
    CROSS JOIN LATERAL regexp_match(l.target, CASE l.rule
        WHEN 'cache_hit' THEN '^((?:index|table) )(.+)()$'
        WHEN 'configuration' THEN '^(autovacuum_vacuum_scale_factor on )(.+)()$'
        WHEN 'forecast' THEN '^(table_growth: )(.+)()$'
        WHEN 'slow_query_plan' THEN '^(query -?[0-9]+: seq_scan_large_table on )(.+)()$'
        WHEN 'index_advice' THEN '^()(.+)(\(.*\))$'
        ELSE '^()(.+)()$' END) AS m
    WHERE l.server_id = 1
      AND l.rule IN ('unused_index', 'duplicate_index', 'invalid_index', 'table_bloat', 'index_bloat',
                     'vacuum_health', 'sequence', 'cache_hit', 'configuration', 'forecast',
                     'slow_query_plan', 'index_advice')
),
named AS (
    -- every split of the name at a dot into an existing schema and relation
    SELECT p.*,
           (SELECT CASE WHEN count(*) = 1 THEN min(format('%I.%I', n.nspname, c.relname)) END
            FROM generate_series(1, length(p.name)) AS i
            JOIN pg_namespace AS n ON n.nspname = left(p.name, i - 1)
            JOIN pg_class AS c ON c.relnamespace = n.oid AND c.relname = substr(p.name, i + 1)
            WHERE substr(p.name, i, 1) = '.') AS quoted
    FROM parts AS p
    WHERE p.name IS NOT NULL
),
retarget AS (
    SELECT d.id, d.rule, d.target AS old_target,
           d.head || d.quoted
           || CASE WHEN d.rule = 'index_advice'
                   THEN '(' || (SELECT string_agg(quote_ident(u.col), ', ' ORDER BY u.pos)
                                FROM unnest(string_to_array(substr(d.tail, 2, length(d.tail) - 2), ', '))
                                     WITH ORDINALITY AS u(col, pos)) || ')'
                   ELSE d.tail END AS new_target
    FROM named AS d
    WHERE d.quoted IS NOT NULL
),
changed AS (
    UPDATE perfmon.recommendation_log AS l
    SET target = r.new_target, fingerprint = md5(l.rule || ':' || r.new_target)
    FROM retarget AS r
    WHERE l.id = r.id AND r.new_target IS NOT NULL AND r.new_target <> r.old_target
      AND NOT EXISTS (SELECT FROM perfmon.recommendation_log AS o
                      WHERE o.server_id = l.server_id AND o.fingerprint = md5(l.rule || ':' || r.new_target))
    RETURNING r.rule, r.old_target, r.new_target
)
-- perfmon.alert_recommendations() raises alerts for 'rule: target', fingerprint 'recommendation:' || that
UPDATE perfmon.alert_log AS a
SET target = format('%s: %s', c.rule, c.new_target),
    fingerprint = 'recommendation:' || format('%s: %s', c.rule, c.new_target)
FROM changed AS c
WHERE a.server_id = 1 AND a.rule = 'recommendation' AND a.target = format('%s: %s', c.rule, c.old_target);
