CREATE OR REPLACE FUNCTION perfmon.agent_interval_s(expected_interval_s double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The interval an agent's silence is measured in: its expected interval, declared or
    -- learned from its second heartbeat; before that, an hour, or an agent that died after
    -- its first heartbeat would count as up for ever.
    SELECT coalesce(expected_interval_s, 3600)
$$;
COMMENT ON FUNCTION perfmon.agent_interval_s(double precision) IS
    'An agent''s expected heartbeat interval, or 3600 s while it is not known yet (one heartbeat '
    'without expected_interval_s).';
