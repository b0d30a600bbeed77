CREATE OR REPLACE FUNCTION perfmon.ingest_batch(batch_key uuid, agent text DEFAULT '')
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Staging rows are joined with the (small) series dictionary: hash joins. The
-- planner knows nothing of a fresh temporary table and may otherwise probe the
-- dictionary's index once per row.
SET enable_nestloop = off
AS $$
-- Stores the batch a feeder COPYed into pg_temp.perfmon_ingest (see
-- perfmon.ingest_open()) in this transaction, once:
--  * batch_key is the batch's idempotency key: a key already stored makes the
--    call a no-op that says duplicate (a retried or replayed batch) and repeats
--    the refusals of the first time (up to 100);
--  * every row is validated; a bad row is refused with its seq (the feeder's
--    row number) and the reason, and the good rows of the batch are stored:
--    unknown series id, missing/NaN/infinite value, a negative value of a
--    counter or of a non-negative unit, a missing timestamp, one before 2000 or
--    more than a day ahead;
--  * rows of days without a partition (older data) get their day partitions.
-- Returns {batch_key, duplicate, stored, refused, errors: [{row, reason}, ...]}
-- with the first 1000 refused rows, oldest row first.
--
-- Speed (bench/ingest_throughput.py): a good batch is read twice. One pass
-- groups the rows by series, which gives the row count and, from the dictionary,
-- the batch's known series and those whose values may be negative; one INSERT ...
-- SELECT then validates and stores every row with no join and no function call
-- per row (the two id sets are constant arrays, looked up by hash). Only when it
-- stored fewer rows than were staged is the staging table read again, to say
-- which rows were refused and why, by the same rules.
DECLARE
    staging oid := to_regclass('pg_temp.perfmon_ingest');
    staged_rows bigint;
    stored_rows bigint := 0;
    refused_rows bigint := 0;
    problems jsonb := '[]';
    known integer[];
    signed integer[];
    -- The same bound for both passes (now() is the transaction's start).
    latest timestamptz := now() + interval '1 day';
    lo timestamptz;
    hi timestamptz;
BEGIN
    IF batch_key IS NULL THEN
        RAISE EXCEPTION 'pgperfmon: batch_key is missing' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    agent := coalesce(agent, '');
    IF length(agent) > 200 OR agent ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'pgperfmon: agent name must be at most 200 characters without control characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF staging IS NULL OR NOT perfmon.ingest_staging_is_ours(staging) THEN
        RAISE EXCEPTION 'pgperfmon: no staging table in this session'
            USING HINT = 'call perfmon.ingest_open(), then COPY pg_temp.perfmon_ingest and call '
                         'perfmon.ingest_batch() in the same transaction';
    END IF;

    INSERT INTO perfmon.ingest_batches AS b (batch_key, agent, stored, refused)
    VALUES (ingest_batch.batch_key, agent, 0, 0)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        -- Stored before: nothing new is stored; the refusals are those of the first time.
        TRUNCATE pg_temp.perfmon_ingest;
        SELECT b.refused, coalesce(b.refusals, '[]') INTO refused_rows, problems
          FROM perfmon.ingest_batches AS b WHERE b.batch_key = ingest_batch.batch_key;
        RETURN jsonb_build_object('batch_key', batch_key, 'duplicate', true,
                                  'stored', 0, 'refused', refused_rows, 'errors', problems);
    END IF;

    SELECT coalesce(sum(g.n), 0),
           coalesce(array_agg(g.series_id) FILTER (WHERE s.series_id IS NOT NULL), '{}'),
           coalesce(array_agg(g.series_id) FILTER (WHERE NOT (m.kind = 'counter' OR u.non_negative)), '{}')
      INTO staged_rows, known, signed
      FROM (SELECT r.series_id, count(*) AS n FROM ONLY pg_temp.perfmon_ingest AS r GROUP BY r.series_id) AS g
      LEFT JOIN perfmon.metric_series AS s ON s.series_id = g.series_id
      LEFT JOIN perfmon.metrics AS m ON m.metric_id = s.metric_id
      LEFT JOIN perfmon.metric_units AS u ON u.unit = m.unit;

    -- Twice at most: a row for a day with no partition yet (older data, a day not made
    -- ahead) fails the whole insert; then the missing days are made and it runs again.
    FOR attempt IN 1 .. 2 LOOP
        BEGIN
            -- EXECUTE plans it for these values: the arrays become constants, which
            -- the executor looks up by hash (a cached generic plan would scan them).
            EXECUTE $sql$
                INSERT INTO perfmon.metric_samples (server_id, series_id, ts, value)
                SELECT 1, r.series_id, r.ts, r.value
                  FROM ONLY pg_temp.perfmon_ingest AS r
                 WHERE r.series_id = ANY ($1)
                   AND r.value > '-Infinity' AND r.value < 'Infinity'  -- not NULL, NaN or infinite
                   AND (r.value >= 0 OR r.series_id = ANY ($2))
                   AND r.ts >= '2000-01-01 00:00:00+00' AND r.ts <= $3
            $sql$ USING known, signed, latest;
            GET DIAGNOSTICS stored_rows = ROW_COUNT;
            EXIT;
        EXCEPTION WHEN check_violation THEN
            -- "no partition of relation found for row"
            IF attempt = 2 THEN
                RAISE;
            END IF;
            SELECT min(r.ts), max(r.ts) INTO lo, hi FROM ONLY pg_temp.perfmon_ingest AS r
             WHERE r.ts >= '2000-01-01 00:00:00+00' AND r.ts <= latest;
            PERFORM perfmon.ensure_day_partitions('metric_samples', lo, hi);
        END;
    END LOOP;
    -- Usually every row is good: then the count is all it takes to know.
    IF stored_rows = staged_rows THEN
        UPDATE perfmon.ingest_batches AS b SET stored = stored_rows
         WHERE b.batch_key = ingest_batch.batch_key;
        TRUNCATE pg_temp.perfmon_ingest;
        RETURN jsonb_build_object('batch_key', batch_key, 'duplicate', false,
                                  'stored', stored_rows, 'refused', 0, 'errors', problems);
    END IF;

    -- The refused rows, with the first reason that applies (same tests as above).
    SELECT coalesce(max(x.total), 0),
           coalesce(jsonb_agg(jsonb_build_object('row', x.seq, 'reason', x.reason) ORDER BY x.seq), '[]')
      INTO refused_rows, problems
      FROM (
        SELECT y.seq, y.reason, count(*) OVER () AS total
          FROM (
            SELECT r.seq,
                   CASE
                       WHEN s.series_id IS NULL THEN
                           format('unknown series id %s (get ids from perfmon.ingest_series())', r.series_id)
                       WHEN r.value IS NULL THEN format('%s: value is missing', m.name)
                       WHEN r.value = 'NaN' THEN format('%s: value is NaN (not a number)', m.name)
                       WHEN r.value IN ('Infinity', '-Infinity') THEN format('%s: value is infinite', m.name)
                       WHEN r.value < 0 AND m.kind = 'counter' THEN
                           format('%s: value %s is negative; a counter cannot go below 0', m.name, r.value)
                       WHEN r.value < 0 AND u.non_negative THEN
                           format('%s: value %s is negative; %s cannot go below 0', m.name, r.value, u.unit)
                       WHEN r.ts IS NULL THEN format('%s: timestamp is missing', m.name)
                       WHEN r.ts < '2000-01-01 00:00:00+00' THEN
                           format('%s: timestamp %s is before 2000-01-01', m.name, r.ts)
                       WHEN r.ts > latest THEN
                           format('%s: timestamp %s is more than a day in the future', m.name, r.ts)
                   END AS reason
              FROM ONLY pg_temp.perfmon_ingest AS r
              LEFT JOIN perfmon.metric_series AS s ON s.series_id = r.series_id
              LEFT JOIN perfmon.metrics AS m ON m.metric_id = s.metric_id
              LEFT JOIN perfmon.metric_units AS u ON u.unit = m.unit
          ) AS y
         WHERE y.reason IS NOT NULL
         ORDER BY y.seq
         LIMIT 1000
      ) AS x;

    UPDATE perfmon.ingest_batches AS b
       SET stored = stored_rows, refused = refused_rows,
           refusals = CASE WHEN refused_rows > 0 THEN jsonb_path_query_array(problems, '$[0 to 99]') END
     WHERE b.batch_key = ingest_batch.batch_key;
    -- Emptied now, not only at commit: a second batch in the same transaction
    -- must not see this one's rows.
    TRUNCATE pg_temp.perfmon_ingest;
    RETURN jsonb_build_object('batch_key', batch_key, 'duplicate', false,
                              'stored', stored_rows, 'refused', refused_rows, 'errors', problems);
END
$$;
COMMENT ON FUNCTION perfmon.ingest_batch(uuid, text) IS
    'Validates and stores the rows COPYed into pg_temp.perfmon_ingest in this transaction as one '
    'batch with an idempotency key; returns jsonb {batch_key, duplicate, stored, refused, errors: '
    '[{row, reason}]} (first 1000 refused rows).';
