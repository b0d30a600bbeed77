CREATE OR REPLACE FUNCTION perfmon.channel_settings()
RETURNS TABLE (channel text, sender text, settings jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.name, c.sender, perfmon.settings_under(c.config_key)
           || jsonb_build_object('timeout_seconds', perfmon.setting('alerting.delivery_timeout_seconds'))
    FROM perfmon.alert_channels AS c
    ORDER BY c.name
$$;
COMMENT ON FUNCTION perfmon.channel_settings() IS
    'Each delivery channel with its sender and settings (enabled, min_level, the names of the '
    'environment variables holding its secrets, never the secrets), plus the delivery timeout in s.';
