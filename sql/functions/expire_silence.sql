CREATE OR REPLACE FUNCTION perfmon.expire_silence(silence_id bigint)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE perfmon.silences AS s SET ends_at = greatest(s.starts_at + interval '1 microsecond', now())
    WHERE s.silence_id = expire_silence.silence_id AND s.ends_at > now()
    RETURNING true
$$;
COMMENT ON FUNCTION perfmon.expire_silence(bigint) IS
    'Ends a silence now; true if it was active.';
