CREATE OR REPLACE FUNCTION perfmon.mark_applied(id bigint, note text DEFAULT NULL)
RETURNS perfmon.recommendation_log
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- The DBA ran the recommendation's SQL: status applied until the next refresh no
-- longer finds it (then resolved), so applied-but-still-found stands out.
-- applied_at (kept when marked again) is the "before" of the savings that
-- perfmon.executive_report() measures.
DECLARE
    row perfmon.recommendation_log;
BEGIN
    UPDATE perfmon.recommendation_log AS l
       SET status = 'applied', status_changed = now(), status_reason = note,
           applied_at = CASE WHEN l.status = 'applied' THEN l.applied_at ELSE now() END
     WHERE l.id = mark_applied.id AND l.status IN ('open', 'applied')
    RETURNING * INTO row;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgperfmon: no open recommendation with id %', id
            USING HINT = 'SELECT id, status FROM perfmon.recommendations';
    END IF;
    RETURN row;
END
$$;
COMMENT ON FUNCTION perfmon.mark_applied(bigint, text) IS
    'Marks an open recommendation as applied; the next refresh resolves it once it is no longer found.';
