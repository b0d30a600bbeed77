CREATE OR REPLACE VIEW perfmon.host_metrics AS
-- One row per host and sample, pivoted from the metric store. Per-device
-- figures are summed (I/O, network; the loopback interface left out) or the
-- worst one is shown (disk space, busy); perfmon.host_devices has each device.
SELECT v.ts,
       v.labels ->> 'host' AS host,
       max(v.value) FILTER (WHERE v.metric = 'host.cpu.total_pct')          AS cpu_total_pct,
       max(v.value) FILTER (WHERE v.metric = 'host.cpu.user_pct')           AS cpu_user_pct,
       max(v.value) FILTER (WHERE v.metric = 'host.cpu.system_pct')         AS cpu_system_pct,
       max(v.value) FILTER (WHERE v.metric = 'host.cpu.iowait_pct')         AS cpu_iowait_pct,
       max(v.value) FILTER (WHERE v.metric = 'host.cpu.steal_pct')          AS cpu_steal_pct,
       max(v.value) FILTER (WHERE v.metric = 'host.cpu.count')::int         AS cpu_count,
       max(v.value) FILTER (WHERE v.metric = 'host.load.1m')                AS load_1m,
       max(v.value) FILTER (WHERE v.metric = 'host.load.5m')                AS load_5m,
       max(v.value) FILTER (WHERE v.metric = 'host.load.15m')               AS load_15m,
       max(v.value) FILTER (WHERE v.metric = 'host.memory.used_pct')        AS memory_used_pct,
       max(v.value) FILTER (WHERE v.metric = 'host.memory.available_bytes')::bigint AS memory_available_bytes,
       max(v.value) FILTER (WHERE v.metric = 'host.memory.total_bytes')::bigint     AS memory_total_bytes,
       max(v.value) FILTER (WHERE v.metric = 'host.swap.used_pct')          AS swap_used_pct,
       max(v.value) FILTER (WHERE v.metric = 'host.swap.used_bytes')::bigint AS swap_used_bytes,
       max(v.value) FILTER (WHERE v.metric = 'host.disk.used_pct')          AS disk_max_used_pct,
       sum(v.value) FILTER (WHERE v.metric = 'host.diskio.read_bytes_per_s')  AS disk_read_bytes_per_s,
       sum(v.value) FILTER (WHERE v.metric = 'host.diskio.write_bytes_per_s') AS disk_write_bytes_per_s,
       sum(v.value) FILTER (WHERE v.metric = 'host.diskio.read_iops')       AS disk_read_iops,
       sum(v.value) FILTER (WHERE v.metric = 'host.diskio.write_iops')      AS disk_write_iops,
       max(v.value) FILTER (WHERE v.metric = 'host.diskio.busy_pct')        AS disk_max_busy_pct,
       sum(v.value) FILTER (WHERE v.metric = 'host.net.recv_bytes_per_s'   AND v.labels ->> 'interface' <> 'lo') AS net_recv_bytes_per_s,
       sum(v.value) FILTER (WHERE v.metric = 'host.net.sent_bytes_per_s'   AND v.labels ->> 'interface' <> 'lo') AS net_sent_bytes_per_s,
       sum(v.value) FILTER (WHERE v.metric = 'host.net.recv_packets_per_s' AND v.labels ->> 'interface' <> 'lo') AS net_recv_packets_per_s,
       sum(v.value) FILTER (WHERE v.metric = 'host.net.sent_packets_per_s' AND v.labels ->> 'interface' <> 'lo') AS net_sent_packets_per_s,
       sum(v.value) FILTER (WHERE v.metric = 'host.net.errors')::bigint     AS net_errors,
       sum(v.value) FILTER (WHERE v.metric = 'host.net.drops')::bigint      AS net_drops,
       max(v.value) FILTER (WHERE v.metric = 'host.postgres.cpu_pct')       AS postgres_cpu_pct,
       max(v.value) FILTER (WHERE v.metric = 'host.postgres.rss_bytes')::bigint AS postgres_rss_bytes,
       max(v.value) FILTER (WHERE v.metric = 'host.postgres.processes')::int    AS postgres_processes
FROM perfmon.metric_values AS v
WHERE v.metric LIKE 'host.%'
GROUP BY v.ts, v.labels ->> 'host';
COMMENT ON VIEW perfmon.host_metrics IS
    'Host metrics per host and sample (from perfmon.sample_host() or pgperfmon agent): CPU shares '
    'in percent (total = not idle and not iowait), load averages, memory and swap in bytes and '
    'percent, the fullest mount in percent, disk I/O summed over devices in bytes/s and '
    'operations/s, the busiest device in percent, network summed over interfaces (not lo) in '
    'bytes/s and packets/s, errors and drops since the previous sample, and the PostgreSQL '
    'processes'' CPU (100 = one core) and resident memory when the server is local. Rates are '
    'NULL in the first sample of a sampler. Filter on ts.';
