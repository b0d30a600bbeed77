CREATE OR REPLACE FUNCTION perfmon.health_availability(from_ts timestamptz, to_ts timestamptz)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The availability component: uptime over the observed part of the period (from the
-- first sample pgperfmon ever took), the server counted down
--  * in a sample gap: consecutive samples further apart than 1.5 collection intervals
--    -> down from one interval after the earlier sample to the later one (the end of
--    the period counts as a sample, so a collector silent at the end counts too). The
--    interval is the longer of those in force at the two samples (samples.expected_interval_s,
--    else the one configured now): samples 60 s apart are no gap for being judged after the
--    interval became 10 s;
--  * across a restart: a postmaster start later than another one pgperfmon recorded,
--    inside the period -> down from the last sample before it until it.
-- Overlapping down intervals are merged. See docs/health.md.
DECLARE
    iv double precision := perfmon.setting('collection.interval_seconds')::float8;
    target double precision := (perfmon.settings_under('business') ->> 'availability_target_pct')::float8;
    budget double precision := 100 - target;
    first_ts timestamptz;
    win_from timestamptz;
    observed_s double precision;
    d record;
    uptime double precision;
BEGIN
    SELECT min(s.ts) INTO first_ts
      FROM perfmon.samples AS s
     WHERE s.server_id = 1 AND s.kind = 'sample' AND s.ts <= to_ts;
    IF first_ts IS NULL THEN
        -- Samples after the period only: it is older than what retention keeps (or than
        -- pgperfmon), which is no reason to look for a collector that has not run.
        SELECT min(s.ts) INTO first_ts FROM perfmon.samples AS s WHERE s.server_id = 1 AND s.kind = 'sample';
        RETURN perfmon.health_component(jsonb_build_object('target_pct', target), '{}',
            jsonb_build_array(jsonb_build_object('check', 'uptime', 'why', CASE
                WHEN first_ts IS NULL
                    THEN 'no sample taken by the end of the period: perfmon.collect() has not run (pg_cron job collect)'
                ELSE format('no sample kept from the period: the oldest sample is of %s (samples older than '
                            'collection.retention_days, %s days, are dropped)', first_ts,
                            perfmon.setting('collection.retention_days')) END)),
            'uptime from sample gaps and restarts');
    END IF;
    win_from := greatest(from_ts, first_ts);
    observed_s := extract(epoch FROM to_ts - win_from);

    WITH s AS (
        SELECT x.ts, coalesce(x.expected_interval_s, iv) AS every_s FROM perfmon.samples AS x
         WHERE x.server_id = 1 AND x.kind = 'sample' AND x.ts >= win_from AND x.ts < to_ts
        UNION ALL
        (SELECT x.ts, coalesce(x.expected_interval_s, iv) FROM perfmon.samples AS x
          WHERE x.server_id = 1 AND x.kind = 'sample' AND x.ts < win_from
          ORDER BY x.ts DESC LIMIT 1)
    ),
    seq AS (
        SELECT lag(p.ts) OVER w AS prev, p.ts AS next, greatest(lag(p.every_s) OVER w, p.every_s) AS every_s
        -- the end of the period as a last sample, at the interval configured now (a sample
        -- at exactly to_ts is the next period's first, as in every component: [from, to))
        FROM (SELECT s.ts, s.every_s FROM s UNION ALL SELECT to_ts, iv) AS p
        WINDOW w AS (ORDER BY p.ts)
    ),
    gaps AS (
        SELECT q.prev + make_interval(secs => q.every_s) AS lo, q.next AS hi
        FROM seq AS q
        WHERE extract(epoch FROM q.next - q.prev) > 1.5 * q.every_s
    ),
    -- Restarts are counted in [win_from, to_ts) as every sample; one at exactly to_ts still
    -- gives this period the downtime before it (the next period's share of it is nothing).
    starts AS (
        SELECT DISTINCT st.started_at
        FROM (SELECT r.started_at FROM perfmon.server_starts AS r WHERE r.server_id = 1
              UNION SELECT pg_postmaster_start_time()) AS st
        WHERE st.started_at >= win_from AND st.started_at <= to_ts
          AND EXISTS (SELECT FROM perfmon.server_starts AS e
                      WHERE e.server_id = 1 AND e.started_at < st.started_at)
    ),
    restarts AS (
        SELECT (SELECT max(s.ts) FROM s WHERE s.ts < st.started_at) AS lo, st.started_at AS hi
        FROM starts AS st
    ),
    clipped AS (
        SELECT greatest(i.lo, win_from) AS lo, least(i.hi, to_ts) AS hi
        FROM (SELECT lo, hi FROM gaps UNION ALL SELECT coalesce(lo, win_from), hi FROM restarts) AS i
        WHERE least(i.hi, to_ts) > greatest(i.lo, win_from)
    ),
    ordered AS (
        SELECT c.lo, c.hi,
               max(c.hi) OVER (ORDER BY c.lo, c.hi ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_hi
        FROM clipped AS c
    ),
    islands AS (
        SELECT o.lo, o.hi,
               sum(CASE WHEN o.prev_hi IS NULL OR o.lo > o.prev_hi THEN 1 ELSE 0 END)
                   OVER (ORDER BY o.lo, o.hi) AS grp
        FROM ordered AS o
    )
    SELECT coalesce((SELECT sum(extract(epoch FROM m.hi - m.lo))
                     FROM (SELECT min(lo) AS lo, max(hi) AS hi FROM islands GROUP BY grp) AS m), 0)::float8 AS down_s,
           (SELECT count(*) FROM gaps AS g WHERE g.hi > win_from AND g.lo < to_ts) AS gaps,
           (SELECT count(*) FROM starts AS st WHERE st.started_at < to_ts) AS restarts,
           (SELECT count(*) FROM s WHERE s.ts >= win_from) AS samples
      INTO d;

    IF observed_s <= 0 THEN
        RETURN perfmon.health_component(jsonb_build_object('target_pct', target, 'samples', d.samples), '{}',
            jsonb_build_array(jsonb_build_object('check', 'uptime', 'why',
                CASE WHEN to_ts <= from_ts THEN 'the period has not begun yet: nothing observed'
                     ELSE 'the first sample was taken at the end of the period: nothing observed yet' END)),
            'uptime from sample gaps and restarts');
    END IF;
    uptime := 100 * (1 - d.down_s / observed_s);
    RETURN perfmon.health_component(
        jsonb_build_object('uptime_pct', round(uptime::numeric, 4), 'downtime_s', round(d.down_s::numeric, 1),
                           'observed_s', round(observed_s::numeric, 1), 'gaps', d.gaps,
                           'restarts', d.restarts, 'samples', d.samples,
                           'collection_interval_s', iv, 'target_pct', target),
        jsonb_build_object('uptime', perfmon.health_points(100 - uptime, budget, 2 * budget, 10 * budget)),
        '[]',
        format('uptime %% over the %s s observed: down in sample gaps over 1.5 collection intervals and '
               'across restarts; 100 while downtime stays within the error budget (100 - %s%%), 50 at '
               'twice it, 0 at ten times it', round(observed_s::numeric), target),
        jsonb_build_object('uptime', 'the server (or its monitoring) was down: see perfmon.samples for '
                                     'the gaps and the server log for restarts'));
END
$$;
COMMENT ON FUNCTION perfmon.health_availability(timestamptz, timestamptz) IS
    'Health component availability between two times: uptime % over the observed part of the period '
    '(sample gaps over 1.5 collection intervals and server restarts count as down; downtime_s in '
    'seconds), scored against business.availability_target_pct; see docs/health.md.';
