CREATE OR REPLACE VIEW perfmon.forecast_advice AS
-- perfmon.forecasts as advisor findings (rule forecast): a growing trend that reaches
-- its limit within 30 days at the earliest (critical within 7), or a value at its limit.
SELECT f.forecast, f.forecast || ': ' || f.target AS target, f.severity,
       CASE WHEN f.current_value >= f.limit_value
            THEN format('%s is at its limit (%s of %s %s)', f.target, f.current_value, f.limit_value, f.unit)
            ELSE format('%s reaches %s %s in %s days (95%%: %s to %s days), %s', f.target, f.limit_value, f.unit,
                        f.days_left,
                        round((extract(epoch FROM f.eta_earliest - now()) / 86400)::numeric, 2),
                        coalesce(round((extract(epoch FROM f.eta_latest - now()) / 86400)::numeric, 2)::text,
                                 'never'),
                        f.note) END AS finding,
       jsonb_build_object('current_value', f.current_value, 'limit_value', f.limit_value, 'unit', f.unit,
                          'growth_per_day', f.growth_per_day, 'eta', f.eta, 'eta_earliest', f.eta_earliest,
                          'eta_latest', f.eta_latest, 'based_on_points', f.based_on_points,
                          'trend', f.trend) AS evidence,
       CASE f.forecast
           WHEN 'disk_full' THEN format('-- grow the volume mounted at %s, or free space on it: see '
                                        'perfmon.table_bloat, perfmon.unused_indexes, perfmon.replication_advice',
                                        f.target)
           WHEN 'xid_wraparound' THEN '-- VACUUM (FREEZE) the tables with the oldest XIDs before autovacuum '
                                      'has to: see perfmon.wraparound_risk and perfmon.vacuum_health'
           WHEN 'connection_exhaustion' THEN '-- put a connection pooler in front of the server, or end idle '
                                             'sessions: see perfmon.connection_pool_advice'
           ELSE format('-- find what fills %s (rows kept too long, bloat: perfmon.table_bloat) and plan its '
                       'storage', f.target)
       END AS apply_sql,
       round((extract(epoch FROM coalesce(f.eta_earliest, now()) - now()) / 86400)::numeric, 2) AS benefit,
       'days of headroom at the earliest'::text AS benefit_unit,
       CASE WHEN f.based_on_points >= 100 THEN 'high' ELSE 'medium' END AS confidence
FROM perfmon.forecasts AS f
WHERE f.severity <> 'ok';
COMMENT ON VIEW perfmon.forecast_advice IS
    'Advisor findings from perfmon.forecasts (rule forecast): disk, XID, connection or table growth '
    'reaching its limit within 30 days at the earliest (warning; critical within 7 or at the limit); '
    'benefit = days of headroom at the earliest end of the 95% interval.';
