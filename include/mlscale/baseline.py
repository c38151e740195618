"""The naive baseline every candidate must beat: the training label mean per quantile bin of one feature."""

from __future__ import annotations

import numpy as np
import pandas as pd


class BinnedMean:
    """Predicts the mean training label of the quantile bin a row's `feature` falls in.

    For churn on recency_days this is the rule "customers who have not ordered for as long as this
    churned at rate r"; with bins=1 it is the overall mean. Rows with the feature missing get the
    mean of the training rows where it was missing (or the overall mean if there were none).
    """

    def __init__(self, feature: str, bins: int, task: str):
        self.feature, self.bins, self.task = feature, bins, task

    def fit(self, X: pd.DataFrame, y) -> "BinnedMean":
        x, y = X[self.feature].to_numpy(dtype=float), np.asarray(y, dtype=float)
        known = ~np.isnan(x)
        self.edges_ = np.unique(np.quantile(x[known], np.linspace(0, 1, self.bins + 1)[1:-1])) if known.any() else np.array([])
        self.overall_ = float(y.mean())
        idx = np.searchsorted(self.edges_, x[known], side="right")
        self.means_ = np.array([y[known][idx == b].mean() if (idx == b).any() else self.overall_
                                for b in range(len(self.edges_) + 1)])
        self.missing_ = float(y[~known].mean()) if (~known).any() else self.overall_
        return self

    def _values(self, X: pd.DataFrame) -> np.ndarray:
        x = X[self.feature].to_numpy(dtype=float)
        out = np.full(len(x), self.missing_)
        known = ~np.isnan(x)
        out[known] = self.means_[np.searchsorted(self.edges_, x[known], side="right")]
        return out

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        values = self._values(X)
        return (values >= 0.5).astype(int) if self.task == "classification" else values

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self._values(X)
        return np.column_stack([1 - p, p])

    def describe(self) -> str:
        kind = "rate" if self.task == "classification" else "mean label"
        return f"training {kind} per quantile bin of {self.feature} ({len(self.means_)} bins)"
