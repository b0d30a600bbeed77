CREATE OR REPLACE FUNCTION perfmon.maintain()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
-- The daily job: partitions ahead, retention, and forgetting state of objects that
-- are gone (dropped relations, evicted statements) so state tables stay small.
DECLARE
    created int := 0;
    dropped int := 0;
    forgotten int;
    part record;
BEGIN
    PERFORM set_config('lock_timeout', perfmon.setting('collection.lock_timeout_ms')::text, true);
    FOR part IN SELECT * FROM perfmon.maintain_partitions() LOOP
        IF part.action = 'created' THEN created := created + 1; ELSE dropped := dropped + 1; END IF;
    END LOOP;
    -- Only state of keys that are gone is forgotten: a statement still in
    -- pg_stat_statements keeps its state however long it idles, or its next run
    -- would look new and count its whole history as one delta.
    DELETE FROM perfmon.state_statements AS st
     USING perfmon.statements AS d
     WHERE d.stmt_id = st.stmt_id
       AND NOT EXISTS (SELECT FROM pg_stat_statements(false) AS s
                       WHERE s.userid = d.userid AND s.dbid = d.dbid
                         AND s.queryid = d.queryid AND s.toplevel = d.toplevel);
    GET DIAGNOSTICS forgotten = ROW_COUNT;
    DELETE FROM perfmon.state_tables AS st
     USING perfmon.relations AS r
     WHERE r.rel_id = st.rel_id AND r.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND NOT EXISTS (SELECT FROM pg_class AS c WHERE c.oid = r.relid);
    DELETE FROM perfmon.state_indexes AS st
     USING perfmon.relations AS r
     WHERE r.rel_id = st.rel_id AND r.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND NOT EXISTS (SELECT FROM pg_class AS c WHERE c.oid = r.relid);
    DELETE FROM perfmon.index_scans_seen AS st
     USING perfmon.relations AS r
     WHERE r.rel_id = st.rel_id AND r.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND NOT EXISTS (SELECT FROM pg_class AS c WHERE c.oid = r.relid);
    DELETE FROM perfmon.settings_history
     WHERE ts < now() - make_interval(days => perfmon.setting('collection.rollup_daily_retention_days')::int);
    RETURN jsonb_build_object('partitions_created', created, 'partitions_dropped', dropped,
                              'statement_states_forgotten', forgotten);
END
$$;
COMMENT ON FUNCTION perfmon.maintain() IS
    'Daily maintenance: creates partitions ahead, drops partitions past retention, '
    'forgets the state of statements and relations that no longer exist. Returns counts as jsonb.';
