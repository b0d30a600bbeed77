-- Executive: what runs out, and when (perfmon.forecasts), soonest first.
SELECT forecast, target, unit, current_value, limit_value, growth_per_day, days_left, eta,
       eta_earliest, severity
FROM perfmon.forecasts
ORDER BY array_position(ARRAY['critical', 'warning', 'ok'], severity), days_left NULLS LAST
LIMIT 10
