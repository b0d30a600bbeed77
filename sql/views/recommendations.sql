CREATE OR REPLACE VIEW perfmon.recommendations AS
SELECT l.id, l.kind, l.rule, l.severity, l.target, l.finding, l.evidence, l.apply_sql,
       l.benefit, l.benefit_unit, l.confidence, l.first_seen, l.last_seen, l.status,
       l.status_changed, l.status_reason
FROM perfmon.recommendation_log AS l
WHERE l.server_id = 1
ORDER BY l.status <> 'open', array_position(ARRAY['critical', 'warning', 'info'], l.severity),
         l.benefit DESC NULLS LAST, l.id;
COMMENT ON VIEW perfmon.recommendations IS
    'The one list of advice: kind, severity (info/warning/critical), target, finding in plain '
    'words, evidence (jsonb), the SQL that applies it, estimated benefit with its unit '
    '(benefit_unit: % cost reduction, bytes reclaimable, days of headroom...), confidence, '
    'first/last seen and status (open, applied, dismissed, resolved). Open first, worst first.';
