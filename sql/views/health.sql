CREATE OR REPLACE VIEW perfmon.health AS
SELECT h.ts,
       round(h.overall::numeric, 1)           AS overall_score,
       round(h.technical::numeric, 1)         AS technical_score,
       round(h.business::numeric, 1)          AS business_score,
       round(h.database::numeric, 1)          AS database_score,
       round(h.system::numeric, 1)            AS system_score,
       round(h.agents::numeric, 1)            AS agents_score,
       round(h.availability::numeric, 1)      AS availability_score,
       round(h.user_satisfaction::numeric, 1) AS user_satisfaction_score,
       round(h.cost_efficiency::numeric, 1)   AS cost_efficiency_score,
       round(h.coverage_pct::numeric, 1)      AS coverage_pct,
       h.risk_level,
       coalesce(h.missing, '{}')              AS missing,
       h.period_s,
       h.inputs
FROM perfmon.health_history AS h
WHERE h.server_id = 1;
COMMENT ON VIEW perfmon.health IS
    'The health score as recorded every analysis interval by perfmon.record_health() (over the hour '
    'before ts, period_s seconds): overall, technical, business and per-component scores 0-100 (NULL = '
    'not computed), coverage_pct (% of the weights computed), risk_level (low, medium, high, critical, '
    'unknown), missing (components, or component.check, that could not be computed) and inputs: the '
    'measured value behind each check (units in key names). Filter on ts; docs/health.md.';
