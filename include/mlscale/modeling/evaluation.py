"""How good a model is: task metrics, calibration, per-segment metrics and the business value of acting on it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlscale.specs import CLASSIFICATION_METRICS, REGRESSION_METRICS, ModelSpec

# Segments smaller than this get a row count but no metrics (too noisy to compare).
MIN_SEGMENT_ROWS = 30
# scikit-learn scorer for each metric (used by permutation importance).
SCORERS = {
    "roc_auc": "roc_auc", "pr_auc": "average_precision", "log_loss": "neg_log_loss", "brier": "neg_brier_score",
    "calibration_error": "neg_brier_score",
    "mae": "neg_mean_absolute_error", "rmse": "neg_root_mean_squared_error", "r2": "r2",
}


def calibration_error(y_true: np.ndarray, prob: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the row-weighted mean |observed rate - mean probability| over equal-width bins."""
    idx = np.minimum((np.asarray(prob) * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(idx):
        mask = idx == b
        total += mask.sum() * abs(y_true[mask].mean() - prob[mask].mean())
    return float(total / len(prob))


class WeightedRocAuc:
    """ROC AUC of fixed labels and scores under row weights, such as a bootstrap resample's count of each row: the
    value `roc_auc_score` gives on the resampled rows (the Mann-Whitney statistic, a tie counting one half), from
    one sort done up front. A paired bootstrap needs it thousands of times per promotion, and scikit-learn's input
    checks made each call cost 2 ms, about 20 times this."""

    def __init__(self, y_true: np.ndarray, scores: np.ndarray):
        scores = np.asarray(scores, dtype=float)
        self._order = np.argsort(scores, kind="stable")
        ranked = scores[self._order]
        self._positive = np.asarray(y_true)[self._order] == 1
        self._distinct = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # first row of each distinct score

    def __call__(self, weights: np.ndarray) -> float:
        w = np.asarray(weights, dtype=float)[self._order]
        pos = np.add.reduceat(np.where(self._positive, w, 0.0), self._distinct)
        neg = np.add.reduceat(np.where(self._positive, 0.0, w), self._distinct)
        lower = np.cumsum(neg) - neg  # the negatives' weight below each distinct score
        return float((pos * (lower + neg / 2)).sum() / (pos.sum() * neg.sum()))


def _metrics():
    from sklearn import metrics as m

    return {
        "roc_auc": m.roc_auc_score,
        "pr_auc": m.average_precision_score,
        "log_loss": lambda y, p: m.log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1]),
        "brier": m.brier_score_loss,
        "calibration_error": calibration_error,
        "mae": m.mean_absolute_error,
        "rmse": lambda y, p: np.sqrt(m.mean_squared_error(y, p)),
        "r2": m.r2_score,
    }


def metric(name: str, y_true: np.ndarray, scores: np.ndarray) -> float:
    """One metric of `scores` against `y_true`."""
    return float(_metrics()[name](np.asarray(y_true, dtype=float), np.asarray(scores, dtype=float)))


def evaluate(spec: ModelSpec, y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The task's metrics for `scores` against `y_true`."""
    names = CLASSIFICATION_METRICS if spec.task == "classification" else REGRESSION_METRICS
    return {name: metric(name, y_true, scores) for name in names}


def segment_values(spec: ModelSpec, frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Segment name -> the segment value of each row (numeric columns cut at the spec's edges)."""
    out = {}
    for name, seg in spec.segments.items():
        col = frame[seg.column]
        if seg.edges is None:
            out[name] = col.fillna("unknown").astype(str)
        else:
            bounds = [-math.inf, *seg.edges, math.inf]
            labels = [_band(lo, hi) for lo, hi in zip(bounds, bounds[1:])]
            out[name] = pd.cut(col, bounds, right=False, labels=labels).astype(str).replace("nan", "unknown")
    return out


def _band(lo: float, hi: float) -> str:
    """'under 90', '90 to 365', '365 and over' (also valid inside MLflow metric keys)."""
    if lo == -math.inf:
        return f"under {hi:g}"
    return f"{lo:g} and over" if hi == math.inf else f"{lo:g} to {hi:g}"


def by_segment(spec: ModelSpec, frame: pd.DataFrame, y_true: np.ndarray, scores: np.ndarray) -> list[dict]:
    """One row per (segment, value): rows, label mean, and the task metrics where the slice is big enough."""
    y_true, scores = np.asarray(y_true, dtype=float), np.asarray(scores, dtype=float)
    rows = []
    for name, values in segment_values(spec, frame).items():
        for value in sorted(values.unique()):
            mask = (values == value).to_numpy()
            row = {"segment": name, "value": value, "rows": int(mask.sum()), "label_mean": float(y_true[mask].mean())}
            enough = mask.sum() >= MIN_SEGMENT_ROWS and (spec.task == "regression" or len(np.unique(y_true[mask])) == 2)
            row["metrics"] = evaluate(spec, y_true[mask], scores[mask]) if enough else {}
            rows.append(row)
    return rows


@dataclass(frozen=True)
class Economics:
    """One model's campaign economics, from the dbt seed model_economics."""

    margin_rate: float
    response_rate: float
    contact_cost: float


def campaign(spec: ModelSpec, economics: Economics, frame: pd.DataFrame, y_true: np.ndarray,
             scores: np.ndarray) -> dict[str, float]:
    """The spec's campaign on the top-k rows by expected gain: expected and realised profit, and at random.

    expected gain = margin_rate x response_rate x score x value - contact_cost (the model's own estimate),
    realised gain = margin_rate x response_rate x label x value - contact_cost (what acting on it earned),
    where value is the spec's value_column (1 without one). Random = k x the mean realised gain.
    """
    y_true, scores = np.asarray(y_true, dtype=float), np.asarray(scores, dtype=float)
    value_col = spec.business.value_column
    value = frame[value_col].fillna(0).to_numpy(dtype=float) if value_col else np.ones(len(scores))
    unit = economics.margin_rate * economics.response_rate
    expected = unit * scores * value - economics.contact_cost
    realised = unit * y_true * value - economics.contact_cost
    k = math.ceil(spec.business.top_k_share * len(scores))
    top = np.argsort(-expected, kind="stable")[:k]
    profit, random_profit = float(realised[top].sum()), float(k * realised.mean())
    return {"targeted": float(k), "expected_profit": float(expected[top].sum()), "profit": profit,
            "profit_random": random_profit, "profit_uplift": profit - random_profit}
