"""The baselines every candidate must beat: the training label mean per quantile bin of one feature (a naive
rule), and the textbook buy-till-you-die models. A spec names its baselines; the strongest on the test rows
is the one a model has to beat, at training and at its first promotion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlscale.modeling import btyd, evaluation
from mlscale.modeling.judging import predict
from mlscale.specs import LOWER_IS_BETTER, Baseline, BtydBaseline, ModelSpec


class _Scores:
    """predict and predict_proba from a baseline's `_values` (a probability, or the predicted value)."""

    task: str

    def _values(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        values = self._values(X)
        return (values >= 0.5).astype(int) if self.task == "classification" else values

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self._values(X)
        return np.column_stack([1 - p, p])


class BinnedMean(_Scores):
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

    def describe(self) -> str:
        kind = "rate" if self.task == "classification" else "mean label"
        return f"training {kind} per quantile bin of {self.feature} ({len(self.means_)} bins)"


class BtydBaselineModel(_Scores):
    """The textbook buy-till-you-die prediction from each row's purchase summary, fitted on the training rows.

    `bg_nbd`: P(no purchase in the next horizon_days) (a churn probability); `bg_nbd_gamma_gamma`: expected
    purchases in the horizon x the expected spend per purchase (a revenue forecast). The label is not used:
    the models are fitted to the purchase histories themselves, by maximum likelihood (`mlscale.modeling.btyd`), on at
    most btyd.FIT_ROWS training rows sampled (seeded) over all training as-of dates: on the CDNOW log, 50,000 of
    741,492 rows rank the test customers as the fit on all of them (ROC AUC 0.7192 and 0.7191, 89 s for all).
    """

    def __init__(self, config: BtydBaseline, task: str):
        self.config, self.task = config, task

    def fit(self, X: pd.DataFrame, y=None) -> "BtydBaselineModel":
        c = self.config
        rows = btyd.sample(X, [c.frequency, c.recency, c.age])
        self.rows_ = len(rows)
        self.purchases_ = btyd.fit_beta_geo(*btyd.summary(c, rows))
        if c.kind == "bg_nbd_gamma_gamma":  # on the customers with repeat purchases and a known spend
            self.spend_ = btyd.fit_gamma_gamma(rows[c.frequency], rows[c.monetary].fillna(0))
        return self

    def _values(self, X: pd.DataFrame) -> np.ndarray:
        summary, horizon = btyd.summary(self.config, X), self.config.horizon_days
        if self.config.kind == "bg_nbd":
            return self.purchases_.p_no_purchase(*summary, horizon)
        spend = self.spend_.expected_spend(X[self.config.frequency], X[self.config.monetary].fillna(0))
        return self.purchases_.expected_purchases(*summary, horizon) * spend

    def describe(self) -> str:
        what = (f"BG/NBD P(no purchase in {self.config.horizon_days} days)" if self.config.kind == "bg_nbd" else
                f"BG/NBD expected purchases x Gamma-Gamma spend in {self.config.horizon_days} days")
        return f"{what}, fitted on {self.rows_} training rows"


def build(config: Baseline, task: str) -> BinnedMean | BtydBaselineModel:
    """An unfitted baseline from its spec entry."""
    if config.kind == "binned_mean":
        return BinnedMean(config.feature, config.bins, task)
    return BtydBaselineModel(config, task)


def name(config: Baseline) -> str:
    """A short key for metrics and tags: binned_mean_<feature>, bg_nbd, bg_nbd_gamma_gamma."""
    return f"binned_mean_{config.feature}" if config.kind == "binned_mean" else config.kind


@dataclass
class Measured:
    """One fitted baseline and its scores and metrics on the test rows."""

    name: str
    model: BinnedMean | BtydBaselineModel
    scores: np.ndarray
    metrics: dict[str, float]


def measure_all(spec: ModelSpec, train: pd.DataFrame, test: pd.DataFrame) -> list[Measured]:
    """Every baseline of the spec, fitted on `train` and scored on `test`, strongest first (primary metric)."""
    y_train, y_test = train[spec.label].to_numpy(), test[spec.label].to_numpy()
    measured = []
    for config in spec.baselines:
        model = build(config, spec.task).fit(train[spec.feature_names], y_train)
        scores = predict(spec, model, test[spec.feature_names])
        measured.append(Measured(name(config), model, scores, evaluation.evaluate(spec, y_test, scores)))
    metric = spec.primary_metric
    sign = -1 if metric in LOWER_IS_BETTER else 1
    return sorted(measured, key=lambda m: -sign * m.metrics[metric])
