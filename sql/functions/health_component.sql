CREATE OR REPLACE FUNCTION perfmon.health_component(inputs jsonb, checks jsonb, missing jsonb,
                                                   how text, advice jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- What every component function returns: its score is the mean of the checks that
    -- could be computed (NULL when none could). missing is a list of
    -- {"check": name, "why": sentence}; the contract's "missing" is the sentences.
    SELECT jsonb_build_object(
        'score', (SELECT round(avg(c.value::numeric), 1) FROM jsonb_each_text(checks) AS c),
        'inputs', inputs,
        'checks', checks,
        'missing', coalesce((SELECT jsonb_agg(format('%s: %s', m ->> 'check', m ->> 'why'))
                             FROM jsonb_array_elements(missing) AS m), '[]'),
        'missing_checks', coalesce((SELECT jsonb_agg(m ->> 'check')
                                    FROM jsonb_array_elements(missing) AS m), '[]'),
        'advice', (SELECT coalesce(jsonb_object_agg(a.key, a.value), '{}')
                   FROM jsonb_each(advice) AS a
                   WHERE (checks ->> a.key)::numeric < 50),
        'how', how)
$$;
COMMENT ON FUNCTION perfmon.health_component(jsonb, jsonb, jsonb, text, jsonb) IS
    'Builds a health component''s result: score (0-100, the mean of its computed checks, NULL when '
    'none), inputs, checks, missing (sentences), missing_checks (names), advice for the checks '
    'scoring below 50, how.';
