"""Choosing a model: the candidates' pipelines, the bounded search over their configurations, and the
calibration of the chosen classifier's probabilities on held-out as-of dates."""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from mlscale.modeling import evaluation
from mlscale.modeling.btyd import BtydFeatures
from mlscale.modeling.judging import predict
from mlscale.specs import Candidate, ModelSpec, improvement

log = logging.getLogger(__name__)

SEED = 7


def build_pipeline(spec: ModelSpec, candidate_name: str, params: dict):
    """scikit-learn Pipeline: BG/NBD features if the spec asks, impute and scale numerics, one-hot categoricals,
    then the estimator."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    btyd = spec.features.btyd
    pre = ColumnTransformer(
        [
            # keep_empty_features: a feature never observed (an optional feed not delivered) stays an input,
            # as a constant, so the model's inputs are always the spec's features.
            ("num", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()),
             [*spec.features.numeric, *(BtydFeatures.OUTPUTS if btyd else ())]),
            ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="unknown"),
                                  OneHotEncoder(handle_unknown="ignore")), spec.features.categorical),
        ]
    )
    estimators = {
        "logistic_regression": lambda: LogisticRegression(max_iter=2000, **params),
        "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(random_state=SEED, **params),
        "ridge": lambda: Ridge(**params),
        "hist_gradient_boosting_regressor": lambda: HistGradientBoostingRegressor(random_state=SEED, **params),
    }
    steps = [("features", pre), ("model", estimators[candidate_name]())]
    if btyd:
        steps.insert(0, ("btyd", BtydFeatures(btyd.horizon_days, btyd.frequency, btyd.recency, btyd.age)))
    return Pipeline(steps)


def configurations(candidate: Candidate, budget: int) -> list[dict]:
    """At most `budget` parameter combinations of `candidate`, sampled without replacement (seeded)."""
    from sklearn.model_selection import ParameterSampler

    if candidate.grid_size == 1:
        return [{k: v[0] for k, v in candidate.space.items()}]
    return list(ParameterSampler(candidate.space, n_iter=min(budget, candidate.grid_size), random_state=SEED))


@dataclass(eq=False)
class Tried:
    candidate: Candidate
    params: dict
    validation: dict[str, float]
    model: object


@dataclass
class Searched:
    """What the search did: the chosen configuration (fitted on the fit part), and what it tried and skipped."""

    chosen: Tried
    tried: list[Tried]
    # Configurations the time budget left untried, as "candidate {params}".
    not_tried: list[str] = field(default_factory=list)
    # Configurations with a better primary metric than the chosen one that the log-loss bound excluded.
    excluded: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _label(candidate: Candidate, params: dict) -> str:
    return f"{candidate.name} {params}"


def search(spec: ModelSpec, fit_part: pd.DataFrame, valid_part: pd.DataFrame) -> Searched:
    """Fit each sampled configuration on fit_part and score it on valid_part (one nested MLflow run each),
    within the spec's time budget; choose on the primary metric among the configurations whose validation
    log loss is within the spec's bound of the best one's (classification)."""
    import mlflow

    X, y = fit_part[spec.feature_names], fit_part[spec.label].to_numpy()
    # Round robin over the candidates, so a time budget cuts each candidate's search, not the last candidate's.
    per_candidate = [[(cand, params) for params in configurations(cand, spec.search.budget)] for cand in spec.candidates]
    plan = [step for round_ in itertools.zip_longest(*per_candidate) for step in round_ if step is not None]
    budget_s = spec.search.max_minutes * 60 if spec.search.max_minutes else None
    started = time.monotonic()
    tried, not_tried = [], []
    for i, (cand, params) in enumerate(plan, 1):
        elapsed = time.monotonic() - started
        if budget_s is not None and elapsed > budget_s and any(t.candidate == cand for t in tried):  # not its first
            not_tried.append(_label(cand, params))
            log.warning("search %d/%d: %s not tried: the search took %.0fs of its %.0fs budget", i, len(plan),
                        _label(cand, params), elapsed, budget_s)
            continue
        t0 = time.monotonic()
        model = build_pipeline(spec, cand.name, params).fit(X, y)
        score = evaluation.evaluate(spec, valid_part[spec.label], predict(spec, model, valid_part[spec.feature_names]))
        with mlflow.start_run(run_name=f"{cand.name}-{i}", nested=True):
            mlflow.log_params({"candidate": cand.name, **params})
            mlflow.log_metrics({f"valid_{k}": v for k, v in score.items()})
        log.info("search %d/%d: %s -> validation %s %.4f, log loss %s (%.1fs)", i, len(plan),
                 _label(cand, params), spec.primary_metric, score[spec.primary_metric],
                 f"{score['log_loss']:.4f}" if "log_loss" in score else "n/a", time.monotonic() - t0)
        tried.append(Tried(cand, params, score, model))
    chosen, excluded = choose(spec, tried)
    if not_tried:
        log.warning("search: the time budget (%s min) left %d of %d configurations untried: %s",
                    spec.search.max_minutes, len(not_tried), len(plan), "; ".join(not_tried))
    return Searched(chosen, tried, not_tried, excluded, time.monotonic() - started)


def choose(spec: ModelSpec, tried: list[Tried]) -> tuple[Tried, list[str]]:
    """The best configuration on the primary metric among those whose validation log loss is within the spec's
    bound of the best log loss (classification; every one for regression), and why each configuration with a
    better primary metric was excluded. Ties go to the earlier configuration."""
    eligible, bound = tried, float("inf")
    if spec.task == "classification":
        bound = min(t.validation["log_loss"] for t in tried) + spec.search.max_log_loss_excess
        eligible = [t for t in tried if t.validation["log_loss"] <= bound]
    metric = spec.primary_metric
    chosen = eligible[0]
    for t in eligible[1:]:
        if improvement(metric, t.validation[metric], chosen.validation[metric]) > 0:
            chosen = t
    excluded = [f"{_label(t.candidate, t.params)}: validation {metric} {t.validation[metric]:.4f}, log loss "
                f"{t.validation['log_loss']:.4f} over the bound {bound:.4f}" for t in tried
                if t not in eligible and improvement(metric, t.validation[metric], chosen.validation[metric]) > 0]
    for why in excluded:
        log.warning("search: excluded for its probabilities: %s", why)
    return chosen, excluded


class Recalibrated(ClassifierMixin, BaseEstimator):
    """A fitted classifier whose probabilities pass through a calibrator learned on held-out scores.

    scikit-learn's CalibratedClassifierCV either calibrates a frozen model on the data given (so the model
    cannot also learn from the newest as-of dates) or, with ensemble=False, needs cross-validation folds
    that partition the rows (so early rows are scored by models trained on later ones). This is its
    ensemble=False scheme on one forward-in-time split: the calibrator (scikit-learn's IsotonicRegression, or
    Platt's logistic regression on the log odds) is learned from a model fitted without the validation as-of
    dates, and applied to the same configuration refitted on every training row.
    """

    def __init__(self, estimator=None, method: str = "sigmoid", calibrator=None):
        self.estimator, self.method, self.calibrator = estimator, method, calibrator

    def fit(self, X, y) -> "Recalibrated":
        """Refit the wrapped classifier on (X, y), keeping the calibrator as learned."""
        self.estimator.fit(X, y)
        return self

    @property
    def classes_(self):
        return self.estimator.classes_

    def predict_proba(self, X) -> np.ndarray:
        p = _calibrated(self.method, self.calibrator, self.estimator.predict_proba(X)[:, 1])
        return np.column_stack([1 - p, p])

    def predict(self, X) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


def _log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).reshape(-1, 1)


def _fit_calibrator(method: str, scores: np.ndarray, y: np.ndarray):
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    if method == "isotonic":
        return IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(scores, y)
    return LogisticRegression(C=1e4).fit(_log_odds(scores), y)


def _calibrated(method: str, calibrator, scores: np.ndarray) -> np.ndarray:
    if method == "isotonic":
        return calibrator.predict(scores)
    return calibrator.predict_proba(_log_odds(scores))[:, 1]


@dataclass
class Calibrated:
    model: object
    method: str | None
    # Validation log loss of each method (and "none"), by leave-one-as-of-date-out.
    log_loss: dict[str, float]


def calibrate(spec: ModelSpec, held_out_model, final_model, valid_part: pd.DataFrame) -> Calibrated:
    """Calibrate `final_model` (fitted on every training row) with what `held_out_model` (the same configuration,
    fitted without the validation as-of dates) scores on them.

    Each method of the spec is judged by leave-one-as-of-date-out log loss on valid_part (learn the calibrator
    on the other dates, score the held-out one); the best one, if better than the raw probabilities, is then
    learned on all of valid_part and wrapped around `final_model`.
    """
    y, dates = valid_part[spec.label].to_numpy(), valid_part["as_of_date"].to_numpy()
    scores = predict(spec, held_out_model, valid_part[spec.feature_names])
    losses = {"none": evaluation.metric("log_loss", y, scores)}
    if len(np.unique(dates)) < 2 or len(np.unique(y)) < 2:
        log.warning("calibration skipped: the validation rows need two as-of dates and both classes")
        return Calibrated(final_model, None, losses)
    for method in spec.calibration.methods:
        held_out = scores.copy()
        for date in np.unique(dates):
            rest, this = dates != date, dates == date
            if len(np.unique(y[rest])) == 2:
                held_out[this] = _calibrated(method, _fit_calibrator(method, scores[rest], y[rest]), scores[this])
        losses[method] = evaluation.metric("log_loss", y, held_out)
    best = min(losses, key=losses.get)
    log.info("calibration: held-out validation log loss %s -> %s",
             ", ".join(f"{k} {v:.4f}" for k, v in losses.items()), best)
    if best == "none":
        return Calibrated(final_model, None, losses)
    return Calibrated(Recalibrated(final_model, best, _fit_calibrator(best, scores, y)), best, losses)
