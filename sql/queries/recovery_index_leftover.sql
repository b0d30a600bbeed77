-- After a failed CREATE INDEX CONCURRENTLY of pgperfmon recover: is the index of that name
-- the invalid one this build left? The name was free when the build started (checked
-- under the build's advisory lock), so an invalid index of that name on the target table
-- is the build's own, unless another session is building it right now.
SELECT EXISTS (
    SELECT FROM pg_index AS i
    WHERE i.indexrelid = to_regclass(quote_ident(%(schema)s) || '.' || quote_ident(%(index_name)s))
      AND i.indrelid = to_regclass(quote_ident(%(schema)s) || '.' || quote_ident(%(table)s))
      AND NOT i.indisvalid
      AND NOT EXISTS (SELECT FROM pg_stat_progress_create_index AS p
                      WHERE p.index_relid = i.indexrelid AND p.pid <> pg_backend_pid())
) AS left_by_this_build
