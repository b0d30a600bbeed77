-- Foundation: bookkeeping tables that every later migration and function relies on.
-- Applied once, as perfmon_admin, inside a transaction (see installer/pgperfmon/deploy.py).

CREATE TABLE perfmon.meta (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE perfmon.meta IS
    'pgperfmon installation facts: installed version, install time, the cron database.';

CREATE TABLE perfmon.config (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE perfmon.config IS
    'Validated configuration, one row per leaf key of performance_monitoring.yml '
    '(e.g. collection.interval_seconds). Written by pgperfmon install; read with perfmon.setting().';

CREATE TABLE perfmon.servers (
    server_id integer PRIMARY KEY,
    name      text NOT NULL UNIQUE,
    is_local  boolean NOT NULL DEFAULT false,
    added_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE perfmon.servers IS
    'Servers whose samples this repository holds; server_id 1 is the server pgperfmon runs in.';
INSERT INTO perfmon.servers (server_id, name, is_local) VALUES (1, 'local', true);

CREATE TABLE perfmon.jobs (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    schedule    text,
    command     text NOT NULL,
    description text NOT NULL,
    enabled     boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE perfmon.jobs IS
    'Registry of the work pg_cron runs for pgperfmon. schedule is a cron expression, or NULL '
    'for "every collection interval". pgperfmon install turns enabled rows into pg_cron jobs '
    'named pgperfmon.<database>.<name>.';
COMMENT ON COLUMN perfmon.jobs.schedule IS
    'cron expression; NULL = every collection.interval_seconds (see perfmon.job_plan)';

-- PL/Python sources deployed from plpython/ so that the server needs no file of ours.
-- Owned by the installing superuser (see sql/privileges.sql): whoever can write
-- code here can run it as the server's operating-system user.
CREATE TABLE perfmon.python_modules (
    name        text PRIMARY KEY,
    is_package  boolean NOT NULL,
    source      text NOT NULL,
    sha256      text NOT NULL,
    deployed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE perfmon.python_modules IS
    'Python modules of plpython/, imported inside the server by perfmon.py_bootstrap().';
