-- Alerting and guarded automated recovery (issue 7).
--
-- Rules are rows: what is measured (a query returning target, value, level, details),
-- the comparison, a threshold per level (a literal or a configuration key), how long a
-- breach must hold, cooldown and escalation. perfmon.analyze() evaluates them; an alert
-- lives once per fingerprint (rule + target) through pending -> firing -> resolved.
-- Every notification is an outbox row written in the transaction that raises it, one
-- per channel; delivery workers (PL/Python under pg_cron, or pgperfmon deliver) claim
-- rows with FOR UPDATE SKIP LOCKED, retry with backoff and dead-letter after
-- alerting.max_delivery_attempts. Secrets never enter a table: the channel rows name
-- no secret, the configuration names environment variables.
--
-- Recovery actions are rows too (perfmon.recovery_playbook); every run and every step
-- with its decision, result, re-check and recovery time is kept (perfmon.recovery_actions).

-- ----------------------------------------------------------------- levels and rules
CREATE TABLE perfmon.alert_levels (
    level text PRIMARY KEY,
    rank  integer NOT NULL UNIQUE
);
COMMENT ON TABLE perfmon.alert_levels IS 'Alert levels, least to most severe (rank 0-3).';
INSERT INTO perfmon.alert_levels (level, rank) VALUES
    ('info', 0), ('warning', 1), ('critical', 2), ('emergency', 3);

CREATE TABLE perfmon.alert_rules (
    name                text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    metric              text NOT NULL,
    unit                text NOT NULL,
    query               text NOT NULL,
    comparison          text NOT NULL DEFAULT '>' CHECK (comparison IN ('>', '>=', '<', '<=')),
    info_threshold      double precision,
    warning_threshold   double precision,
    critical_threshold  double precision,
    emergency_threshold double precision,
    info_key            text,
    warning_key         text,
    critical_key        text,
    emergency_key       text,
    hold_seconds        integer NOT NULL DEFAULT 0 CHECK (hold_seconds >= 0),
    cooldown_minutes    integer CHECK (cooldown_minutes >= 0),
    escalation_minutes  integer CHECK (escalation_minutes > 0),
    business_impact     text NOT NULL,
    affected_systems    text[] NOT NULL,
    recommended_actions text NOT NULL,
    recovery_action     text,
    enabled             boolean NOT NULL DEFAULT true,
    description         text NOT NULL
);
COMMENT ON TABLE perfmon.alert_rules IS
    'Registry of alert rules. query returns (target text, value double precision, level text, '
    'details jsonb); a NULL level is found by comparing value with the thresholds: for each level '
    'the literal <level>_threshold, else the configuration key <level>_key, else none. A breach '
    'must hold hold_seconds before it fires; cooldown_minutes and escalation_minutes NULL = '
    'alerting.cooldown_minutes / alerting.escalation_minutes. Adding a rule is adding a row.';

