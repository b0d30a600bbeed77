"""Isolation Forest models pickled by pgperfmon 0.1 after an upgrade (issue 6): migration 016
retires them so the training job refits them, and nothing unpickles them any more."""

from __future__ import annotations

import pickle

import numpy as np
import psycopg

from perfmon_py import anomaly
from pgperfmon import resources

MIGRATION = resources.path("sql", "migrations") / "016_iforest_models_without_pickle.sql"


def _store(conn: psycopg.Connection, detector: str, feature: str, blob: bytes) -> int:
    return conn.execute(
        "INSERT INTO perfmon.anomaly_models (detector, feature, series, trained_from, trained_to, "
        "samples, params, model) VALUES (%s, %s, '', now() - interval '1 day', now(), 300, '{}', %s) "
        "RETURNING model_id", (detector, feature, blob)).fetchone()[0]


def test_migration_retires_pickled_forests_only(conn: psycopg.Connection) -> None:
    # What 0.1 stored: a pickle (its bytes only; this test never unpickles either).
    pickled = pickle.dumps({"algorithm": "isolation_forest", "forest": None})
    arrays = anomaly.fit("isolation_forest", np.random.default_rng(1).normal(50, 2, 400))
    envelope = anomaly.fit("envelope", np.random.default_rng(1).normal(50, 2, 400))
    old = {_store(conn, "isolation_forest", "old.metric", pickled),
           _store(conn, "isolation_forest_multi", "multi", pickled)}
    kept = {_store(conn, "isolation_forest", "new.metric", arrays),
            _store(conn, "envelope", "old.metric", envelope)}
    conn.execute(MIGRATION.read_text(encoding="utf-8"))
    current = dict(conn.execute("SELECT model_id, current FROM perfmon.anomaly_models "
                                "WHERE model_id = ANY (%s)", (list(old | kept),)).fetchall())
    assert {k for k, c in current.items() if c} == kept
    assert {k for k, c in current.items() if not c} == old
    # Scoring in the database loads only current models: the retired pickles are never read.
    conn.execute("UPDATE perfmon.config SET value = '\"isolation_forest\"' "
                 "WHERE key = 'anomaly_detection.algorithm'")
    conn.execute("SELECT perfmon.score_anomalies()")
