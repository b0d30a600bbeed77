-- What the unused-index advice needs to know of every index, not only of the busiest.
--
-- perfmon.unused_indexes counted scans in perfmon.index_history, which holds only the
-- collection.relation_top_n busiest indexes of each sample: an index scanned now and then
-- but never among them looked unused and was advised dropped. collect_indexes() now notes,
-- for every index, a sample that saw it scanned, and the spans its statistics cannot account
-- for (a statistics reset or a crash after a sample loses the scans in between).
CREATE TABLE perfmon.index_scans_seen (
    rel_id         integer PRIMARY KEY,
    last_scan_seen timestamptz NOT NULL
);
COMMENT ON TABLE perfmon.index_scans_seen IS
    'Per index (perfmon.relations), the latest sample that saw its idx_scan grow, to the hour '
    '(written at most once an hour per index). No row: no scan seen since it was first seen.';

CREATE TABLE perfmon.index_stats_gaps (
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
SELECT h.rel_id, max(h.ts) FROM perfmon.index_history AS h WHERE h.idx_scan > 0 GROUP BY h.rel_id;

-- A sample that stored relation_top_n indexes may have left scanned ones out, so the history
-- cannot say which indexes went unscanned: observation starts again now.
INSERT INTO perfmon.index_stats_gaps (server_id, gap_from, gap_to)
SELECT 1, '-infinity', now()
WHERE EXISTS (SELECT FROM perfmon.samples AS s
              WHERE s.kind = 'sample'
                AND (s.stages -> 'indexes' ->> 'stored')::bigint
                    >= coalesce((SELECT (c.value #>> '{}')::bigint FROM perfmon.config AS c
                                 WHERE c.key = 'collection.relation_top_n'), 5000));
