CREATE OR REPLACE FUNCTION perfmon.health_system(from_ts timestamptz, to_ts timestamptz)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The system component: mean CPU and memory use and the fullest mount of the hosts'
-- samples (perfmon.host_metrics, all hosts together) against system.thresholds.
DECLARE
    t jsonb := perfmon.settings_under('system.thresholds');
    h record;
    c record;
    inputs jsonb;
    checks jsonb := '{}';
    missing jsonb := '[]';
    how_to text := 'enable the sample_host job (plpython3u with psutil) or run pgperfmon agent '
                   '(docs/host-and-agents.md)';
BEGIN
    SELECT count(*) AS samples, count(DISTINCT m.host) AS hosts,
           avg(m.cpu_total_pct) AS cpu, avg(m.memory_used_pct) AS mem,
           max(m.disk_max_used_pct) AS disk
      INTO h
      FROM perfmon.host_metrics AS m
     WHERE m.ts >= from_ts AND m.ts < to_ts;
    inputs := jsonb_build_object('samples', h.samples, 'hosts', h.hosts,
                                 'cpu_avg_pct', round(h.cpu::numeric, 2),
                                 'memory_avg_pct', round(h.mem::numeric, 2),
                                 'disk_max_used_pct', round(h.disk::numeric, 2));
    -- one check per measure: (check, its value, its threshold key, the metric behind it)
    FOR c IN SELECT * FROM (VALUES ('cpu', h.cpu, 'cpu_pct', 'host.cpu.total_pct'),
                                   ('memory', h.mem, 'memory_pct', 'host.memory.used_pct'),
                                   ('disk', h.disk, 'disk_pct', 'host.disk.used_pct'))
                           AS v(name, value, key, metric) LOOP
        IF c.value IS NULL THEN
            missing := missing || jsonb_build_object('check', c.name, 'why',
                'no ' || c.metric || ' sample in the period: ' || how_to);
        ELSE
            checks := checks || jsonb_build_object(c.name, perfmon.health_points(c.value,
                (t ->> (c.key || '.warning'))::float8, (t ->> (c.key || '.critical'))::float8, 100));
        END IF;
    END LOOP;
    RETURN perfmon.health_component(jsonb_strip_nulls(inputs), checks, missing,
        'mean of the checks cpu (mean busy %), memory (mean used %) and disk (fullest mount %) '
        'of perfmon.host_metrics, each against system.thresholds (warning 100 -> critical 50 -> 100% 0)',
        jsonb_build_object(
            'cpu', 'the CPU is busy: see perfmon.top_queries by total time and perfmon.host_metrics',
            'memory', 'memory is nearly used up: see perfmon.host_metrics and work_mem x sessions',
            'disk', 'a disk is nearly full: see perfmon.storage_forecast and perfmon.table_bloat'));
END
$$;
COMMENT ON FUNCTION perfmon.health_system(timestamptz, timestamptz) IS
    'Health component system between two times: checks cpu (mean %), memory (mean %), disk (fullest '
    'mount, %) from perfmon.host_metrics against system.thresholds, each scored 0-100.';
