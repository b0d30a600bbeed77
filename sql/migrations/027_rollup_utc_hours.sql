-- Hourly rollups written before rollup() truncated in UTC (126d52b) by a server whose
-- TimeZone is not a whole number of hours from UTC (Asia/Kolkata +05:30, Asia/Kathmandu
-- +05:45, America/St_Johns -03:30; pg_cron runs jobs with the server's) start at :30 or
-- :45 UTC. Each straddles two UTC hours, the daily rollups made from them are UTC days
-- shifted by the offset, and rollup_hourly_until may be left at such a time too, so the
-- first run of the fixed rollup() made a half hour of its own beside them.
--
-- Where the raw history of those hours is still kept, the hours are rolled up again from it,
-- per UTC hour, and the days made from them again; older hours (their raw days dropped by
-- retention) are moved to the UTC hour they start in, summed with any row already there, so
-- that their data is kept, a part of an hour early. rollup_hourly_until goes back to the
-- start of its UTC hour, whose samples the next rollup() reads again.
DO $$
DECLARE
    h perfmon.rollups;
    d perfmon.rollups;
    hourly_until timestamptz := (SELECT value::timestamptz FROM perfmon.meta WHERE key = 'rollup_hourly_until');
    daily_until timestamptz := (SELECT value::timestamptz FROM perfmon.meta WHERE key = 'rollup_daily_until');
    new_until timestamptz := date_trunc('hour', hourly_until, 'UTC');
    first_off timestamptz;
    last_off timestamptz;
    raw_from timestamptz;
    rebuild_from timestamptz;
    rebuild_to timestamptz;
    day_from timestamptz;
    day_to timestamptz;
    part record;
    kept boolean;
    keys text;
BEGIN
    IF hourly_until IS NULL THEN
        RETURN;  -- nothing rolled up yet
    END IF;
    -- As perfmon.maintain_partitions() takes them: no partition dropped, no hour rolled meanwhile.
    PERFORM pg_advisory_xact_lock(hashtext('perfmon.maintain_partitions'));
    PERFORM pg_advisory_xact_lock(hashtext('perfmon.rollup'));
    -- 0.1.0 rolled a UTC day up once the clock passed it, though in such a zone its hours were
    -- rolled up only to 23:30: a day whose hours are not all rolled up yet is rolled up again
    -- once they are.
    IF daily_until > date_trunc('day', new_until, 'UTC') THEN
        daily_until := date_trunc('day', new_until, 'UTC');
        FOR d IN SELECT * FROM perfmon.rollups AS r WHERE r.bucket = 'day' LOOP
            EXECUTE format('DELETE FROM perfmon.%I WHERE ts >= $1', d.target_table) USING daily_until;
        END LOOP;
        UPDATE perfmon.meta SET value = daily_until::text, updated_at = now() WHERE key = 'rollup_daily_until';
    END IF;
    FOR h IN SELECT * FROM perfmon.rollups AS r WHERE r.bucket = 'hour' ORDER BY r.target_table LOOP
        EXECUTE format('SELECT min(ts), max(ts) FROM perfmon.%I WHERE ts <> date_trunc(''hour'', ts, ''UTC'')',
                       h.target_table) INTO first_off, last_off;
        CONTINUE WHEN first_off IS NULL;
        SELECT * INTO d FROM perfmon.rollups AS r WHERE r.bucket = 'day' AND r.source_table = h.target_table;
        keys := coalesce((SELECT string_agg(', ' || quote_ident(k), '' ORDER BY n)
                            FROM unnest(h.key_columns) WITH ORDINALITY AS u(k, n)), '');

        -- The raw history is whole from the oldest day partition holding a row: retention drops
        -- whole days, oldest first.
        raw_from := 'infinity';
        FOR part IN
            SELECT c.relname
              FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
             WHERE i.inhparent = format('perfmon.%I', h.source_table)::regclass
               AND c.relname ~ '_p[0-9]{8}$'
             ORDER BY substring(c.relname FROM '_p([0-9]{8})$')
        LOOP
            EXECUTE format('SELECT EXISTS (SELECT FROM perfmon.%I)', part.relname) INTO kept;
            IF kept THEN
                raw_from := to_date(substring(part.relname FROM '_p([0-9]{8})$'), 'YYYYMMDD')::timestamp
                            AT TIME ZONE 'UTC';
                EXIT;
            END IF;
        END LOOP;
        -- From there, or from the end of an hour that began before it (its first part is gone).
        EXECUTE format('SELECT max(ts) + interval ''1 hour'' FROM perfmon.%I WHERE ts < $1', h.target_table)
            INTO rebuild_from USING raw_from;
        rebuild_from := greatest(raw_from, rebuild_from);
        -- To the UTC hour after the last hour off the grid: the fixed rollup() may have added
        -- the rest of that one after it.
        rebuild_to := least(new_until, date_trunc('hour', last_off, 'UTC') + interval '2 hours');

        -- Hours whose raw samples are gone: summed into the UTC hour they start in, as the daily
        -- rollup sums hours.
        IF d.target_table IS NOT NULL THEN
            EXECUTE format(
                'WITH moved AS (DELETE FROM perfmon.%1$I AS t WHERE t.ts < $1 '
                '    AND date_trunc(''hour'', t.ts, ''UTC'') IN (SELECT date_trunc(''hour'', o.ts, ''UTC'') '
                '        FROM perfmon.%1$I AS o WHERE o.ts < $1 AND o.ts <> date_trunc(''hour'', o.ts, ''UTC'')) '
                '    RETURNING t.*) '
                'INSERT INTO perfmon.%1$I (server_id, ts%2$s, %3$s) '
                'SELECT server_id, date_trunc(''hour'', ts, ''UTC'')%2$s, %4$s FROM moved '
                'GROUP BY server_id, date_trunc(''hour'', ts, ''UTC'')%2$s',
                h.target_table, keys,
                (SELECT string_agg(quote_ident(c), ', ' ORDER BY n) FROM unnest(d.columns) WITH ORDINALITY AS u(c, n)),
                array_to_string(d.aggregates, ', '))
            USING rebuild_from;
        END IF;

        -- Hours whose raw samples are kept: rolled up again, per UTC hour.
        IF rebuild_from < rebuild_to THEN
            EXECUTE format('DELETE FROM perfmon.%I WHERE ts >= $1 AND ts < $2', h.target_table)
                USING rebuild_from, rebuild_to;
            EXECUTE format(
                'INSERT INTO perfmon.%I (server_id, ts%s, %s) '
                'SELECT server_id, date_trunc(''hour'', ts, ''UTC'')%s, %s FROM perfmon.%I '
                'WHERE ts >= $1 AND ts < $2 GROUP BY server_id, date_trunc(''hour'', ts, ''UTC'')%s',
                h.target_table, keys,
                (SELECT string_agg(quote_ident(c), ', ' ORDER BY n) FROM unnest(h.columns) WITH ORDINALITY AS u(c, n)),
                keys, array_to_string(h.aggregates, ', '), h.source_table, keys)
                USING rebuild_from, rebuild_to;
        END IF;

        -- And the days of those hours, from their hours again. 0.1.0 also rolled a day up before
        -- its last hour (the one from 23:30): the day has it now. The days from the first hour
        -- off the grid on are whole in the hourly rollup (retention drops older months first).
        IF d.target_table IS NOT NULL AND daily_until IS NOT NULL THEN
            day_from := date_trunc('day', first_off, 'UTC');
            day_to := least(daily_until, date_trunc('day', greatest(last_off + interval '1 hour',
                CASE WHEN rebuild_from < rebuild_to THEN rebuild_to END), 'UTC') + interval '1 day');
            IF day_from < day_to THEN
                EXECUTE format('DELETE FROM perfmon.%I WHERE ts >= $1 AND ts < $2', d.target_table)
                    USING day_from, day_to;
                EXECUTE format(
                    'INSERT INTO perfmon.%I (server_id, ts%s, %s) '
                    'SELECT server_id, date_trunc(''day'', ts, ''UTC'')%s, %s FROM perfmon.%I '
                    'WHERE ts >= $1 AND ts < $2 GROUP BY server_id, date_trunc(''day'', ts, ''UTC'')%s',
                    d.target_table, keys,
                    (SELECT string_agg(quote_ident(c), ', ' ORDER BY n) FROM unnest(d.columns) WITH ORDINALITY AS u(c, n)),
                    keys, array_to_string(d.aggregates, ', '), d.source_table, keys)
                    USING day_from, day_to;
            END IF;
        END IF;
    END LOOP;
    IF new_until <> hourly_until THEN
        UPDATE perfmon.meta SET value = new_until::text, updated_at = now() WHERE key = 'rollup_hourly_until';
    END IF;
END
$$;
