-- The databases stage compares each database's pg_stat_database.stats_reset with the
-- one seen at the previous sample, as the tables stage does with its own database's:
-- pg_stat_reset() in a busy database zeroes its counters, and those that grew past
-- their old values since then gave a delta that was too small, others a negative one.
ALTER TABLE perfmon.state_databases ADD COLUMN stats_reset timestamptz;
COMMENT ON COLUMN perfmon.state_databases.stats_reset IS
    'pg_stat_database.stats_reset of the database at the previous sample; another one means its '
    'counters were reset since: no delta, a gap.';

-- The state of a running installation is kept: its reset time is the current one (a reset
-- after the last sample and before this upgrade goes unnoticed, as it did until now).
UPDATE perfmon.state_databases AS s SET stats_reset = d.stats_reset
  FROM pg_stat_database AS d
 WHERE d.datid = s.datid;
