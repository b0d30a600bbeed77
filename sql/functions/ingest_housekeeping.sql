CREATE OR REPLACE FUNCTION perfmon.ingest_housekeeping()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Idempotency keys only matter while a batch could still be replayed and its
-- rows kept: keys older than the samples' retention are forgotten.
DECLARE
    forgotten bigint;
BEGIN
    DELETE FROM perfmon.ingest_batches
     WHERE received_at < now() - make_interval(days => perfmon.setting('collection.retention_days')::int);
    GET DIAGNOSTICS forgotten = ROW_COUNT;
    RETURN jsonb_build_object('batch_keys_forgotten', forgotten);
END
$$;
COMMENT ON FUNCTION perfmon.ingest_housekeeping() IS
    'Daily: forgets ingest idempotency keys older than collection.retention_days; returns counts.';
