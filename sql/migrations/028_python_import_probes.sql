-- perfmon.anomaly_detector() only looks scikit-learn up (importing it would cost each
-- scoring run, a fresh backend every interval, about as much again as the scoring), so
-- one that was found but failed to import (built for another numpy) kept the isolation
-- forest chosen and failed every training. The training, which imports it anyway, tries
-- it and records here what it found (perfmon.anomaly_python_probe()); every session's
-- choice of detector reads it. Unlogged: after a crash the next training tries again.
CREATE UNLOGGED TABLE perfmon.state_python_probes (
    package    text PRIMARY KEY,
    error      text,
    probed_at  timestamptz NOT NULL
);
COMMENT ON TABLE perfmon.state_python_probes IS
    'What the last anomaly training found on importing a package of the server''s Python that '
    'perfmon.anomaly_python_missing() only looks up (scikit-learn): error is NULL when it imported.';
