"""Reference profiles of a model's data and the population stability index (PSI) against them.

A profile holds, per numeric feature and for the scores, the inner quantile edges of the training data
and the share of rows per bin (plus a bin for missing values), and per categorical feature the share of
each category. It is small JSON, logged with the model at training, so monitoring never re-reads the
training data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlscale.specs import ModelSpec

PROFILE_PATH = "monitoring/reference_profile.json"
MISSING = "(missing)"
EPSILON = 1e-4  # share given to an empty bin, so the PSI stays finite


def numeric_profile(values: pd.Series, bins: int) -> dict:
    known = values.dropna().to_numpy(dtype=float)
    edges = np.unique(np.quantile(known, np.linspace(0, 1, bins + 1)[1:-1])) if len(known) else np.array([])
    return {"edges": edges.tolist(), "shares": _numeric_shares(values, edges.tolist())}


def _numeric_shares(values: pd.Series, edges: list[float]) -> list[float]:
    """Share of values per bin (edges split the bins; values equal to an edge go right), then the missing share."""
    known = values.dropna().to_numpy(dtype=float)
    counts = np.bincount(np.searchsorted(edges, known, side="right"), minlength=len(edges) + 1)
    counts = np.append(counts, len(values) - len(known))
    return (counts / max(len(values), 1)).tolist()


def _categorical_shares(values: pd.Series) -> dict[str, float]:
    return values.fillna(MISSING).astype(str).value_counts(normalize=True).to_dict()


def profile(spec: ModelSpec, frame: pd.DataFrame, scores: np.ndarray, bins: int) -> dict:
    """The reference a Production version is monitored against: bins and shares of features and scores."""
    return {
        "rows": len(frame),
        "numeric": {c: numeric_profile(frame[c], bins) for c in spec.features.numeric},
        "categorical": {c: _categorical_shares(frame[c]) for c in spec.features.categorical},
        "scores": numeric_profile(pd.Series(scores), bins),
    }


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index: sum over bins of (actual - expected) * ln(actual / expected)."""
    e = np.maximum(np.asarray(expected, dtype=float), EPSILON)
    a = np.maximum(np.asarray(actual, dtype=float), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_psi(reference: dict, values: pd.Series) -> float:
    return psi(reference["shares"], _numeric_shares(values, reference["edges"]))


def categorical_psi(reference: dict[str, float], values: pd.Series) -> float:
    now = _categorical_shares(values)
    categories = sorted(set(reference) | set(now))
    return psi([reference.get(c, 0.0) for c in categories], [now.get(c, 0.0) for c in categories])
