CREATE OR REPLACE VIEW perfmon.host_devices AS
SELECT v.ts,
       v.labels ->> 'host' AS host,
       CASE WHEN v.labels ? 'mount' THEN 'mount'
            WHEN v.labels ? 'device' THEN 'disk'
            ELSE 'interface' END AS kind,
       coalesce(v.labels ->> 'mount', v.labels ->> 'device', v.labels ->> 'interface') AS name,
       max(v.value) FILTER (WHERE v.metric = 'host.disk.used_bytes')::bigint  AS used_bytes,
       max(v.value) FILTER (WHERE v.metric = 'host.disk.total_bytes')::bigint AS total_bytes,
       max(v.value) FILTER (WHERE v.metric = 'host.disk.used_pct')            AS used_pct,
       max(v.value) FILTER (WHERE v.metric = 'host.diskio.read_bytes_per_s')  AS read_bytes_per_s,
       max(v.value) FILTER (WHERE v.metric = 'host.diskio.write_bytes_per_s') AS write_bytes_per_s,
       max(v.value) FILTER (WHERE v.metric = 'host.diskio.read_iops')         AS read_iops,
       max(v.value) FILTER (WHERE v.metric = 'host.diskio.write_iops')        AS write_iops,
       max(v.value) FILTER (WHERE v.metric = 'host.diskio.busy_pct')          AS busy_pct,
       max(v.value) FILTER (WHERE v.metric = 'host.net.recv_bytes_per_s')     AS recv_bytes_per_s,
       max(v.value) FILTER (WHERE v.metric = 'host.net.sent_bytes_per_s')     AS sent_bytes_per_s,
       max(v.value) FILTER (WHERE v.metric = 'host.net.recv_packets_per_s')   AS recv_packets_per_s,
       max(v.value) FILTER (WHERE v.metric = 'host.net.sent_packets_per_s')   AS sent_packets_per_s,
       max(v.value) FILTER (WHERE v.metric = 'host.net.errors')::bigint       AS errors,
       max(v.value) FILTER (WHERE v.metric = 'host.net.drops')::bigint        AS drops
FROM perfmon.metric_values AS v
WHERE v.metric LIKE 'host.%'
  AND (v.labels ? 'mount' OR v.labels ? 'device' OR v.labels ? 'interface')
GROUP BY 1, 2, 3, 4;
COMMENT ON VIEW perfmon.host_devices IS
    'Host metrics per mount (kind mount: space in bytes and percent), block device (kind disk: '
    'bytes/s, operations/s, busy percent) and network interface (kind interface: bytes/s, '
    'packets/s, errors and drops since the previous sample), per sample. Filter on ts.';
