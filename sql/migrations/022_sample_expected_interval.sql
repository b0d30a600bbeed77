-- The collection interval in force when each sample was taken.
--
-- perfmon.health_availability judged every sample gap against the interval configured
-- now: after collection.interval_seconds went from 60 to 10, the last hour's samples,
-- 60 s apart as they should be, were each a gap and the hour read as 17 % up; from 10 to
-- 300, real five-minute outages disappeared. A gap is now judged against the interval
-- its own samples were taken at. NULL (samples taken before this column) = the interval
-- configured now.
ALTER TABLE perfmon.samples ADD COLUMN expected_interval_s real;
COMMENT ON COLUMN perfmon.samples.expected_interval_s IS
    'collection.interval_seconds when the sample was taken (kind sample; NULL for sizes and for '
    'samples taken before it was kept).';
