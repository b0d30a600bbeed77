"""A fitted Isolation Forest as plain numpy arrays: stored without pickle, scored without sklearn.

A pg_cron job is a fresh backend every interval: importing scikit-learn and unpickling
one (StandardScaler, IsolationForest) per metric took longer than the interval's
budget. Training still uses scikit-learn (``flatten`` reads the fitted objects); the
stored model is an ``np.savez`` archive of arrays only (loaded with
``allow_pickle=False``), and ``score_samples`` walks all trees at once, one numpy step
per depth level, returning what ``IsolationForest.score_samples`` returns for the same
scaled rows (checked against scikit-learn in tests/test_anomaly_unit.py):

* the trees compare float32 values (scikit-learn casts X to float32 before ``apply``):
  thresholds are stored as the largest float32 not above the float64 threshold, which
  sends every float32 value the same way and halves their size;
* a tree sees ``X[:, estimators_features_[t]]`` only when the forest draws a subset of
  the features (``_max_features`` below their number): node features are mapped back
  to the columns of X then, and used as they are otherwise, as scikit-learn does;
* a leaf adds its depth (the root counts 1), plus ``c(n_node_samples)``, minus 1;
  the per-tree sums are added tree after tree in the forest's order, and divided by
  ``n_estimators * c(max_samples_)``.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

FORMAT = 1
# Arrays of the archive (all numeric or unicode: nothing needs pickle to load).
_KEYS = ("format", "algorithm", "names", "mean", "scale", "centre", "low", "high", "n",
         "offset", "max_samples", "denominator", "levels", "roots", "feature", "threshold",
         "left", "right", "leaf")


def average_path_length(n_samples: np.ndarray | list[int]) -> np.ndarray:
    """c(n): the mean path length of an unsuccessful search in a binary tree of n nodes
    (scikit-learn's ``_average_path_length``, the same float operations in the same order)."""
    n = np.asarray(n_samples, dtype=float)
    out = np.zeros(n.shape)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _node_depths(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Depth of every node of one tree, the root counting 1."""
    depth = np.zeros(len(left), dtype=np.int64)
    depth[0] = 1
    stack = [0]
    while stack:
        i = stack.pop()
        if left[i] >= 0:
            depth[left[i]] = depth[right[i]] = depth[i] + 1
            stack += [int(left[i]), int(right[i])]
    return depth


def _float32_at_most(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 <= each threshold: x <= t exactly when x <= it, for float32 x."""
    t32 = threshold.astype(np.float32)
    over = t32.astype(float) > threshold
    t32[over] = np.nextafter(t32[over], np.float32(-np.inf))
    return t32


def flatten(scaler: Any, forest: Any, names: list[str], centre: np.ndarray, low: np.ndarray,
            high: np.ndarray, n: int) -> dict[str, Any]:
    """The model of a fitted StandardScaler and IsolationForest, as arrays (see the module)."""
    n_features = len(scaler.mean_)
    subset = forest._max_features != n_features
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("feature", "threshold", "left", "right", "leaf")}
    roots, offset, levels = [], 0, 0
    for estimator, features in zip(forest.estimators_, forest.estimators_features_, strict=True):
        tree = estimator.tree_
        left = tree.children_left.astype(np.int64)
        right = tree.children_right.astype(np.int64)
        is_leaf = left < 0
        depth = _node_depths(left, right)
        levels = max(levels, int(depth.max()) - 1)
        own = np.arange(len(left))
        feature = np.where(is_leaf, 0, tree.feature)
        if subset:
            feature = np.asarray(features)[feature]
        parts["feature"].append(feature)
        parts["threshold"].append(np.where(is_leaf, 0.0, tree.threshold))
        # A leaf points at itself: walking on from it stays there.
        parts["left"].append(np.where(is_leaf, own, left) + offset)
        parts["right"].append(np.where(is_leaf, own, right) + offset)
        contribution = depth + average_path_length(tree.n_node_samples) - 1.0
        parts["leaf"].append(np.where(is_leaf, contribution, 0.0))
        roots.append(offset)
        offset += len(left)
    index = np.int32 if offset < 2**31 else np.int64
    return {
        "format": FORMAT, "algorithm": "isolation_forest", "names": list(names),
        "mean": np.asarray(scaler.mean_, dtype=float), "scale": np.asarray(scaler.scale_, dtype=float),
        "centre": np.asarray(centre, dtype=float), "low": np.asarray(low, dtype=float),
        "high": np.asarray(high, dtype=float), "n": int(n), "offset": float(forest.offset_),
        "max_samples": int(forest.max_samples_),
        "denominator": float(len(forest.estimators_) * average_path_length([forest.max_samples_])[0]),
        "levels": levels, "roots": np.asarray(roots, dtype=index),
        "feature": np.concatenate(parts["feature"]).astype(np.min_scalar_type(max(n_features - 1, 0))),
        "threshold": _float32_at_most(np.concatenate(parts["threshold"])),
        "left": np.concatenate(parts["left"]).astype(index),
        "right": np.concatenate(parts["right"]).astype(index),
        "leaf": np.concatenate(parts["leaf"]),
    }


def score_samples(model: dict[str, Any], scaled: np.ndarray) -> np.ndarray:
    """IsolationForest.score_samples of rows already scaled (lower = more anomalous)."""
    x = np.atleast_2d(np.asarray(scaled, dtype=float)).astype(np.float32)
    rows = np.arange(len(x))[:, None]
    node = np.repeat(model["roots"][None, :], len(x), axis=0)
    feature, threshold = model["feature"], model["threshold"]
    for _ in range(model["levels"]):
        node = np.where(x[rows, feature[node]] <= threshold[node], model["left"][node],
                        model["right"][node])
    # cumsum adds tree after tree, as scikit-learn's loop over the trees does.
    depths = np.cumsum(model["leaf"][node], axis=1)[:, -1] if node.shape[1] else np.zeros(len(x))
    denominator = model["denominator"]
    ratio = depths / denominator if denominator != 0 else np.ones_like(depths)
    return -(2.0 ** -ratio)


def scale(model: dict[str, Any], m: np.ndarray) -> np.ndarray:
    """StandardScaler.transform with the stored mean and scale."""
    return (m - model["mean"]) / model["scale"]


def dumps(model: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(model[k]) for k in _KEYS})
    return buf.getvalue()


def loads(blob: bytes) -> dict[str, Any]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    if int(arrays.get("format", -1)) != FORMAT:
        raise ValueError(f"Isolation Forest model format {arrays.get('format')}: expected {FORMAT}")
    model: dict[str, Any] = dict(arrays)
    model["algorithm"] = str(arrays["algorithm"])
    model["names"] = [str(s) for s in arrays["names"]]
    for key in ("n", "max_samples", "levels", "format"):
        model[key] = int(arrays[key])
    for key in ("offset", "denominator"):
        model[key] = float(arrays[key])
    return model
