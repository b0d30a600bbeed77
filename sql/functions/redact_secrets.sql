CREATE OR REPLACE FUNCTION perfmon.redact_secrets(query text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- pg_stat_statements keeps utility statements verbatim, constants included:
    -- ALTER ROLE ... PASSWORD '...', CREATE USER MAPPING ... OPTIONS (password '...'),
    -- CREATE SUBSCRIPTION ... CONNECTION 'host=... password=...'. pgperfmon shows
    -- query texts to perfmon_reader, so what may be a password is masked first:
    --  * a string constant after the word PASSWORD, or "password" (standard, E'', U&'' or
    --    dollar-quoted: a dollar quote masks the rest of the text), comments between them
    --    skipped;
    --  * password=value inside connection strings, in an E'' string too (\'value\');
    --  * the password of a URI (scheme://user:password@host).
    -- The Python side's twin for messages is plpython/perfmon_py/redact.py.
    SELECT CASE WHEN query !~* '(password|://)' THEN query ELSE
           regexp_replace(regexp_replace(regexp_replace(regexp_replace(query,
        '("?\mpassword"?(?:\s|/\*[^*]*\*/)*)(?:(?:U&)?''(?:[^'']|'''')*''|E?''(?:[^''\\]|\\.|'''')*'')',
        '\1''***''', 'gi'),
        '("?\mpassword"?(?:\s|/\*[^*]*\*/)*)\$[^$\s]*\$.*$', '\1***', 'gi'),
        '(\mpassword\s*=\s*)(?:\\''(?:[^''\\]|\\.)*\\''|''''(?:[^''\\]|\\''''|\\[^'']|'''''''')*''''|''(?:[^'']|'''')*''|[^\s''&]+)',
        '\1***', 'gi'),
        '(://[^:/@\s'']*:)[^@\s'']*@', '\1***@', 'g') END
$$;
COMMENT ON FUNCTION perfmon.redact_secrets(text) IS
    'A query text with what may be a secret masked as ***: string constants after PASSWORD, '
    'password=... in connection strings, the password of a URI. Applied to every statement text '
    'pgperfmon stores.';
