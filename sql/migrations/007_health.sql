-- Health score and its history (issue 8).
--
-- A component of the score is a function f(from_ts, to_ts) -> jsonb registered in
-- perfmon.health_components with its weight; perfmon.health_score() runs them all.
-- perfmon.record_health() (called by perfmon.analyze() every interval) stores one
-- compact row per interval in perfmon.health_history; perfmon.health reads it.

CREATE TABLE perfmon.health_components (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    weight        numeric NOT NULL CHECK (weight > 0 AND weight <= 1),
    grp           text NOT NULL CHECK (grp IN ('technical', 'business')),
    function_name text NOT NULL,
    ordinal       integer NOT NULL,
    enabled       boolean NOT NULL DEFAULT true,
    description   text NOT NULL
);
COMMENT ON TABLE perfmon.health_components IS
    'Registry of the health score''s components: perfmon.health_score() calls each enabled '
    'function_name(from_ts, to_ts) (returning {score 0-100 or null, inputs, checks, missing, how}) '
    'and weighs its score by weight within its group (technical or business). Adding a component '
    'is adding a row.';

INSERT INTO perfmon.health_components (name, weight, grp, function_name, ordinal, description) VALUES
    ('database',          0.3, 'technical', 'perfmon.health_database',          10,
     'cache hit, slow-query share, connection headroom, blocking, replica lag, wraparound'),
    ('system',            0.2, 'technical', 'perfmon.health_system',            20,
     'host CPU, memory and disk against system.thresholds'),
    ('agents',            0.1, 'technical', 'perfmon.health_agents',            30,
     'application agents: share up, error rate, p95 response time'),
    ('availability',      0.2, 'business',  'perfmon.health_availability',      40,
     'uptime from sample gaps and server restarts against business.availability_target_pct'),
    ('user_satisfaction', 0.1, 'business',  'perfmon.health_user_satisfaction', 50,
     'Apdex of response times against business.apdex_target_ms'),
    ('cost_efficiency',   0.1, 'business',  'perfmon.health_cost_efficiency',   60,
     'cost per 1000 committed transactions against business.target_cost_per_1k_transactions');

-- Postmaster start times as record_health() saw them: a restart is a change.
CREATE TABLE perfmon.server_starts (
    server_id  integer NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server_id, started_at)
);
COMMENT ON TABLE perfmon.server_starts IS
    'Server (postmaster) start times seen by perfmon.record_health(); a start inside a period is '
    'a restart, counted by the availability component.';
INSERT INTO perfmon.server_starts (server_id, started_at) VALUES (1, pg_postmaster_start_time());

-- One row per analysis interval: the scores as columns (real: 4 bytes, NULL = not
-- computed, free in the null bitmap), what was missing as short names, and each
-- component's measured inputs (numbers only; the sentences are in the function).
CREATE TABLE perfmon.health_history (
    server_id         integer NOT NULL,
    ts                timestamptz NOT NULL,
    period_s          integer NOT NULL,
    overall           real,
    technical         real,
    business          real,
    database          real,
    system            real,
    agents            real,
    availability      real,
    user_satisfaction real,
    cost_efficiency   real,
    coverage_pct      real NOT NULL,
    risk_level        text NOT NULL CHECK (risk_level IN ('low', 'medium', 'high', 'critical', 'unknown')),
    missing           text[],
    inputs            jsonb
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.health_history IS
    'Health scores recorded by perfmon.record_health(), one row per analysis interval: overall, '
    'group and component scores (0-100, NULL = not computed), coverage %, risk level, the '
    'components/checks that could not be computed, and the measured inputs. Read it through '
    'perfmon.health.';
CREATE INDEX ON perfmon.health_history USING brin (ts);

INSERT INTO perfmon.partitioned_tables (table_name, granularity, retention_key) VALUES
    ('health_history', 'month', 'business.health_retention_days');

-- When a recommendation was marked applied: the "before" of its measured savings.
ALTER TABLE perfmon.recommendation_log ADD COLUMN applied_at timestamptz;
COMMENT ON COLUMN perfmon.recommendation_log.applied_at IS
    'when perfmon.mark_applied() marked it applied (kept when it is later resolved)';
