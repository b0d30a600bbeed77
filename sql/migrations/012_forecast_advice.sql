-- The forecasts reach the advisor, and through it the alerts
-- (perfmon.alert_recommendations): one rule row.
INSERT INTO perfmon.advisor_rules (name, kind, view_name, refresh_function, ordinal, description) VALUES
    ('forecast', 'capacity', 'perfmon.forecast_advice', NULL, 6,
     'disk, XID wraparound, connection and table growth reaching their limit within 30 days');