-- Percentage rules take warning/critical from their own configuration keys and the
-- levels of alerting.levels (the seed's 70/90/98) where they have none. levels.info (0)
-- is the floor of the scale, not a threshold: every percentage is >= 0.
INSERT INTO perfmon.alert_rules (name, metric, unit, query, comparison, warning_key, critical_key,
        emergency_key, warning_threshold, critical_threshold, hold_seconds, business_impact,
        affected_systems, recommended_actions, recovery_action, description) VALUES
    ('cpu', 'host.cpu.total_pct', 'pct',
     'SELECT target, value, NULL::text, details FROM perfmon.alert_metric_latest(''host.cpu.total_pct'')',
     '>', 'system.thresholds.cpu_pct.warning', 'system.thresholds.cpu_pct.critical',
     'alerting.levels.emergency', NULL, NULL, 300,
     'Queries slow down for every application on this server while the CPU is saturated.',
     ARRAY['database host', 'all applications'],
     'Find the statements using the most time (perfmon.top_queries) and the sessions running now; '
     'add indexes or move batch work off peak.', 'cancel_long_queries',
     'host CPU busy % (the latest sample of each host)'),
    ('memory', 'host.memory.used_pct', 'pct',
     'SELECT target, value, NULL::text, details FROM perfmon.alert_metric_latest(''host.memory.used_pct'')',
     '>', 'system.thresholds.memory_pct.warning', 'system.thresholds.memory_pct.critical',
     'alerting.levels.emergency', NULL, NULL, 300,
     'The host may start swapping or the OOM killer may end PostgreSQL, which restarts every session.',
     ARRAY['database host', 'all applications'],
     'Check work_mem x active sessions and other processes on the host (perfmon.host_metrics); '
     'reduce connections with a pooler.', 'shed_idle_connections',
     'host memory in use % (the latest sample of each host)'),
    ('disk', 'host.disk.used_pct', 'pct',
     'SELECT target, value, NULL::text, details FROM perfmon.alert_metric_latest(''host.disk.used_pct'')',
     '>', 'system.thresholds.disk_pct.warning', 'system.thresholds.disk_pct.critical',
     'alerting.levels.emergency', NULL, NULL, 0,
     'When the disk is full PostgreSQL stops accepting writes (and may shut down if WAL cannot be written).',
     ARRAY['database host', 'storage', 'all writing applications'],
     'Free space or grow the volume; check perfmon.storage_forecast, table bloat and WAL retained by slots.',
     'vacuum_tables', 'disk space used % per mount (the latest sample)'),
    ('connection_usage', 'db.connections.used_pct', 'pct',
     $q$SELECT 'server'::text, 100.0 * count(*) / current_setting('max_connections')::int, NULL::text,
               jsonb_build_object('sessions', count(*),
                                  'max_connections', current_setting('max_connections')::int,
                                  'idle_in_transaction', count(*) FILTER (WHERE state LIKE 'idle in transaction%'))
        FROM pg_stat_activity WHERE backend_type = 'client backend'$q$,
     '>', 'database.performance_thresholds.connection_usage_pct', 'alerting.levels.critical',
     'alerting.levels.emergency', NULL, NULL, 0,
     'New connections are refused once max_connections is reached: applications see errors.',
     ARRAY['database', 'all applications'],
     'Use a connection pooler; end idle sessions; check perfmon.connection_usage.',
     'shed_idle_connections', 'client connections as % of max_connections, now'),
    ('cache_hit_ratio', 'db.cache_hit_pct', 'pct',
     $q$SELECT 'server'::text, 100.0 * sum(blks_hit) / sum(coalesce(blks_hit, 0) + coalesce(blks_read, 0)),
               NULL::text, jsonb_build_object('blocks', sum(coalesce(blks_hit, 0) + coalesce(blks_read, 0)),
                                              'window_minutes', 15)
        FROM perfmon.server_history WHERE server_id = 1 AND ts > now() - interval '15 minutes'
        HAVING sum(coalesce(blks_hit, 0) + coalesce(blks_read, 0)) >= 10000$q$,
     '<', 'database.performance_thresholds.cache_hit_ratio_min_pct', NULL, NULL, NULL, 80, 900,
     'More reads go to disk: queries are slower and the storage busier.',
     ARRAY['database', 'storage'],
     'Check perfmon.cache_hit_ratio for the tables read from disk; consider shared_buffers and indexes.',
     NULL, 'shared buffer cache hit % over the last 15 minutes (at least 10,000 block reads)'),
    ('slow_query', 'db.query.mean_ms', 'ms',
     $q$SELECT format('statement %s', h.stmt_id), sum(h.exec_ms) / sum(h.calls), NULL::text,
               jsonb_build_object('stmt_id', h.stmt_id, 'calls', sum(h.calls),
                                  'query', left(min(s.query), 200), 'window_minutes', 15)
        FROM perfmon.statement_history AS h JOIN perfmon.statements AS s USING (stmt_id)
        WHERE h.server_id = 1 AND h.ts > now() - interval '15 minutes' AND h.stmt_id <> 0
        GROUP BY h.stmt_id HAVING sum(h.calls) > 0$q$,
     '>', 'database.performance_thresholds.slow_query_ms', NULL, NULL, NULL, NULL, 0,
     'Users of this statement wait longer than the agreed response time.',
     ARRAY['database', 'applications running the statement'],
     'See perfmon.slow_query_insights and perfmon.index_recommendations for the statement.',
     NULL, 'mean execution time of a statement over the last 15 minutes, ms'),
    ('long_query', 'db.oldest_query_s', 's',
     $q$SELECT 'server'::text, max(extract(epoch FROM now() - query_start))::float8, NULL::text,
               jsonb_build_object('pid', (array_agg(pid ORDER BY query_start))[1])
        FROM pg_stat_activity WHERE backend_type = 'client backend' AND state = 'active'
          AND pid <> pg_backend_pid() HAVING count(*) > 0$q$,
     '>', 'database.performance_thresholds.long_query_seconds', NULL, NULL, NULL, NULL, 0,
     'A long query holds locks and snapshots: it can block writers and keeps vacuum from cleaning up.',
     ARRAY['database'],
     'Look at the session (pg_stat_activity); cancel it with pg_cancel_backend(pid) if it is not wanted.',
     'cancel_long_queries', 'age of the oldest running query, s'),
    ('idle_in_transaction', 'db.oldest_idle_in_transaction_s', 's',
     $q$SELECT 'server'::text, max(extract(epoch FROM now() - state_change))::float8, NULL::text,
               jsonb_build_object('sessions', count(*),
                                  'pid', (array_agg(pid ORDER BY state_change))[1])
        FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' HAVING count(*) > 0$q$,
     '>', 'database.performance_thresholds.idle_in_transaction_seconds', NULL, NULL, NULL, NULL, 0,
     'A session idle in a transaction holds its locks and snapshot: other sessions queue behind it.',
     ARRAY['database', 'the application owning the session'],
     'Fix the application so that it commits; set idle_in_transaction_session_timeout.',
     'terminate_idle_in_transaction', 'age of the oldest idle-in-transaction session, s'),
    ('lock_wait', 'db.longest_lock_wait_s', 's',
     $q$SELECT 'server'::text, max(extract(epoch FROM now() - l.waitstart))::float8, NULL::text,
               jsonb_build_object('waiting_sessions', count(DISTINCT l.pid))
        FROM pg_locks AS l WHERE NOT l.granted AND l.waitstart IS NOT NULL HAVING count(*) > 0$q$,
     '>', NULL, NULL, NULL, 30, 300, 0,
     'Sessions are queued behind a lock: their users wait, and the queue can exhaust connections.',
     ARRAY['database', 'applications waiting on the lock'],
     'See perfmon.blocking_locks for the root blocker; end it if it is idle in a transaction.',
     'terminate_lock_blockers', 'longest current lock wait, s'),
    ('replication_lag', 'db.replication_lag_s', 's',
     $q$SELECT coalesce(application_name, client_addr::text, pid::text),
               extract(epoch FROM replay_lag)::float8, NULL::text,
               jsonb_build_object('state', state, 'client_addr', client_addr)
        FROM pg_stat_replication WHERE replay_lag IS NOT NULL$q$,
     '>', 'database.performance_thresholds.replication_lag_seconds', NULL, NULL, NULL, NULL, 60,
     'A failover to a lagging replica loses the transactions it has not replayed; reads there are stale.',
     ARRAY['replicas', 'applications reading from replicas'],
     'Check the replica''s I/O and network; see perfmon.replication_status.',
     NULL, 'replay lag of each replica, s');

-- Anomalies and recommendations: the level comes with the finding.
INSERT INTO perfmon.alert_rules (name, metric, unit, query, hold_seconds, business_impact,
        affected_systems, recommended_actions, description) VALUES
    ('anomaly', 'anomaly score', 'score',
     'SELECT target, value, level, details FROM perfmon.alert_anomalies()', 0,
     'A metric behaves unlike its learned pattern: often the first sign of an incident.',
     ARRAY['database'], 'Look at perfmon.anomalies and the metric''s recent history.',
     'anomalies of perfmon.anomalies at or above alerting.anomaly_min_level (when the anomaly '
     'detector is installed)'),
    ('recommendation', 'recommendation benefit', 'benefit',
     'SELECT target, value, level, details FROM perfmon.alert_recommendations()', 0,
     'The advisor found a problem that will hurt if left alone.',
     ARRAY['database'], 'Apply the recommendation''s SQL (perfmon.recommendations.apply_sql).',
     'open recommendations of perfmon.recommendations at or above alerting.recommendation_min_level');

-- ----------------------------------------------------------------- alerts
CREATE TABLE perfmon.alert_log (
    alert_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id        integer NOT NULL DEFAULT 1,
    fingerprint      text NOT NULL,
    rule             text NOT NULL,
    target           text NOT NULL,
    state            text NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    level            text NOT NULL REFERENCES perfmon.alert_levels,
    value            double precision,
    threshold        double precision,
    details          jsonb NOT NULL DEFAULT '{}',
    first_seen       timestamptz NOT NULL,
    fired_at         timestamptz,
    last_seen        timestamptz NOT NULL,
    resolved_at      timestamptz,
    acked_at         timestamptz,
    acked_by         text,
    ack_note         text,
    escalation_level integer NOT NULL DEFAULT 0,
    escalated_at     timestamptz,
    notified_at      timestamptz
);
COMMENT ON TABLE perfmon.alert_log IS
    'Every alert, one row per fingerprint (rule:target) and incident: pending while a breach has not '
    'held long enough, firing, resolved when the condition is gone. A breach within the cooldown '
    'after resolution reopens the same row. Read it through perfmon.alerts.';
-- One open alert per fingerprint: the guard against floods.
CREATE UNIQUE INDEX alert_log_open_fingerprint ON perfmon.alert_log (server_id, fingerprint)
    WHERE state <> 'resolved';
CREATE INDEX ON perfmon.alert_log (fingerprint, resolved_at);

CREATE TABLE perfmon.alert_events (
    event_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id bigint NOT NULL REFERENCES perfmon.alert_log ON DELETE CASCADE,
    ts       timestamptz NOT NULL DEFAULT clock_timestamp(),
    event    text NOT NULL CHECK (event IN ('pending', 'firing', 'level_raised', 'level_lowered',
                                            'escalated', 'acknowledged', 'resolved', 'reopened',
                                            'suppressed')),
    level    text NOT NULL,
    value    double precision,
    details  jsonb
);
COMMENT ON TABLE perfmon.alert_events IS
    'History of each alert: state and level changes, escalations, acknowledgements, '
    'notifications suppressed by a silence.';
CREATE INDEX ON perfmon.alert_events (alert_id, ts);

CREATE TABLE perfmon.silences (
    silence_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule           text,
    target_pattern text NOT NULL DEFAULT '%',
    starts_at      timestamptz NOT NULL DEFAULT now(),
    ends_at        timestamptz NOT NULL,
    created_by     text NOT NULL DEFAULT current_user,
    reason         text NOT NULL,
    CHECK (ends_at > starts_at)
);
COMMENT ON TABLE perfmon.silences IS
    'Silences: while now() is between starts_at and ends_at, alerts of rule (NULL = every rule) '
    'whose target is LIKE target_pattern change state as usual but notify nobody.';

CREATE TABLE perfmon.alert_rule_runs (
    ts          timestamptz PRIMARY KEY,
    duration_ms real NOT NULL,
    rules       jsonb NOT NULL
);
COMMENT ON TABLE perfmon.alert_rule_runs IS
    'One row per evaluation of the alert rules: total ms and per rule {ms, breaches, error?}.';

-- ----------------------------------------------------------------- delivery
CREATE TABLE perfmon.alert_channels (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    sender      text NOT NULL,
    config_key  text NOT NULL,
    description text NOT NULL
);
COMMENT ON TABLE perfmon.alert_channels IS
    'Registry of delivery channels: sender is the Python function (module.function) that sends '
    'one message; config_key the configuration section with enabled, min_level, secret_env and '
    'the channel''s own settings. Adding a channel is adding a row and a function.';
INSERT INTO perfmon.alert_channels (name, sender, config_key, description) VALUES
    ('slack',   'perfmon_py.delivery.send_slack',   'alerting.channels.slack',
     'Slack incoming webhook (URL from secret_env)'),
    ('webhook', 'perfmon_py.delivery.send_webhook', 'alerting.channels.webhook',
     'generic JSON webhook signed with HMAC-SHA256 (X-Pgperfmon-Signature)'),
    ('email',   'perfmon_py.delivery.send_email',   'alerting.channels.email',
     'email over SMTP with STARTTLS and login (password from secret_env)'),
    ('sms',     'perfmon_py.delivery.send_sms',     'alerting.channels.sms',
     'SMS through an HTTP gateway, Twilio-style form post (token from secret_env)');

CREATE TABLE perfmon.alert_outbox (
    message_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id        bigint NOT NULL REFERENCES perfmon.alert_log ON DELETE CASCADE,
    event           text NOT NULL,
    channel         text NOT NULL REFERENCES perfmon.alert_channels,
    level           text NOT NULL,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    delivered_at    timestamptz,
    last_error      text
);
COMMENT ON TABLE perfmon.alert_outbox IS
    'Notifications to send, one row per alert event and channel, written in the transaction that '
    'raised them. Workers claim due pending rows with FOR UPDATE SKIP LOCKED; a row is delivered, '
    'retried after next_attempt_at, or dead after alerting.max_delivery_attempts. message_id is the '
    'idempotency key receivers see (X-Pgperfmon-Message-Id).';
CREATE INDEX alert_outbox_due ON perfmon.alert_outbox (next_attempt_at) WHERE status = 'pending';

CREATE TABLE perfmon.delivery_log (
    ts          timestamptz NOT NULL DEFAULT clock_timestamp(),
    message_id  bigint NOT NULL,
    channel     text NOT NULL,
    attempt     integer NOT NULL,
    ok          boolean NOT NULL,
    status_code integer,
    duration_ms real,
    error       text,
    worker      text NOT NULL
);
COMMENT ON TABLE perfmon.delivery_log IS
    'Every delivery attempt: channel, attempt number, success, HTTP/SMTP status, ms, the error '
    '(secrets and URLs redacted) and the worker that tried.';
CREATE INDEX ON perfmon.delivery_log (message_id);
CREATE INDEX ON perfmon.delivery_log USING brin (ts);

-- ----------------------------------------------------------------- recovery
CREATE TABLE perfmon.recovery_playbook (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    kind          text NOT NULL CHECK (kind IN ('session', 'table', 'index')),
    plan_function text NOT NULL,
    fast          boolean NOT NULL,
    in_database   boolean NOT NULL,
    ordinal       integer NOT NULL,
    description   text NOT NULL
);
COMMENT ON TABLE perfmon.recovery_playbook IS
    'Registry of recovery actions. plan_function(params jsonb) returns the candidates with the '
    'statement that acts on each; the configuration section optimization.auto_recovery.<name> '
    'holds enabled, thresholds and allowlists. fast = run by the per-second watcher; in_database = '
    'executed inside perfmon.recover() (else by pgperfmon recover/watch, outside any transaction).';
INSERT INTO perfmon.recovery_playbook (name, kind, plan_function, fast, in_database, ordinal, description) VALUES
    ('terminate_lock_blockers', 'session', 'perfmon.recovery_plan_lock_blockers', true, true, 10,
     'terminate the root blocker of a lock chain whose waiters wait longer than after_seconds'),
    ('terminate_idle_in_transaction', 'session', 'perfmon.recovery_plan_idle_in_transaction', true, true, 20,
     'terminate sessions idle in a transaction for longer than after_seconds'),
    ('shed_idle_connections', 'session', 'perfmon.recovery_plan_shed_connections', true, true, 30,
     'when connections pass usage_pct of max_connections, terminate sessions idle longer than '
     'after_seconds, oldest first, until back under it'),
    ('cancel_long_queries', 'session', 'perfmon.recovery_plan_long_queries', false, true, 40,
     'cancel queries running longer than after_seconds'),
    ('analyze_stale_tables', 'table', 'perfmon.recovery_plan_analyze', false, false, 50,
     'ANALYZE tables whose rows changed by more than modified_pct since the last analyze'),
    ('vacuum_tables', 'table', 'perfmon.recovery_plan_vacuum', false, false, 60,
     'VACUUM tables past dead_tuple_pct dead tuples, VACUUM (FREEZE) past freeze_age_pct of '
     'autovacuum_freeze_max_age'),
    ('create_approved_indexes', 'index', 'perfmon.recovery_plan_indexes', false, false, 70,
     'CREATE INDEX CONCURRENTLY for index recommendations approved with perfmon.approve_index()');

CREATE TABLE perfmon.index_approvals (
    approval_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schema_name   text NOT NULL,
    table_name    text NOT NULL,
    columns       text[] NOT NULL,
    recommendation_id bigint,
    approved_by   text NOT NULL DEFAULT current_user,
    approved_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (schema_name, table_name, columns)
);
COMMENT ON TABLE perfmon.index_approvals IS
    'Indexes a DBA approved for automated creation (perfmon.approve_index()); the action '
    'create_approved_indexes builds them CONCURRENTLY.';

CREATE TABLE perfmon.recovery_runs (
    run_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    trigger     text NOT NULL,
    dry_run     boolean NOT NULL,
    plan        jsonb NOT NULL DEFAULT '[]'
);
COMMENT ON TABLE perfmon.recovery_runs IS
    'One row per recovery run that found something: what triggered it, whether it was a dry run, '
    'and the plan (candidates with the decision for each).';

CREATE TABLE perfmon.recovery_steps (
    step_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          bigint NOT NULL REFERENCES perfmon.recovery_runs ON DELETE CASCADE,
    action          text NOT NULL,
    target          jsonb NOT NULL,
    statement       text,
    decision        text NOT NULL CHECK (decision IN ('done', 'failed', 'dry_run', 'deferred',
                                                      'refused', 'rate_limited', 'disabled')),
    reason          text,
    result          text,
    verified        boolean,
    verify_detail   text,
    condition_since timestamptz,
    detected_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    acted_at        timestamptz,
    verified_at     timestamptz
);
COMMENT ON TABLE perfmon.recovery_steps IS
    'Each candidate of a recovery run: the action, its target, the statement, the decision '
    '(done, failed, dry_run, deferred to pgperfmon recover/watch, refused by a safety rail, '
    'rate_limited, disabled), the result, and the re-check of the condition.';
CREATE INDEX ON perfmon.recovery_steps (action, acted_at);
CREATE INDEX ON perfmon.recovery_steps (run_id);

-- ----------------------------------------------------------------- jobs
INSERT INTO perfmon.jobs (name, schedule, interval_key, command, description) VALUES
    ('analyze', NULL, 'collection.interval_seconds', 'SELECT perfmon.analyze()',
     'score anomalies, evaluate alert rules, escalate, run enabled in-database recovery');
-- A procedure that commits after each message (a message sent is a message marked) and
-- polls the outbox for 55 s of every minute: CALL cannot go through run_every_interval,
-- whose EXECUTE does not allow COMMIT in what it calls.
INSERT INTO perfmon.jobs (name, schedule, interval_key, command, description, enabled)
SELECT 'deliver_alerts', '* * * * *', NULL, 'CALL perfmon.deliver_alerts(max_seconds => 55)',
       'send due alert notifications (PL/Python; secrets from the server''s environment)',
       EXISTS (SELECT FROM pg_extension WHERE extname = 'plpython3u');
-- The fast path occupies one pg_cron worker all the time: off until a DBA turns it on
-- (UPDATE perfmon.jobs SET enabled = true WHERE name = 'recovery_watch'; pgperfmon install).
INSERT INTO perfmon.jobs (name, schedule, interval_key, command, description, enabled) VALUES
    ('recovery_watch', NULL, 'optimization.auto_recovery.watch_interval_seconds',
     'SELECT perfmon.watch()',
     'fast-path recovery: lock chains, idle-in-transaction storms, connection exhaustion', false);
