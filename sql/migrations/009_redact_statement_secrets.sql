-- Secrets out of stored query texts (issue 9).
--
-- pg_stat_statements keeps utility statements verbatim, constants included
-- (ALTER ROLE ... PASSWORD '...'). Releases before this one copied them into the
-- statement dictionary, which perfmon_reader reads through perfmon.top_queries and
-- perfmon.slow_queries, and into the targets of recovery steps. Texts are now stored
-- through perfmon.redact_secrets(); this masks what was stored before. Migrations run
-- before the functions are (re)created, so the expression of
-- sql/functions/redact_secrets.sql is repeated here, once, in a function of this session.
CREATE FUNCTION pg_temp.redact_secrets(query text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
AS $$
    SELECT regexp_replace(regexp_replace(regexp_replace(regexp_replace(query,
        '(\mpassword\s+)(?:''(?:[^'']|'''')*''|E?''(?:[^''\\]|\\.|'''')*'')', '\1''***''', 'gi'),
        '(\mpassword\s+)\$[^$\s]*\$.*$', '\1***', 'gi'),
        '(\mpassword\s*=\s*)(?:''''(?:[^''\\]|\\''''|\\[^'']|'''''''')*''''|''(?:[^'']|'''')*''|[^\s''&]+)',
        '\1***', 'gi'),
        '(://[^:/@\s'']*:)[^@\s'']*@', '\1***@', 'g')
$$;

UPDATE perfmon.statements SET query = pg_temp.redact_secrets(query)
 WHERE query ~* '(password|://)';

UPDATE perfmon.recovery_steps
   SET target = jsonb_set(target, '{query}', to_jsonb(pg_temp.redact_secrets(target ->> 'query')))
 WHERE target ->> 'query' ~* '(password|://)';

DROP FUNCTION pg_temp.redact_secrets(text);
