CREATE OR REPLACE FUNCTION perfmon.sampled_before(sample_ts timestamptz)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- Asked by a collection stage that finds no previous state. An earlier sample means
    -- the state existed and is gone (a crash empties the UNLOGGED state tables): the
    -- deltas since that sample are lost, a gap. The very first sample is a baseline.
    SELECT EXISTS (SELECT FROM perfmon.samples AS s
                   WHERE s.server_id = 1 AND s.kind = 'sample' AND s.ts < sample_ts)
$$;
COMMENT ON FUNCTION perfmon.sampled_before(timestamptz) IS
    'True when a sample run (kind sample) was logged before the given time: a stage that then '
    'finds its state empty lost it (crash) and counts a gap.';
