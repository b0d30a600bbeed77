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


def _daily(days: int, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """5-minute samples of a daily cycle (peak at 06:00 UTC) with noise."""
    t = np.arange(days * 288) * 300.0
    noise = np.random.default_rng(seed).normal(0, 2, len(t))
    return t, 50 + 30 * np.sin(2 * np.pi * t / anomaly.DAY_S) + noise


def test_a_day_out_of_shape_is_flagged_through_the_daily_profile() -> None:
    t, x = _daily(10)
    # Day 8 keeps its level through its peak hours: every value inside the week's range.
    flat = (t >= 8 * anomaly.DAY_S + 3 * 3600) & (t < 8 * anomaly.DAY_S + 9 * 3600)
    x[flat] = 50 + np.random.default_rng(3).normal(0, 2, flat.sum())
    result = anomaly.walk_forward(t, x)
    onsets = [t[i] for i, (_s, _a, flagged) in enumerate(result) if flagged]
    assert onsets and all(flat[np.searchsorted(t, o)] for o in onsets), onsets
    # The same series with the profile's channel off (no timestamps): nothing at all.
    model = anomaly.fit_envelope(x[:7 * 288])
    assert "season" not in model
    assert not any(anomaly.score_envelope(model, x[i - 35:i + 1]).anomalous for i in np.flatnonzero(flat))
    # With timestamps the model holds the hourly medians; the channel names itself.
    model = anomaly.fit_envelope(x[:7 * 288], ts=t[:7 * 288])
    assert model["season"]["explained"] > 0.9
    assert model["season"]["profile"][6] == pytest.approx(80, abs=1.5)
    i = int(np.flatnonzero(flat)[-1])
    s = anomaly.score_envelope(model, x[i - 35:i + 1], t[i - 35:i + 1])
    assert s.anomalous and s.contributors[0]["feature"] == "time of day"
    assert model["value"]["min"] < s.observed < model["value"]["max"]
    # The expected range is the hour's, which the observed value is well outside.
    hour = int(t[i] % anomaly.DAY_S // 3600)
    assert s.expected_low < model["season"]["profile"][hour] < s.expected_high
    assert s.expected_high - s.expected_low < 20 and not s.expected_low <= s.observed <= s.expected_high


def test_a_weekly_rhythm_is_flagged_at_its_first_weekend_only() -> None:
    # Weekends swing half as far: the profile (of weekdays mostly) is on, and a weekend
    # is new only until the training window holds one.
    t = np.arange(28 * 288) * 300.0
    weekend = (t // anomaly.DAY_S).astype(int) % 7 >= 5
    noise = np.random.default_rng(1).normal(0, 2, len(t))
    x = 50 + np.where(weekend, 15, 30) * np.sin(2 * np.pi * t / anomaly.DAY_S) + noise
    assert "season" in anomaly.fit_envelope(x[-2016:], ts=t[-2016:])
    days = {int(t[i] // anomaly.DAY_S) for i, (_s, _a, flagged) in enumerate(anomaly.walk_forward(t, x))
            if flagged}
    assert days == {5}, days


def _office_weeks(weeks: int, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """15-minute samples from a Monday 00:00 UTC: 500 from 8:00 to 18:00 on weekdays, 100
    at night, 120 all weekend, with noise."""
    t = (np.arange(weeks * 7 * 96) * 900.0) + 4 * anomaly.DAY_S  # 1970-01-05 was a Monday
    weekday = ((t - 4 * anomaly.DAY_S) // anomaly.DAY_S).astype(int) % 7 < 5
    busy = weekday & (t % anomaly.DAY_S >= 8 * 3600) & (t % anomaly.DAY_S < 18 * 3600)
    x = np.where(busy, 500.0, np.where(weekday, 100.0, 120.0))
    return t, x + np.random.default_rng(seed).normal(0, 20, len(t))


def test_a_weekday_that_looks_like_a_sunday_is_flagged_through_the_weekly_profile() -> None:
    """Office load on weekdays, quiet weekends; on the Monday of the fifth week the load
    stays at its weekend level (the application is down). Every value is inside the
    window's range, and the daily profile has met a weekend's departures every week:
    only the weekly profile, taken once the 28-day window spans three weeks, sees it."""
    t, x = _office_weeks(5)
    outage = (t >= t[0] + 28 * anomaly.DAY_S + 8 * 3600) & (t < t[0] + 28 * anomaly.DAY_S + 18 * 3600)
    x[outage] = 120 + np.random.default_rng(5).normal(0, 20, outage.sum())
    week4 = slice(0, 28 * 96)
    model = anomaly.fit_envelope(x[week4], ts=t[week4])
    assert len(model["season"]["profile"]) == 168 and model["season"]["explained"] > 0.95
    assert model["season"]["profile"][8] == pytest.approx(500, abs=20)  # Monday 08:00
    assert model["season"]["profile"][6 * 24 + 8] == pytest.approx(120, abs=20)  # Sunday 08:00
    result = anomaly.walk_forward(t, x, window_s=28 * anomaly.DAY_S)
    # The first weekend is new to the models of the first week; after it, only the outage.
    onsets = [i for i, (_s, _a, flagged) in enumerate(result) if flagged and t[i] >= t[0] + 7 * anomaly.DAY_S]
    assert onsets and all(outage[i] for i in onsets), [t[i] for i in onsets]
    assert onsets[0] - np.flatnonzero(outage)[0] <= 2  # within two samples of the onset
    # With the daily profile alone (a window of less than three weeks), the outage is
    # a weekend's departure, which the window holds: nothing is flagged.
    daily = anomaly.fit_envelope(x[7 * 96:week4.stop], ts=t[7 * 96:week4.stop])
    assert len(daily["season"]["profile"]) == 24
    i = int(np.flatnonzero(outage)[-1])
    assert not any(anomaly.score_envelope(daily, x[j - 35:j + 1], t[j - 35:j + 1]).anomalous
                   for j in np.flatnonzero(outage))
    s = anomaly.score_envelope(model, x[i - 35:i + 1], t[i - 35:i + 1])
    assert s.anomalous and s.contributors[0]["feature"] == "time of day"
    assert s.expected_low > s.observed  # Monday's hour is expected far above a Sunday's


def test_the_weekly_profile_needs_to_explain_half_of_what_the_daily_one_leaves() -> None:
    """The same day every day: the weekly medians fit the noise a little better than the
    daily ones, never by half; the daily profile stays."""
    t, x = _daily(28)
    model = anomaly.fit_envelope(x, ts=t)
    assert len(model["season"]["profile"]) == 24
    # Weekends at half the swing: the weekly profile is taken from three weeks on.
    weekend = ((t // anomaly.DAY_S).astype(int) + 3) % 7 >= 5  # day 0 was a Thursday
    y = 50 + np.where(weekend, 5, 30) * np.sin(2 * np.pi * t / anomaly.DAY_S)
    y += np.random.default_rng(6).normal(0, 2, len(t))
    assert len(anomaly.fit_envelope(y[:21 * 288 - 1], ts=t[:21 * 288 - 1])["season"]["profile"]) == 24
    assert len(anomaly.fit_envelope(y[:21 * 288 + 1], ts=t[:21 * 288 + 1])["season"]["profile"]) == 168
    got = anomaly.hour_of_week(np.array([4 * anomaly.DAY_S, 10 * anomaly.DAY_S + 3600 * 23.5, 0.0]))
    assert got.tolist() == [0, 6 * 24 + 23, 3 * 24]  # Monday 00:00, Sunday 23:30, Thursday 00:00


def test_no_daily_profile_without_one_or_without_three_days() -> None:
    t = np.arange(10 * 288) * 300.0
    assert "season" not in anomaly.fit_envelope(_noise(len(t)), ts=t)  # no daily cycle
    t, x = _daily(4)
    assert "season" not in anomaly.fit_envelope(x[:864], ts=t[:864])  # 5 minutes short of 3 days
    assert "season" in anomaly.fit_envelope(x[:865], ts=t[:865])
    # A window missing an hour of the day (here 02:00-03:00 every day) has no profile.
    hole = ((t % anomaly.DAY_S) // 3600) == 2
    assert "season" not in anomaly.fit_envelope(x[~hole], ts=t[~hole])


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


def test_an_episode_is_reported_again_when_its_severity_rises() -> None:
    """A small excursion, then within the same episode a far larger one: reported at the
    start (info) and again where it turns critical, as alerting notifies a raised level."""
    t = np.arange(1500) * 300.0
    x = _noise(1500)
    top = x[:1100].max()
    x[1100] = top + 2.0  # just beyond the range and its margin: an info-level start
    x[1120] = top + 200  # 20 samples later, well inside the 72 quiet ones
    scores = anomaly.walk_forward(t, x)
    assert 1 <= scores[1100][0] < 2 and scores[1120][0] >= 4
    assert [i for i, (_s, _a, f) in enumerate(scores) if f and i >= 1000] == [1100, 1120]
    # Without the second excursion the episode is reported once.
    x[1120] = x[1119]
    assert [i for i, (_s, _a, f) in enumerate(anomaly.walk_forward(t, x)) if f and i >= 1000] == [1100]
    assert [anomaly.severity(*a) for a in ((1.0, 1), (1.9, 9), (1.9, 10), (2.0, 1), (4.0, 1))] == \
        ["info", "info", "warning", "warning", "critical"]


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


# ----------------------------------------------------------------- Isolation Forest without pickle

def _fitted(nf: int, n: int, contamination: float | str, max_features: float = 1.0,
            seed: int = 0) -> tuple[np.ndarray, object, object]:
    """Training rows of very unequal scales, and the scaler and forest fit_iforest fits on them."""
    from sklearn.ensemble import IsolationForest
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed + 100 * nf + n)
    m = rng.normal(5, 3, (n, nf)) * rng.uniform(0.01, 1000, nf)
    scaler = StandardScaler().fit(m)
    forest = IsolationForest(n_estimators=100, max_samples=min(256, n), contamination=contamination,
                             max_features=max_features, random_state=seed).fit(scaler.transform(m))
    return m, scaler, forest


def _probes(m: np.ndarray, seed: int = 7) -> np.ndarray:
    """The training rows, rows near and far outside them, and rows at +-1e12 and 0."""
    rng = np.random.default_rng(seed)
    lo, hi = m.min(axis=0), m.max(axis=0)
    width = hi - lo
    near = rng.uniform(lo - width, hi + width, (300, m.shape[1]))
    far = rng.uniform(-1e6, 1e6, (50, m.shape[1])) * width
    edges = np.vstack([np.full(m.shape[1], 1e12), np.full(m.shape[1], -1e12), np.zeros(m.shape[1])])
    return np.vstack([m, near, far, edges])


@pytest.mark.parametrize("nf", [1, 3, 12])
@pytest.mark.parametrize("n", [50, 255, 257, 2000])
@pytest.mark.parametrize("contamination", [0.002, 0.01, "auto"])
def test_flattened_forest_scores_as_sklearn(nf: int, n: int, contamination: float | str) -> None:
    from perfmon_py import forest

    m, scaler, fitted = _fitted(nf, n, contamination)
    model = forest.loads(forest.dumps(forest.flatten(scaler, fitted, [f"f{j}" for j in range(nf)],
                                                     m[0], m[0], m[0], n)))
    x = _probes(m)
    expected = fitted.score_samples(scaler.transform(x))
    got = forest.score_samples(model, forest.scale(model, x))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert model["offset"] == fitted.offset_ and model["max_samples"] == fitted.max_samples_
    # Scaled rows at the trees' thresholds, and one float64 step either side: the trees
    # compare float32 values, so these go where float32 sends them.
    at = _at_thresholds(fitted, scaler.transform(m))
    np.testing.assert_allclose(forest.score_samples(model, at), fitted.score_samples(at),
                               rtol=0, atol=1e-12)


def _at_thresholds(fitted: object, scaled: np.ndarray, trees: int = 5) -> np.ndarray:
    rows = []
    for estimator in fitted.estimators_[:trees]:
        tree = estimator.tree_
        for node in np.flatnonzero(tree.children_left >= 0):
            t = tree.threshold[node]
            for value in (np.nextafter(t, -np.inf), t, np.nextafter(t, np.inf)):
                row = scaled[node % len(scaled)].copy()
                row[tree.feature[node]] = value
                rows.append(row)
    return np.array(rows)


@pytest.mark.parametrize("max_features", [0.5, 2])
def test_flattened_forest_maps_a_tree_s_feature_subset(max_features: float) -> None:
    # fit_iforest uses every feature; a forest drawing a subset per tree must map each
    # tree's features back to X's columns (estimators_features_), as sklearn does.
    from perfmon_py import forest

    m, scaler, fitted = _fitted(6, 600, 0.01, max_features=max_features)
    model = forest.flatten(scaler, fitted, list("abcdef"), m[0], m[0], m[0], 600)
    x = _probes(m)
    np.testing.assert_allclose(forest.score_samples(model, forest.scale(model, x)),
                               fitted.score_samples(scaler.transform(x)), rtol=0, atol=1e-12)


def test_average_path_length_is_sklearn_s() -> None:
    from sklearn.ensemble._iforest import _average_path_length

    from perfmon_py import forest

    n = np.arange(0, 5000)
    np.testing.assert_array_equal(forest.average_path_length(n), _average_path_length(n))


def test_fit_iforest_stores_arrays_and_scores_as_sklearn() -> None:
    rng = np.random.default_rng(5)
    m = np.column_stack([rng.normal(100, 5, 800), rng.normal(20, 2, 800), np.full(800, 3.0)])
    blob = anomaly.fit_iforest(m, ["tps", "connections", "flat"], "high")
    assert blob[:2] == b"PK"  # an npz archive: arrays only, loaded with allow_pickle=False
    with np.load(__import__("io").BytesIO(blob), allow_pickle=False) as archive:
        assert all(archive[k].dtype != object for k in archive.files)
    model = anomaly.load(blob)
    assert model["names"] == ["tps", "connections", "flat"] and model["n"] == 800
    # The same fit by sklearn (fit_iforest's parameters and seed) scores the same.
    from sklearn.ensemble import IsolationForest
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(m)
    scaler.scale_ = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    fitted = IsolationForest(n_estimators=100, max_samples=256, contamination=0.01,
                             random_state=0).fit(scaler.transform(m))
    x = _probes(m)
    scores = anomaly.score_iforest(model, x)
    expected = fitted.score_samples(scaler.transform(x)) / fitted.offset_
    np.testing.assert_allclose([s.score for s in scores], expected, rtol=0, atol=1e-12)
    assert [s.anomalous for s in scores] == list(expected >= 1.0)
    # Round trip: the archive of the loaded model is the same model.
    again = anomaly.load(anomaly.forest_arrays.dumps(model))
    for key, value in model.items():
        np.testing.assert_array_equal(np.asarray(again[key]), np.asarray(value))


def test_loading_and_scoring_a_forest_imports_neither_sklearn_nor_pickle_loads(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    rng = np.random.default_rng(2)
    (tmp_path / "model.npz").write_bytes(anomaly.fit(
        "isolation_forest", rng.normal(50, 2, 1000)))
    plpython = Path(anomaly.__file__).resolve().parents[1]
    script = (
        "import sys, pickle\n"
        "pickle.loads = pickle.load = None\n"
        f"sys.path.insert(0, {str(plpython)!r})\n"
        "from perfmon_py import anomaly\n"
        f"model = anomaly.load(open({str(tmp_path / 'model.npz')!r}, 'rb').read())\n"
        "print(anomaly.score(model, [50.0] * 40 + [500.0]).anomalous, 'sklearn' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


def test_a_pickled_forest_is_refused_not_unpickled() -> None:
    import pickle

    blob = pickle.dumps({"algorithm": "isolation_forest", "forest": None})
    with pytest.raises(ValueError, match=r"pickle.*train_anomaly_models\(true\)"):
        anomaly.load(blob)
