CREATE OR REPLACE FUNCTION perfmon.agent_heartbeat(agent text, status text DEFAULT 'ok',
                                                   response_ms double precision DEFAULT NULL,
                                                   errors integer DEFAULT 0,
                                                   details jsonb DEFAULT NULL,
                                                   expected_interval_s double precision DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
-- An application agent says it is alive: registers it on first sight, updates
-- its registry row (last seen, last status, expected interval) and appends the
-- heartbeat. The name is any text of 1-200 characters without control
-- characters (quotes, semicolons and any script are stored as they are); a bad
-- argument raises invalid_parameter_value naming it. When the agent does not
-- say how often it beats, the interval is learned from its gaps (outage gaps,
-- over three intervals, are left out). A new name beyond system.max_agents
-- registered agents is refused (invalid_parameter_value, naming the limit).
DECLARE
    id integer;
    max_agents integer;
    registered bigint;
BEGIN
    status := lower(coalesce(status, 'ok'));
    errors := coalesce(errors, 0);
    IF agent IS NULL OR agent = '' THEN
        RAISE EXCEPTION 'pgperfmon: agent name is missing' USING ERRCODE = 'invalid_parameter_value';
    ELSIF length(agent) > 200 THEN
        RAISE EXCEPTION 'pgperfmon: agent name is % characters long; at most 200', length(agent)
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF agent ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'pgperfmon: agent name contains control characters'
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF status NOT IN ('ok', 'degraded', 'error', 'down') THEN
        RAISE EXCEPTION 'pgperfmon: status % is not one of ok, degraded, error, down', quote_literal(left(status, 40))
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF response_ms IS NOT NULL AND NOT (response_ms >= 0 AND response_ms < 1e9) THEN
        RAISE EXCEPTION 'pgperfmon: response_ms must be a finite number of milliseconds >= 0, got %', response_ms
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF errors < 0 THEN
        RAISE EXCEPTION 'pgperfmon: errors must be >= 0, got %', errors USING ERRCODE = 'invalid_parameter_value';
    ELSIF details IS NOT NULL AND jsonb_typeof(details) <> 'object' THEN
        RAISE EXCEPTION 'pgperfmon: details must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    ELSIF octet_length(details::text) > 8192 THEN
        RAISE EXCEPTION 'pgperfmon: details are % bytes long; at most 8192', octet_length(details::text)
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF expected_interval_s IS NOT NULL AND NOT (expected_interval_s > 0 AND expected_interval_s <= 604800) THEN
        RAISE EXCEPTION 'pgperfmon: expected_interval_s must be between 0 and 604800 seconds, got %',
            expected_interval_s USING ERRCODE = 'invalid_parameter_value';
    END IF;

    UPDATE perfmon.agents AS a
       SET last_seen = now(),
           last_status = agent_heartbeat.status,
           heartbeats = a.heartbeats + 1,
           expected_interval_s = CASE
               WHEN agent_heartbeat.expected_interval_s IS NOT NULL THEN agent_heartbeat.expected_interval_s
               WHEN a.expected_interval_s IS NULL THEN greatest(extract(epoch FROM now() - a.last_seen), 0.001)
               WHEN extract(epoch FROM now() - a.last_seen) > 3 * a.expected_interval_s THEN a.expected_interval_s
               ELSE 0.9 * a.expected_interval_s + 0.1 * extract(epoch FROM now() - a.last_seen)
           END
     WHERE a.name = agent
    RETURNING a.agent_id INTO id;
    IF NOT FOUND THEN
        -- Every application beats as perfmon_agent under a name of its own choosing: a
        -- caller making names up would grow the registry, agent_health and the agent_down
        -- alerts without bound. New names stop at system.max_agents; known ones go on.
        -- The lock makes two new names at once count each other (known names never take it).
        PERFORM pg_advisory_xact_lock(hashtext('perfmon.agents'));
        IF NOT EXISTS (SELECT FROM perfmon.agents AS a WHERE a.name = agent) THEN
            max_agents := perfmon.setting('system.max_agents')::int;
            registered := (SELECT count(*) FROM perfmon.agents);
            IF registered >= max_agents THEN
                RAISE EXCEPTION 'pgperfmon: agent % refused: % agents are registered, the most '
                                'system.max_agents allows', quote_literal(agent), registered
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Raise system.max_agents, or delete retired agents: '
                                 'DELETE FROM perfmon.agents WHERE name = ''...''.';
            END IF;
        END IF;
        INSERT INTO perfmon.agents AS a (name, last_status, expected_interval_s, heartbeats)
        VALUES (agent, status, agent_heartbeat.expected_interval_s, 1)
        ON CONFLICT (name) DO UPDATE
            SET last_seen = now(), last_status = EXCLUDED.last_status, heartbeats = a.heartbeats + 1
        RETURNING a.agent_id INTO id;
    END IF;

    -- Its commit check runs at COMMIT even after a caller's SET CONSTRAINTS ALL IMMEDIATE
    -- (perfmon.heartbeat_commit_async(): a heartbeat-only transaction does not wait for
    -- the WAL flush).
    SET CONSTRAINTS perfmon.heartbeat_commit_async DEFERRED;
    BEGIN
        INSERT INTO perfmon.agent_heartbeats (server_id, ts, agent_id, status, response_ms, errors, details)
        VALUES (1, now(), id, status, response_ms, errors, details);
    EXCEPTION WHEN check_violation THEN  -- today's partition is not there yet
        PERFORM perfmon.ensure_day_partitions('agent_heartbeats', now(), now());
        INSERT INTO perfmon.agent_heartbeats (server_id, ts, agent_id, status, response_ms, errors, details)
        VALUES (1, now(), id, status, response_ms, errors, details);
    END;
END
$$;
COMMENT ON FUNCTION perfmon.agent_heartbeat(text, text, double precision, integer, jsonb, double precision) IS
    'An application agent''s heartbeat: status (ok, degraded, error, down), response time in ms, '
    'errors since its previous heartbeat, details (a JSON object up to 8 kB), and optionally '
    'the seconds it means to wait between heartbeats. A new agent name beyond system.max_agents '
    'registered agents is refused. A transaction that writes nothing but '
    'heartbeats commits without waiting for its WAL flush (perfmon.heartbeat_commit_async()). '
    'See perfmon.agent_health.';
