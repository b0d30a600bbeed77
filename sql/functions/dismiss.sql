CREATE OR REPLACE FUNCTION perfmon.dismiss(id bigint, reason text)
RETURNS perfmon.recommendation_log
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- A dismissed finding stays dismissed on every later refresh (its figures are still
-- refreshed, so perfmon.recommendations shows whether it got worse).
DECLARE
    row perfmon.recommendation_log;
BEGIN
    IF coalesce(btrim(reason), '') = '' THEN
        RAISE EXCEPTION 'pgperfmon: say why recommendation % is dismissed', id
            USING HINT = 'SELECT perfmon.dismiss(id, ''reason'')';
    END IF;
    UPDATE perfmon.recommendation_log AS l
       SET status = 'dismissed', status_changed = now(), status_reason = reason
     WHERE l.id = dismiss.id
    RETURNING * INTO row;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgperfmon: no recommendation with id %', id
            USING HINT = 'SELECT id, finding FROM perfmon.recommendations';
    END IF;
    RETURN row;
END
$$;
COMMENT ON FUNCTION perfmon.dismiss(bigint, text) IS
    'Silences one recommendation for good (status dismissed, with the reason); returns its row.';
