"""Anomaly detectors run inside PostgreSQL (PL/Python), importable outside it for tests.

Three detectors, each a pair ``fit(history) -> model`` / ``score(model, recent) -> Score``
so that a model is trained once (``perfmon.train_anomaly_models()``), stored, and every
new sample is scored without retraining (``perfmon.score_anomalies()``):

* ``envelope`` (the default, chosen by the NAB evaluation in docs/anomalies.md): a value
  is anomalous when it leaves the range the metric covered in its training window by more
  than a margin of its robust spread (the 5th-95th percentile distance), either itself or
  as a moving mean over the last ``MEAN_WINDOW`` samples (a sustained shift too small for
  one sample to show); and, for a metric that follows a daily (or weekly) profile, when
  that moving mean taken from the profile's hourly medians leaves the range it covered in
  training (a day that departs from the usual shape of a day, or a Monday that looks like
  a Sunday, without leaving the range of the window).
  The model is a few numbers (JSON); perfmon's SQL fallback fits and scores the same
  model without PL/Python.
* ``robust_zscore``: distance from the training median in robust standard deviations
  (1.4826 MAD, floored by the IQR).
* ``isolation_forest``: scikit-learn's IsolationForest over StandardScaler-scaled
  vectors (several metrics at one sample, or one metric's value, moving mean and change);
  stored as numpy arrays and scored without scikit-learn (perfmon_py.forest).

Every score is normalised so that 1 is the threshold: ``score >= 1`` is anomalous.
``walk_forward`` is the backtest: each point is scored by the model fitted on points
strictly before the last refit, refitting every ``refit_s`` seconds, exactly as the
schedule does in production; consecutive anomalous points form one episode, reported at
its first point and again where its severity rises (``flagged``), as perfmon.anomalies
shows it appear and worsen and alerting notifies a raised level.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from perfmon_py import forest as forest_arrays

ALGORITHMS = ("envelope", "robust_zscore", "isolation_forest")
# Samples of the moving mean the envelope also watches (3 hours at NAB's 5 minutes).
MEAN_WINDOW = 36
# An episode ends after this many consecutive normal samples.
EPISODE_QUIET_SAMPLES = 72
# An episode's severity from its peak score and anomalous samples so far: the rule of
# the view perfmon.anomalies (perfmon.anomaly_severity(), kept equal by a test).
SEVERITY_CRITICAL_SCORE = 4.0
SEVERITY_WARNING_SCORE = 2.0
SEVERITY_WARNING_SAMPLES = 10
SEVERITIES = ("info", "warning", "critical")
# The time-of-day channel of the envelope. A metric follows a daily profile when the
# medians of its training values per hour of the day (on the clocks of
# anomaly_detection.timezone, UTC by default) explain at least
# SEASON_MIN_EXPLAINED of their variance, over a window of at least SEASON_MIN_PERIODS
# days (each hour's median then comes from 3 days or more) that holds every hour. A
# weekly profile (the medians per hour of the week) replaces it when it follows by the
# same rules, over SEASON_MIN_PERIODS weeks, and explains at least SEASON_MIN_EXPLAINED
# of what the daily profile leaves. All fixed a priori (half the variance; the fewest
# periods for a median that one odd period cannot set), not tuned: docs/anomalies.md.
DAY_S = 86400
WEEK_S = 7 * DAY_S
SEASON_BIN_S = 3600
SEASON_MIN_PERIODS = 3
SEASON_MIN_EXPLAINED = 0.5
# Fewest training samples for a model (a day at NAB's 5-minute interval) ...
MIN_TRAIN = 288
# ... unless the series is too sparse for its training window to ever hold that many
# (hourly samples: 168 in 7 days): then half of what the window holds at the series'
# mean interval, but never fewer than this. See enough_to_train().
MIN_TRAIN_FLOOR = 30

# Sensitivity -> thresholds. Envelope margins are in robust spreads beyond the
# training range; zscore in robust standard deviations; contamination is the share
# of training vectors Isolation Forest treats as outliers. Where each value comes
# from (and which were chosen on the NAB series) is in docs/anomalies.md; the SQL
# mirror is perfmon.anomaly_settings(), kept equal by tests/test_anomaly.py.
SENSITIVITY: dict[str, dict[str, float]] = {
    "low": {"margin": 0.5, "mean_margin": 1.0, "z": 9.0, "contamination": 0.002},
    "medium": {"margin": 0.2, "mean_margin": 0.5, "z": 6.0, "contamination": 0.005},
    "high": {"margin": 0.1, "mean_margin": 0.25, "z": 4.0, "contamination": 0.01},
}
# Settings a backtest may override (perfmon.anomaly_backtest(..., params)), to
# evaluate other values on the production path; production uses SENSITIVITY.
OVERRIDABLE = ("margin", "mean_margin", "mean_window", "z", "contamination")


@dataclass
class Score:
    score: float
    anomalous: bool
    observed: float | None
    expected_low: float | None
    expected_high: float | None
    contributors: list[dict[str, Any]] = field(default_factory=list)


def thresholds(sensitivity: str, overrides: dict[str, float] | None = None) -> dict[str, float]:
    """The settings of a sensitivity (and the moving mean's window and the time-of-day
    channel's conditions, the same for all), with overrides applied."""
    if sensitivity not in SENSITIVITY:
        raise ValueError(f"sensitivity {sensitivity!r}: expected one of {', '.join(SENSITIVITY)}")
    out = {**SENSITIVITY[sensitivity], "mean_window": MEAN_WINDOW,
           "season_min_periods": SEASON_MIN_PERIODS, "season_min_explained": SEASON_MIN_EXPLAINED}
    for key, value in (overrides or {}).items():
        if key not in OVERRIDABLE:
            raise ValueError(f"setting {key!r}: expected one of {', '.join(OVERRIDABLE)}")
        if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
            raise ValueError(f"setting {key!r} = {value!r}: expected a number greater than 0")
        if key == "mean_window" and value != int(value):
            raise ValueError(f"setting 'mean_window' = {value!r}: expected a whole number of samples")
        out[key] = float(value)
    out["mean_window"] = int(out["mean_window"])
    return out


def enough_to_train(n: int, span_s: float, window_s: float, min_train: int = MIN_TRAIN) -> bool:
    """Whether n samples spread over span_s seconds are enough for a model on a window_s window."""
    if n >= min_train:
        return True
    if n < MIN_TRAIN_FLOOR or span_s <= 0:
        return False
    return n >= 0.5 * window_s * (n - 1) / span_s


def _finite(values: Sequence[float] | np.ndarray,
            ts: Sequence[float] | np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The finite values, and their timestamps when given."""
    x = np.asarray(values, dtype=float)
    keep = np.isfinite(x)
    return x[keep], None if ts is None else np.asarray(ts, dtype=float)[keep]


def _clean(values: Sequence[float] | np.ndarray) -> np.ndarray:
    return _finite(values, None)[0]


def _moving_mean(x: np.ndarray, w: int = MEAN_WINDOW) -> np.ndarray:
    """Mean of each point and up to w-1 points before it."""
    c = np.concatenate(([0.0], np.cumsum(x)))
    idx = np.arange(len(x))
    lo = np.maximum(0, idx - w + 1)
    return (c[idx + 1] - c[lo]) / (idx + 1 - lo)


# ----------------------------------------------------------------- envelope

def _band(x: np.ndarray, level: float | None = None) -> dict[str, float]:
    """Range and spread of x; the spread's floor is 1% of level (default: x's median)."""
    p5, p95, med = np.quantile(x, [0.05, 0.95, 0.5])
    # A flat metric still gets a spread: 1% of its level (or a tiny absolute floor).
    spread = max(float(p95 - p5), abs(float(med if level is None else level)) * 0.01, 1e-9)
    return {"min": float(x.min()), "max": float(x.max()), "spread": spread}


def utc_offsets(ts: np.ndarray, zone: str) -> np.ndarray:
    """The offset from UTC, in seconds, in force in an IANA time zone at each of epoch seconds ts."""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"time zone {zone!r}: not a time zone name "
                         "(expected an IANA name such as Europe/Berlin, or UTC)") from exc
    return np.array([datetime.fromtimestamp(s, tz).utcoffset().total_seconds() for s in ts.tolist()])


def _local(ts: Sequence[float] | np.ndarray, zone: str) -> np.ndarray:
    t = np.asarray(ts, dtype=float)
    return t if zone == "UTC" else t + utc_offsets(t, zone)


def _day_hour(local: np.ndarray) -> np.ndarray:
    return ((local % DAY_S) // SEASON_BIN_S).astype(int)


def _week_hour(local: np.ndarray) -> np.ndarray:
    return (((local + 3 * DAY_S) % WEEK_S) // SEASON_BIN_S).astype(int)  # the epoch began on a Thursday


def hour_of_day(ts: Sequence[float] | np.ndarray, zone: str = "UTC") -> np.ndarray:
    """The hour of the day (0-23) of epoch seconds on the clocks of a time zone
    (anomaly_detection.timezone): perfmon.hour_of_day() in SQL."""
    return _day_hour(_local(ts, zone))


def hour_of_week(ts: Sequence[float] | np.ndarray, zone: str = "UTC") -> np.ndarray:
    """The hour of the week (0-167, from Monday 00:00) of epoch seconds on the clocks of a
    time zone: perfmon.hour_of_week() in SQL."""
    return _week_hour(_local(ts, zone))


# The profiles, shortest period first: bins per period, and the bin of a local time (the
# zone's offsets, a Python call per timestamp, are taken once for both).
PROFILES = ((DAY_S // SEASON_BIN_S, DAY_S, _day_hour), (WEEK_S // SEASON_BIN_S, WEEK_S, _week_hour))


def profile_bins(profile: Sequence[float], ts: Sequence[float] | np.ndarray, zone: str) -> np.ndarray:
    """The bins of times ts in a profile: hours of the day, or of the week (168 medians)."""
    return hour_of_week(ts, zone) if len(profile) == WEEK_S // SEASON_BIN_S else hour_of_day(ts, zone)


def _medians(x: np.ndarray, of: np.ndarray, bins: int) -> np.ndarray:
    """The median of the values of each bin 0..bins-1 (none empty), sorted once: a median
    call per bin cost most of a backtest's time with 168 bins."""
    ordered = x[np.lexsort((x, of))]
    counts = np.bincount(of, minlength=bins)
    starts = np.cumsum(counts) - counts
    return (ordered[starts + (counts - 1) // 2] + ordered[starts + counts // 2]) / 2


def fit_season(ts: np.ndarray, x: np.ndarray, settings: dict[str, float],
               zone: str = "UTC") -> dict[str, Any] | None:
    """The profile of a training window (medians per hour of the day, or of the week, on the
    clocks of zone) and the range of the moving mean of the values' departures from it;
    None when the metric follows neither.

    A profile follows when the window spans season_min_periods of its periods, holds
    each of its bins, and its medians explain season_min_explained of the variance; the
    weekly one is taken when it also explains that share of what the daily one leaves."""
    variance = float(np.var(x)) if len(x) >= 2 else 0.0
    if variance <= 0 or ts[-1] - ts[0] < settings["season_min_periods"] * DAY_S:
        return None
    local = _local(ts, zone)
    chosen = None
    for bins, period_s, bin_of in PROFILES:
        if ts[-1] - ts[0] < settings["season_min_periods"] * period_s:
            break
        of = bin_of(local)
        if len(np.unique(of)) < bins:
            break
        profile = _medians(x, of, bins)
        departure = x - profile[of]
        left = float(np.var(departure))
        if 1.0 - left / variance < settings["season_min_explained"]:
            continue
        if chosen is not None and left > (1.0 - settings["season_min_explained"]) * chosen[2]:
            continue
        chosen = (profile, departure, left)
    if chosen is None:
        return None
    profile, departure, left = chosen
    return {"profile": profile.tolist(), "explained": 1.0 - left / variance, "zone": zone,
            "mean": _band(_moving_mean(departure, int(settings["mean_window"])), level=float(np.median(x)))}


def fit_envelope(values: Sequence[float] | np.ndarray, sensitivity: str = "medium",
                 overrides: dict[str, float] | None = None,
                 ts: Sequence[float] | np.ndarray | None = None, zone: str = "UTC") -> dict[str, Any]:
    """ts: the values' epoch seconds, for the time-of-day channel (none without them), whose
    hours are those of the clocks of zone."""
    x, t_x = _finite(values, ts)
    if len(x) < 2:
        raise ValueError("the envelope needs at least 2 training values")
    t = thresholds(sensitivity, overrides)
    model = {"algorithm": "envelope", "n": len(x), "value": _band(x),
             "mean": _band(_moving_mean(x, t["mean_window"])), "margin": t["margin"],
             "mean_margin": t["mean_margin"], "mean_window": t["mean_window"]}
    season = None if t_x is None else fit_season(t_x, x, t, zone)
    if season is not None:
        model["season"] = season
    return model


def _excess(v: float, band: dict[str, float], margin: float) -> tuple[float, float, float]:
    """(score, low, high): score 1 at min/max -/+ margin spreads, 0 inside the range."""
    low = band["min"] - margin * band["spread"]
    high = band["max"] + margin * band["spread"]
    beyond = max(v - band["max"], band["min"] - v, 0.0) / band["spread"]
    return beyond / margin if margin > 0 else float(beyond > 0), low, high


def score_envelope(model: dict[str, Any], recent: Sequence[float],
                   ts: Sequence[float] | np.ndarray | None = None) -> Score:
    """recent: the metric's last values, oldest first, ending with the one scored;
    ts: their epoch seconds (the time-of-day channel needs them). With fewer than the
    mean's window of values (the first after a gap in sampling) only the value is scored."""
    w = model.get("mean_window", MEAN_WINDOW)
    full = len(recent) >= w
    x, t_x = _finite(recent, ts)
    if not len(x):
        return Score(0.0, False, None, None, None)
    v = float(x[-1])
    s_value, low, high = _excess(v, model["value"], model["margin"])
    channels = {"value": s_value}
    if full:
        channels["moving mean"] = _excess(float(x[-w:].mean()), model["mean"], model["mean_margin"])[0]
    season = model.get("season")
    if full and season is not None and t_x is not None:
        profile = np.asarray(season["profile"])
        bins = profile_bins(profile, t_x[-w:], season.get("zone", "UTC"))  # older models: UTC
        departure = x[-w:] - profile[bins]
        s_season, d_low, d_high = _excess(float(departure.mean()), season["mean"], model["mean_margin"])
        channels["time of day"] = s_season
    channel = max(channels, key=lambda c: channels[c])  # the first of equal scores
    score = channels[channel]
    if channel == "time of day":
        # What is expected at this hour: its median, moved as far as the departures'
        # moving mean may go.
        usual = float(profile[bins[-1]])
        low, high = usual + d_low, usual + d_high
    return Score(score, score >= 1.0, v, low, high,
                 [{"feature": channel, "score": round(score, 3)}])


# ----------------------------------------------------------------- robust z-score

def fit_zscore(values: Sequence[float] | np.ndarray, sensitivity: str = "medium",
               overrides: dict[str, float] | None = None) -> dict[str, Any]:
    x = _clean(values)
    if len(x) < 2:
        raise ValueError("the z-score needs at least 2 training values")
    med = float(np.median(x))
    q1, q3 = np.quantile(x, [0.25, 0.75])
    scale = max(1.4826 * float(np.median(np.abs(x - med))), float(q3 - q1) / 1.349,
                abs(med) * 0.01, 1e-9)
    return {"algorithm": "robust_zscore", "n": len(x), "median": med, "scale": scale,
            "z": thresholds(sensitivity, overrides)["z"]}


def score_zscore(model: dict[str, Any], recent: Sequence[float]) -> Score:
    x = _clean(recent)
    if not len(x):
        return Score(0.0, False, None, None, None)
    v = float(x[-1])
    z = abs(v - model["median"]) / model["scale"]
    width = model["z"] * model["scale"]
    score = z / model["z"]
    return Score(score, score >= 1.0, v, model["median"] - width, model["median"] + width,
                 [{"feature": "value", "z": round(z, 2)}])


# ----------------------------------------------------------------- isolation forest

def series_vectors(x: np.ndarray) -> np.ndarray:
    """One metric as vectors: value, moving mean, change since the previous sample."""
    diff = np.diff(x, prepend=x[0]) if len(x) else x
    return np.column_stack([x, _moving_mean(x), diff])


def fit_iforest(matrix: np.ndarray, names: Sequence[str], sensitivity: str = "medium",
                seed: int = 0, overrides: dict[str, float] | None = None) -> bytes:
    """The scaler and forest fitted on the rows of matrix, as perfmon_py.forest's archive."""
    from sklearn.ensemble import IsolationForest
    from sklearn.preprocessing import StandardScaler

    m = np.asarray(matrix, dtype=float)
    m = m[np.all(np.isfinite(m), axis=1)]
    if len(m) < 2:
        raise ValueError("Isolation Forest needs at least 2 training vectors")
    scaler = StandardScaler().fit(m)
    # A feature with no variance would scale to NaN/inf: give it a unit scale.
    scaler.scale_ = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    forest = IsolationForest(n_estimators=100, max_samples=min(256, len(m)),
                             contamination=thresholds(sensitivity, overrides)["contamination"],
                             random_state=seed).fit(scaler.transform(m))
    return forest_arrays.dumps(forest_arrays.flatten(
        scaler, forest, list(names), np.median(m, axis=0), np.quantile(m, 0.005, axis=0),
        np.quantile(m, 0.995, axis=0), len(m)))


def load_iforest(blob: bytes) -> dict[str, Any]:
    data = bytes(blob)
    if data[:1] == b"\x80":
        # Earlier versions pickled the sklearn objects; unpickling runs code, so never.
        raise ValueError("a pickled Isolation Forest model (stored by pgperfmon 0.1): pickles "
                         "are no longer loaded; retrain with SELECT perfmon.train_anomaly_models(true)")
    return forest_arrays.loads(data)


def score_iforest(model: dict[str, Any], vectors: np.ndarray) -> list[Score]:
    m = np.nan_to_num(np.atleast_2d(np.asarray(vectors, dtype=float)))
    scaled = forest_arrays.scale(model, m)
    raw = -forest_arrays.score_samples(model, scaled)  # about 0.5 normal, towards 1 anomalous
    threshold = -model["offset"]
    out = []
    for row, z, s in zip(m, scaled, raw, strict=False):
        order = np.argsort(-np.abs(z))[:3]
        contributors = [{"feature": model["names"][j], "z": round(float(z[j]), 2),
                         "observed": float(row[j])} for j in order]
        score = float(s / threshold)
        out.append(Score(score, score >= 1.0, float(row[0]), float(model["low"][0]),
                         float(model["high"][0]), contributors))
    return out


# ----------------------------------------------------------------- one metric, any detector

def fit(algorithm: str, values: Sequence[float] | np.ndarray, sensitivity: str = "medium",
        overrides: dict[str, float] | None = None, ts: Sequence[float] | np.ndarray | None = None,
        zone: str = "UTC") -> bytes:
    """A serialised single-metric model (JSON bytes, or an npz archive for Isolation Forest);
    ts, the values' epoch seconds, and zone serve the envelope's time-of-day channel."""
    if algorithm == "envelope":
        return json.dumps(fit_envelope(values, sensitivity, overrides, ts, zone)).encode()
    if algorithm == "robust_zscore":
        return json.dumps(fit_zscore(values, sensitivity, overrides)).encode()
    if algorithm == "isolation_forest":
        x = _clean(values)
        return fit_iforest(series_vectors(x), ["value", "moving mean", "change"], sensitivity,
                           overrides=overrides)
    raise ValueError(f"algorithm {algorithm!r}: expected one of {', '.join(ALGORITHMS)}")


def load(blob: bytes) -> dict[str, Any]:
    data = bytes(blob)
    if data[:1] == b"{":
        return json.loads(data)
    return load_iforest(data)


def score(model: dict[str, Any], recent: Sequence[float],
          ts: Sequence[float] | np.ndarray | None = None) -> Score:
    """Score the last of recent (oldest first, at epoch seconds ts) with a loaded
    single-metric model."""
    algorithm = model["algorithm"]
    if algorithm == "envelope":
        return score_envelope(model, recent, ts)
    if algorithm == "robust_zscore":
        return score_zscore(model, recent)
    x = _clean(recent)
    if not len(x):
        return Score(0.0, False, None, None, None)
    return score_iforest(model, series_vectors(x)[-1:])[0]


def severity(peak_score: float, samples: int) -> str:
    """An episode's severity: critical from score 4, warning from 2 or 10 anomalous samples."""
    if peak_score >= SEVERITY_CRITICAL_SCORE:
        return "critical"
    if peak_score >= SEVERITY_WARNING_SCORE or samples >= SEVERITY_WARNING_SAMPLES:
        return "warning"
    return "info"


def walk_forward(ts: Sequence[float], values: Sequence[float], algorithm: str = "envelope",
                 sensitivity: str = "medium", window_s: float = 7 * 86400,
                 refit_s: float = 6 * 3600, min_train: int = MIN_TRAIN,
                 quiet: int = EPISODE_QUIET_SAMPLES,
                 overrides: dict[str, float] | None = None,
                 zone: str = "UTC") -> list[tuple[float, bool, bool]]:
    """(score, anomalous, flagged) for each point, scored only with points before it.

    flagged: the first point of an episode, and a point at which the episode's severity
    rises (info, warning, critical), i.e. where an anomaly is reported new or worse.

    The model is refitted on a clock, every refit_s seconds (the retraining job's
    schedule), from the first point with enough earlier points in its window; each
    refit uses the points of the training window before it, and one whose window
    holds too few is skipped. Points before the first model score 0. Sampled
    irregularly or not, this is the schedule of perfmon.anomaly_backtest_sql().
    overrides replaces settings of the sensitivity (see thresholds()); zone is the time
    zone of the envelope's daily profile.
    """
    w = thresholds(sensitivity, overrides)["mean_window"]
    t = np.asarray(ts, dtype=float)
    x = np.asarray(values, dtype=float)
    n = len(x)
    first = None
    for i in range(n):
        lo = int(np.searchsorted(t, t[i] - window_s))
        if i > lo and enough_to_train(i - lo, t[i - 1] - t[lo], window_s, min_train):
            first = t[i]
            break
    # (index of the first point the model scores, model), in the order of the refits.
    fits: list[tuple[int, dict[str, Any]]] = []
    for k in range(int((t[-1] - first) // refit_s) + 1 if first is not None else 0):
        at = first + k * refit_s
        lo, hi = (int(i) for i in np.searchsorted(t, [at - window_s, at]))
        if hi > lo and enough_to_train(hi - lo, t[hi - 1] - t[lo], window_s, min_train):
            fits.append((hi, load(fit(algorithm, x[lo:hi], sensitivity, overrides, t[lo:hi], zone))))
    scores: list[Score | None] = [None] * n
    # Vectors of a forest use only a point and those before it: scoring a segment
    # between two refits in one call sees no later point.
    vectors = series_vectors(x) if algorithm == "isolation_forest" else None
    for k, (start, model) in enumerate(fits):
        end = fits[k + 1][0] if k + 1 < len(fits) else n
        if end == start:  # refitted again before a new point arrived (a gap in the series)
            continue
        if vectors is not None:
            scores[start:end] = score_iforest(model, vectors[start:end])
        else:
            for i in range(start, end):
                scores[i] = score(model, x[max(0, i - w + 1):i + 1], t[max(0, i - w + 1):i + 1])
    out: list[tuple[float, bool, bool]] = []
    level = -1  # the open episode's severity (an index of SEVERITIES), -1 when none is open
    calm = samples = 0
    peak = 0.0
    for s in scores:
        if s is None:
            out.append((0.0, False, False))
            continue
        flagged = False
        if s.anomalous:
            if level < 0:
                peak, samples = 0.0, 0
            calm = 0
            peak = max(peak, s.score)
            samples += 1
            now = SEVERITIES.index(severity(peak, samples))  # never falls within an episode
            flagged, level = now > level, now
        else:
            calm += 1
            if calm >= quiet:
                level = -1
        out.append((float(s.score), s.anomalous, flagged))
    return out


# ----------------------------------------------------------------- in the database
# The functions below take PL/Python's ``plpy`` (and ``GD``): the thin bodies of
# perfmon.train_anomaly_models_py(), perfmon.score_anomalies_py() and
# perfmon.anomaly_backtest_py() call them.

_SERIES_SQL = """
    SELECT v.feature, v.series, array_agg(extract(epoch FROM v.ts)::float8 ORDER BY v.ts) AS t,
           array_agg(v.value ORDER BY v.ts) AS x, min(v.ts)::text AS t0, max(v.ts)::text AS t1{scorable}
      FROM {source} AS v
     GROUP BY v.feature, v.series"""


def _multi_names(plpy: Any) -> list[str]:
    return [r["name"] for r in plpy.execute(
        "SELECT name FROM perfmon.anomaly_features WHERE enabled AND multi ORDER BY name")]


def _bin_s(plpy: Any) -> float:
    return float(plpy.execute(
        "SELECT perfmon.setting('collection.interval_seconds')::float8 AS s")[0]["s"])


def _pivot(groups: list[dict[str, Any]], names: list[str], bin_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(bins, matrix) of the multi features, aligned on sample intervals."""
    cols: dict[str, dict[float, float]] = {}
    # A feature with one series (one host, one device) joins the vector; several would
    # need one column each and are left to the per-metric detector.
    per_feature: dict[str, int] = {}
    for g in groups:
        per_feature[g["feature"]] = per_feature.get(g["feature"], 0) + 1
    for g in groups:
        if g["feature"] in names and per_feature[g["feature"]] == 1:
            pairs = zip(g["t"], g["x"], strict=False)
            cols[g["feature"]] = {math.floor(t / bin_s) * bin_s: v for t, v in pairs}
    bins = np.array(sorted({b for c in cols.values() for b in c}))
    m = np.full((len(bins), len(names)), np.nan)
    for j, name in enumerate(names):
        col = cols.get(name, {})
        for i, b in enumerate(bins):
            if b in col:
                m[i, j] = col[b]
    return bins, m


def _fill(m: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """A feature missing at a sample (no statements ran, no host sample) counts as typical."""
    return np.where(np.isfinite(m), m, centre)


# The training's one read: the finite values, fitted, and the others, said as
# perfmon.anomaly_non_finite_skipped() says them (reading those apart cost a second pass).
_TRAINING_SQL = """
    SELECT v.feature, v.series,
           array_agg(extract(epoch FROM v.ts)::float8 ORDER BY v.ts) FILTER (WHERE v.finite) AS t,
           array_agg(v.value ORDER BY v.ts) FILTER (WHERE v.finite) AS x,
           (min(v.ts) FILTER (WHERE v.finite))::text AS t0, (max(v.ts) FILTER (WHERE v.finite))::text AS t1,
           CASE WHEN NOT bool_and(v.finite) THEN jsonb_build_object(
               'feature', v.feature, 'series', v.series, 'samples', count(*) FILTER (WHERE NOT v.finite),
               'last_ts', max(v.ts) FILTER (WHERE NOT v.finite),
               'last_value', (array_agg(v.value::text ORDER BY v.ts DESC) FILTER (WHERE NOT v.finite))[1])
           END AS non_finite
      FROM perfmon.anomaly_feature_readings($1, $2) AS v
     GROUP BY v.feature, v.series
     ORDER BY v.feature, v.series"""


def train_models(plpy: Any, detector: str, since: str, until: str, sensitivity: str,
                 zone: str = "UTC") -> dict[str, Any]:
    """Fits and stores the models and deletes those of the series with no value in the window;
    returns {models}, retired (the current models deleted) and non_finite, the values that are not
    finite numbers it skipped (as perfmon.anomaly_non_finite_skipped() gives them), when there were any."""
    read = list(plpy.execute(plpy.prepare(_TRAINING_SQL, ["timestamptz", "timestamptz"]), [since, until]))
    non_finite = [json.loads(r["non_finite"]) for r in read if r["non_finite"] is not None]
    groups = [r for r in read if r["x"] is not None]
    insert = plpy.prepare(
        "INSERT INTO perfmon.anomaly_models (detector, feature, series, features, trained_from, "
        "trained_to, samples, params, model, train_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        ["text", "text", "text", "text[]", "timestamptz", "timestamptz", "int4", "jsonb", "bytea",
         "float4"])
    retire = plpy.prepare(
        "UPDATE perfmon.anomaly_models SET current = false "
        "WHERE current AND detector = $1 AND feature = $2 AND series = $3", ["text", "text", "text"])
    import time

    params = json.dumps({"sensitivity": sensitivity, **thresholds(sensitivity),
                         "mean_window": MEAN_WINDOW, "min_train": MIN_TRAIN, "zone": zone})
    stored = 0
    per_metric = "envelope" if detector == "isolation_forest_multi" else detector
    per_metric = "isolation_forest" if detector == "isolation_forest" else per_metric
    window_s = float(plpy.execute(plpy.prepare(
        "SELECT extract(epoch FROM $2 - $1)::float8 AS s", ["timestamptz", "timestamptz"]),
        [since, until])[0]["s"])
    for g in groups:
        if not enough_to_train(len(g["x"]), g["t"][-1] - g["t"][0], window_s):
            continue
        start = time.perf_counter()
        blob = fit(per_metric, g["x"], sensitivity, ts=g["t"], zone=zone)
        plpy.execute(retire, [per_metric, g["feature"], g["series"]])
        plpy.execute(insert, [per_metric, g["feature"], g["series"], None, g["t0"], g["t1"],
                              len(g["x"]), params, blob, (time.perf_counter() - start) * 1000])
        stored += 1
    if detector in ("isolation_forest", "isolation_forest_multi"):
        names = _multi_names(plpy)
        bins, m = _pivot(groups, names, _bin_s(plpy))
        have = np.isfinite(m).any(axis=0)
        if len(bins) >= MIN_TRAIN and have.any():
            names = [n for n, h in zip(names, have, strict=False) if h]
            m = m[:, have]
            m = _fill(m, np.nanmedian(m, axis=0))
            start = time.perf_counter()
            blob = fit_iforest(m, names, sensitivity)
            plpy.execute(retire, ["isolation_forest_multi", "multi", ""])
            plpy.execute(insert, ["isolation_forest_multi", "multi", "", names,
                                  _iso(bins[0]), _iso(bins[-1]), len(bins), params, blob,
                                  (time.perf_counter() - start) * 1000])
            stored += 1
    # The models of the series with no value in the window (a host removed, a feature
    # disabled) would stay current for ever: perfmon.retire_anomaly_models() deletes them.
    seen = [(g["feature"], g["series"]) for g in groups]
    detectors = [per_metric]
    if detector in ("isolation_forest", "isolation_forest_multi"):
        detectors.append("isolation_forest_multi")
        if have.any():
            seen.append(("multi", ""))
    retired = json.loads(plpy.execute(plpy.prepare(
        "SELECT perfmon.retire_anomaly_models($1, $2, $3) AS r", ["text[]", "text[]", "text[]"]),
        [detectors, [f for f, _ in seen], [s for _, s in seen]])[0]["r"])
    return {"models": stored, **({"retired": retired} if retired else {}),
            **({"non_finite": non_finite} if non_finite else {})}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(float(epoch), timezone.utc).isoformat()


# The session's loaded models (GD[MODEL_CACHE]: model id -> model), and the setting that says
# to perfmon.score_anomalies() that there are some: when PL/Python no longer scores (the
# detector changed to envelope_sql, anomaly detection disabled), score_new never runs again
# to drop them, and it calls perfmon.unload_anomaly_models() instead.
MODEL_CACHE = "perfmon_anomaly_models"
MODELS_LOADED_SETTING = "perfmon.anomaly_models_loaded"


def unload_models(plpy: Any, GD: dict) -> int:
    """Drops the session's loaded models; returns how many there were."""
    n = len(GD.pop(MODEL_CACHE, {}))
    plpy.execute(f"SELECT set_config('{MODELS_LOADED_SETTING}', '', false)")
    return n


def _current_models(plpy: Any, detectors: list[str]) -> dict[tuple[str, str, str], int]:
    """The ids of the current models of the detectors, by (detector, feature, series)."""
    return {(r["detector"], r["feature"], r["series"]): r["model_id"] for r in plpy.execute(plpy.prepare(
        "SELECT model_id, detector, feature, series FROM perfmon.anomaly_models "
        "WHERE current AND detector = ANY ($1)", ["text[]"]), [detectors])}


def _cached_models(plpy: Any, GD: dict, wanted: dict[tuple[str, str, str], int]
                   ) -> dict[tuple[str, str, str], tuple[int, Any]]:
    """The loaded models of wanted (key -> model id), loaded once per session. Only those are
    kept: a long-lived backend (a pool's, or one the agent's schedule reuses) kept every
    model it had loaded while the model stayed current, that of a series no longer sent
    (a host removed, a feature disabled) for ever, and each backend of a pool a copy."""
    cache = GD.setdefault(MODEL_CACHE, {})
    live = set(wanted.values())
    for stale in [k for k in cache if k not in live]:
        del cache[stale]
    missing = [i for i in live if i not in cache]
    if missing:
        for r in plpy.execute(plpy.prepare(
                "SELECT model_id, model FROM perfmon.anomaly_models WHERE model_id = ANY ($1)",
                ["int8[]"]), [missing]):
            cache[r["model_id"]] = load(r["model"])
    if cache:
        # Set at every scoring, not only at a load: a scoring rolled back undoes the setting,
        # not the cache.
        plpy.execute(f"SELECT set_config('{MODELS_LOADED_SETTING}', 'on', false)")
    # A model deleted since its id was read is not scored with (nor kept).
    return {k: (i, cache[i]) for k, i in wanted.items() if i in cache}


def score_new(plpy: Any, GD: dict, detector: str, lookback_s: float) -> list[dict[str, Any]]:
    """Scores of the feature samples of the last lookback_s seconds not scored yet (the newest
    only, the first time): those perfmon.anomaly_scoring_values() calls scorable. The models
    kept loaded are those of the series read now (see _cached_models)."""
    per_metric = "envelope" if detector == "isolation_forest_multi" else detector
    detectors = [per_metric] + (["isolation_forest_multi"] if detector.startswith("isolation_forest") else [])
    current = _current_models(plpy, detectors)
    if not current:
        GD.pop(MODEL_CACHE, None)
        return []
    # Samples before the scorable ones are read too, so that the oldest of a catch-up have
    # a full moving mean like the newest.
    groups = list(plpy.execute(plpy.prepare(_SERIES_SQL.format(
        scorable=", array_agg(v.scorable ORDER BY v.ts) AS scorable",
        source="perfmon.anomaly_scoring_values($1, $2)"), ["text", "int4"]), [per_metric, lookback_s]))
    read = {(per_metric, g["feature"], g["series"]) for g in groups}
    multi_key = ("isolation_forest_multi", "multi", "")
    models = _cached_models(plpy, GD, {k: i for k, i in current.items()
                                       if k in read or (k == multi_key and groups)})
    out: list[dict[str, Any]] = []
    for g in groups:
        key = (per_metric, g["feature"], g["series"])
        if key not in models:
            continue
        model_id, model = models[key]
        t, x = g["t"], g["x"]
        w = int(model.get("mean_window", MEAN_WINDOW))
        for i in (i for i, scorable in enumerate(g["scorable"]) if scorable):
            s = score(model, x[max(0, i - w + 1):i + 1], t[max(0, i - w + 1):i + 1])
            out.append(_row(per_metric, g["feature"], g["series"], t[i], s, model_id))
    multi = models.get(multi_key)
    if multi is not None:
        out.extend(_score_multi(plpy, multi, groups, lookback_s))
    return out


def _score_multi(plpy: Any, multi: tuple[int, Any], groups: list[dict[str, Any]],
                 lookback_s: float) -> list[dict[str, Any]]:
    """The multi-metric forest's scores of the sample intervals (bins) of the last lookback_s
    seconds after the last it scored (the newest only, the first time)."""
    model_id, model = multi
    bins, m = _pivot(groups, model["names"], _bin_s(plpy))
    row = plpy.execute(plpy.prepare(
        "SELECT extract(epoch FROM now())::float8 - $1 AS since, "
        "(SELECT extract(epoch FROM last_ts)::float8 FROM perfmon.state_anomaly_scoring "
        " WHERE detector = 'isolation_forest_multi' AND feature = 'multi' AND series = '') AS last",
        ["float8"]), [lookback_s])[0]
    todo = [len(bins) - 1] if row["last"] is None else [i for i, b in enumerate(bins) if b > row["last"]]
    todo = [i for i in todo if i >= 0 and bins[i] > row["since"]]
    if not todo:
        return []
    return [_row("isolation_forest_multi", "multi", "", bins[i], s, model_id)
            for i, s in zip(todo, score_iforest(model, _fill(m[todo], model["centre"])), strict=False)]


def _row(detector: str, feature: str, series: str, ts: float, s: Score, model_id: int) -> dict[str, Any]:
    return {"detector": detector, "feature": feature, "series": series, "ts": _iso(ts),
            "score": s.score, "observed_value": s.observed, "expected_low": s.expected_low,
            "expected_high": s.expected_high, "contributors": json.dumps(s.contributors),
            "model_id": model_id}


def backtest(plpy: Any, series_id: int, detector: str, sensitivity: str, window_s: float,
             refit_s: float, quiet: int, params: str | None = None,
             zone: str = "UTC") -> list[dict[str, Any]]:
    """Walk-forward scores of one stored series (perfmon.metric_samples), oldest first.

    params: JSON object of settings replacing the sensitivity's (see thresholds());
    zone: the time zone of the envelope's daily profile.
    """
    algorithm = "envelope" if detector == "isolation_forest_multi" else detector
    overrides = json.loads(params) if params else None
    rows = plpy.execute(plpy.prepare(
        "SELECT array_agg(extract(epoch FROM ts)::float8 ORDER BY ts, value) AS t, "
        "array_agg(value ORDER BY ts, value) AS x, array_agg(ts::text ORDER BY ts, value) AS ts "
        "FROM perfmon.metric_samples WHERE series_id = $1", ["int4"]), [series_id])
    t, x, stamps = rows[0]["t"] or [], rows[0]["x"] or [], rows[0]["ts"] or []
    result = walk_forward(t, x, algorithm, sensitivity, window_s, refit_s, MIN_TRAIN, quiet, overrides, zone)
    return [{"ts": ts, "value": v, "score": s, "anomalous": a, "is_anomaly": o}
            for ts, v, (s, a, o) in zip(stamps, x, result, strict=False)]
