-- The seconds of workload each server rollup covers.
--
-- perfmon.workload_trend counted a rolled-up hour as 3600 s, though its samples may
-- cover more: the first sample after ten hours of collector downtime has interval_s =
-- 36000 and holds ten hours of transactions, so once rolled up its hour read as a
-- tenfold tps spike. The rollups now keep the sum of the samples' interval_s.
ALTER TABLE perfmon.server_hourly ADD COLUMN covered_s double precision;
ALTER TABLE perfmon.server_daily ADD COLUMN covered_s double precision;
COMMENT ON COLUMN perfmon.server_hourly.covered_s IS
    'Seconds covered by the samples of the hour (sum of server_history.interval_s); can exceed 3600 '
    'after a pause in sampling. NULL = rolled up before it was kept.';
COMMENT ON COLUMN perfmon.server_daily.covered_s IS
    'Seconds covered by the samples of the day (sum of server_hourly.covered_s); NULL = not known '
    'for every hour of the day.';

-- Hours rolled up before: from the raw samples still kept (retention drops whole days,
-- so an hour's samples are all there or none).
UPDATE perfmon.server_hourly AS h
SET covered_s = s.covered_s
FROM (SELECT server_id, date_trunc('hour', ts, 'UTC') AS ts, sum(interval_s) AS covered_s
      FROM perfmon.server_history
      WHERE interval_s > 0
      GROUP BY 1, 2) AS s
WHERE s.server_id = h.server_id AND s.ts = h.ts;
