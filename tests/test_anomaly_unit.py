"""perfmon_py.anomaly outside the database: the detectors and the walk-forward."""

from __future__ import annotations

import numpy as np
import pytest

from perfmon_py import anomaly


def _noise(n: int, seed: int = 1) -> np.ndarray:
    return 50 + np.random.default_rng(seed).normal(0, 2, n)


@pytest.mark.parametrize("algorithm", anomaly.ALGORITHMS)
def test_a_spike_scores_over_one_and_a_typical_value_under(algorithm: str) -> None:
    history = _noise(2000)
    model = anomaly.load(anomaly.fit(algorithm, history))
    typical = anomaly.score(model, [*list(history[-40:]), 50.0])
    spike = anomaly.score(model, [*list(history[-40:]), 120.0])
    assert typical.score < 1 and not typical.anomalous
    assert spike.score > 1 and spike.anomalous


def test_envelope_range_and_sensitivity() -> None:
    history = _noise(2000)
    low = anomaly.fit_envelope(history, "low")
    high = anomaly.fit_envelope(history, "high")
    s_low = anomaly.score_envelope(low, [*list(history[-40:]), history.max() + 1.5])
    s_high = anomaly.score_envelope(high, [*list(history[-40:]), history.max() + 1.5])
    # The same excursion is further beyond the threshold with high sensitivity.
    assert s_high.score > s_low.score
    assert s_high.expected_high == pytest.approx(history.max() + 0.1 * low["value"]["spread"])
    with pytest.raises(ValueError, match="sensitivity"):
        anomaly.thresholds("extreme")


def test_envelope_sees_a_sustained_shift_through_its_moving_mean() -> None:
    history = _noise(2000)
    model = anomaly.fit_envelope(history)
    # Every value inside the range, but three hours of them at its top.
    shifted = [history.max() - 0.5] * anomaly.MEAN_WINDOW
    s = anomaly.score_envelope(model, shifted)
    assert s.anomalous and s.contributors[0]["feature"] == "moving mean"


def test_walk_forward_uses_only_earlier_points() -> None:
    t = np.arange(1500) * 300.0
    x = _noise(1500)
    x[1200:1210] += 60
    full = anomaly.walk_forward(t, x, refit_s=3600)
    # Change the future: the past scores must not move.
    y = x.copy()
    y[1100:] = 500.0
    cut = anomaly.walk_forward(t, y, refit_s=3600)
    assert full[:1100] == cut[:1100]
    # Before the first model, nothing is scored.
    assert all(s == (0.0, False, False) for s in full[:anomaly.MIN_TRAIN])
    # The injected burst is one episode starting at its onset.
    onsets = [i for i, (_s, _a, onset) in enumerate(full) if onset]
    assert 1200 in onsets
    assert not any(1200 < i < 1210 for i in onsets)


def test_isolation_forest_names_the_feature_that_moved() -> None:
    rng = np.random.default_rng(3)
    m = np.column_stack([rng.normal(100, 5, 1000), rng.normal(20, 2, 1000), rng.normal(1, 0.1, 1000)])
    model = anomaly.load_iforest(anomaly.fit_iforest(m, ["tps", "connections", "mean_ms"], "high"))
    normal, spike, storm = anomaly.score_iforest(
        model, np.array([[100, 20, 1.0], [100, 95, 1.0], [100, 95, 5.0]]))
    assert not normal.anomalous
    assert spike.score > normal.score and spike.contributors[0]["feature"] == "connections"
    # A forest's score saturates: one feature far out of range (37 sd) only comes near the
    # threshold; two together cross it. (Why the per-metric envelope is the default.)
    assert storm.anomalous
    assert {c["feature"] for c in storm.contributors[:2]} == {"connections", "mean_ms"}


def test_overridden_settings_reach_the_model_and_the_walk_forward() -> None:
    t = np.arange(1500) * 300.0
    x = _noise(1500)
    x[1200:1230] += 5  # a shift the 12-sample mean sees sooner than the 36-sample one
    model = anomaly.fit_envelope(x[:1000], "medium", {"margin": 0.3, "mean_window": 12})
    assert (model["margin"], model["mean_margin"], model["mean_window"]) == (0.3, 0.5, 12)
    short = anomaly.walk_forward(t, x, overrides={"mean_window": 12})
    default = anomaly.walk_forward(t, x)
    first = [next(i for i, (_s, a, _o) in enumerate(r) if a and i >= 1200) for r in (short, default)]
    assert 1200 <= first[0] < first[1]
    for bad, message in (({"spread": 1}, "expected one of"), ({"margin": 0}, "greater than 0"),
                         ({"mean_window": 2.5}, "whole number")):
        with pytest.raises(ValueError, match=message):
            anomaly.thresholds("medium", bad)
