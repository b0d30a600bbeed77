CREATE OR REPLACE FUNCTION perfmon.recovery_step_result(step_id bigint, ok boolean, result text,
                                                        started_at timestamptz)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- The outcome of a deferred step that pgperfmon executed outside a transaction, and the
-- re-check of its condition.
DECLARE
    s perfmon.recovery_steps;
    rel regclass;
    is_verified boolean := false;
    detail text;
    st record;
BEGIN
    SELECT * INTO s FROM perfmon.recovery_steps AS x
    WHERE x.step_id = recovery_step_result.step_id AND x.decision = 'deferred' FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgperfmon: recovery step % is not waiting for a result', step_id;
    END IF;
    PERFORM pg_stat_clear_snapshot();
    rel := to_regclass(format('%I.%I', s.target ->> 'schema', s.target ->> 'table'));
    SELECT greatest(t.last_analyze, t.last_autoanalyze) AS analyzed,
           greatest(t.last_vacuum, t.last_autovacuum) AS vacuumed, age(c.relfrozenxid) AS xid_age
    INTO st FROM pg_stat_user_tables AS t JOIN pg_class AS c ON c.oid = t.relid WHERE t.relid = rel;
    IF NOT ok THEN
        detail := 'the statement failed';
    ELSIF s.action = 'analyze_stale_tables' THEN
        is_verified := coalesce(st.analyzed >= started_at, false);
        detail := format('last analyze %s', st.analyzed);
    ELSIF s.action = 'vacuum_tables' THEN
        is_verified := coalesce(st.vacuumed >= started_at
                    AND (NOT (s.target ->> 'freeze')::boolean OR st.xid_age < (s.target ->> 'xid_age')::bigint), false);
        detail := format('last vacuum %s, oldest unfrozen XID age %s (was %s)', st.vacuumed, st.xid_age,
                         s.target ->> 'xid_age');
    ELSIF s.action = 'create_approved_indexes' THEN
        is_verified := EXISTS (SELECT FROM pg_index AS i
                            WHERE i.indexrelid = to_regclass(format('%I.%I', s.target ->> 'schema',
                                                                    s.target ->> 'index_name'))
                              AND i.indisvalid);
        detail := CASE WHEN is_verified THEN 'the index exists and is valid' ELSE 'no valid index' END;
    END IF;
    UPDATE perfmon.recovery_steps AS x
    SET decision = CASE WHEN ok THEN 'done' ELSE 'failed' END, result = recovery_step_result.result,
        acted_at = started_at, verified = is_verified, verify_detail = detail,
        verified_at = CASE WHEN is_verified THEN clock_timestamp() END
    WHERE x.step_id = s.step_id;
    RETURN jsonb_build_object('step_id', s.step_id, 'verified', is_verified, 'detail', detail);
END
$$;
COMMENT ON FUNCTION perfmon.recovery_step_result(bigint, boolean, text, timestamptz) IS
    'Records the outcome of a deferred recovery step (VACUUM, ANALYZE, CREATE INDEX CONCURRENTLY run by '
    'pgperfmon recover) and re-checks its condition: statistics updated, XID age lowered, index valid.';
