-- The PL/Python code store, (re)created by pgperfmon install as the superuser when it is
-- missing or not the superuser's own table (migration 001 made the first one). Whoever
-- can write code here can run it as the server's operating-system user.
CREATE TABLE perfmon.python_modules (
    name        text PRIMARY KEY,
    is_package  boolean NOT NULL,
    source      text NOT NULL,
    sha256      text NOT NULL,
    deployed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE perfmon.python_modules IS
    'Python modules of plpython/, imported inside the server by perfmon.py_bootstrap().';
