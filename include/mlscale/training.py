"""Train a model spec: time-based split, candidate selection, MLflow run, registered version."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlscale import features
from mlscale.config import Settings
from mlscale.specs import ModelSpec, improvement

log = logging.getLogger(__name__)

SEED = 7
# Types beyond skops' defaults that our own pipelines contain; reviewed, and only ever loaded from our registry.
SKOPS_TRUSTED_TYPES = ["numpy.dtype", "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    test_as_of: pd.Timestamp


class NotEnoughData(RuntimeError):
    """The matured history is too short for the spec's split."""


def time_split(frame: pd.DataFrame, gap_days: int) -> Split:
    """Test on the latest matured as-of date; train on as-of dates at least `gap_days` before it."""
    if frame.empty:
        raise NotEnoughData("no rows with a matured label: the warehouse needs more history")
    test_as_of = frame["as_of_date"].max()
    cutoff = test_as_of - pd.Timedelta(days=gap_days)
    train = frame[frame["as_of_date"] <= cutoff]
    if train.empty:
        raise NotEnoughData(
            f"no training as-of date on or before {cutoff.date()} (test as-of {test_as_of.date()}, gap {gap_days} days)"
        )
    return Split(train=train, test=frame[frame["as_of_date"] == test_as_of], test_as_of=test_as_of)


def build_pipeline(spec: ModelSpec, candidate_name: str, params: dict):
    """scikit-learn Pipeline: impute and scale numerics, one-hot categoricals, then the estimator."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), spec.features.numeric),
            ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="unknown"),
                                  OneHotEncoder(handle_unknown="ignore")), spec.features.categorical),
        ]
    )
    estimators = {
        "logistic_regression": lambda: LogisticRegression(max_iter=2000, class_weight="balanced", **params),
        "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(random_state=SEED, class_weight="balanced", **params),
        "ridge": lambda: Ridge(**params),
        "hist_gradient_boosting_regressor": lambda: HistGradientBoostingRegressor(random_state=SEED, **params),
    }
    return Pipeline([("features", pre), ("model", estimators[candidate_name]())])


def predict(spec: ModelSpec, model, X: pd.DataFrame) -> np.ndarray:
    """Scores: probability of the positive class for classification, the value for regression."""
    return model.predict_proba(X)[:, 1] if spec.task == "classification" else model.predict(X)


def evaluate(spec: ModelSpec, y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The task's metrics for `scores` against `y_true`."""
    from sklearn import metrics as m

    if spec.task == "classification":
        clipped = np.clip(scores, 1e-6, 1 - 1e-6)
        return {
            "roc_auc": float(m.roc_auc_score(y_true, scores)),
            "pr_auc": float(m.average_precision_score(y_true, scores)),
            "log_loss": float(m.log_loss(y_true, clipped, labels=[0, 1])),
            "brier": float(m.brier_score_loss(y_true, scores)),
        }
    return {
        "mae": float(m.mean_absolute_error(y_true, scores)),
        "rmse": float(np.sqrt(m.mean_squared_error(y_true, scores))),
        "r2": float(m.r2_score(y_true, scores)),
    }


def train(settings: Settings, spec: ModelSpec, tags: dict[str, str] | None = None) -> dict:
    """Train every candidate, pick the best on validation, refit, test, log to MLflow and register it."""
    import mlflow
    from mlflow.models import infer_signature

    frame = features.labelled(settings, spec)
    split = time_split(frame, spec.split.gap_days)
    train_dates = sorted(split.train["as_of_date"].unique())
    valid_dates = train_dates[-spec.split.validation_as_of_dates:]
    fit_part = split.train[~split.train["as_of_date"].isin(valid_dates)]
    valid_part = split.train[split.train["as_of_date"].isin(valid_dates)]
    if fit_part.empty:
        raise NotEnoughData(f"only {len(train_dates)} training as-of date(s); need more than "
                            f"{spec.split.validation_as_of_dates} for validation")
    X = lambda df: df[spec.feature_names]  # noqa: E731
    y = lambda df: df[spec.label].to_numpy()  # noqa: E731
    log.info("split: %d fit rows, %d validation rows (%s..%s), %d test rows (as-of %s)", len(fit_part),
             len(valid_part), pd.Timestamp(valid_dates[0]).date(), pd.Timestamp(valid_dates[-1]).date(),
             len(split.test), split.test_as_of.date())

    mlflow.set_tracking_uri(settings.mlflow_uri)
    mlflow.set_experiment(spec.name)
    with mlflow.start_run(run_name=f"train_{spec.name}") as run:
        mlflow.set_tags({"mlscale.model": spec.name, **(tags or {})})
        best = None
        for cand in spec.candidates:
            model = build_pipeline(spec, cand.name, dict(cand.params)).fit(X(fit_part), y(fit_part))
            score = evaluate(spec, y(valid_part), predict(spec, model, X(valid_part)))[spec.primary_metric]
            mlflow.log_metric(f"valid_{spec.primary_metric}__{cand.name}", score)
            log.info("candidate %s: validation %s = %.4f", cand.name, spec.primary_metric, score)
            if best is None or improvement(spec.primary_metric, score, best[1]) > 0:
                best = (cand, score)
        cand = best[0]
        model = build_pipeline(spec, cand.name, dict(cand.params)).fit(X(split.train), y(split.train))
        test_scores = predict(spec, model, X(split.test))
        metrics = evaluate(spec, y(split.test), test_scores)
        mlflow.log_params({
            "candidate": cand.name,
            **{f"model__{k}": v for k, v in cand.params.items()},
            "features": ",".join(spec.feature_names),
            "label": spec.label,
            "train_rows": len(split.train),
            "test_rows": len(split.test),
            "train_as_of_min": str(pd.Timestamp(train_dates[0]).date()),
            "train_as_of_max": str(pd.Timestamp(train_dates[-1]).date()),
            "test_as_of": str(split.test_as_of.date()),
            "gap_days": spec.split.gap_days,
        })
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        example = X(split.test).head(5)
        signature = infer_signature(example, predict(spec, model, example))
        info = mlflow.sklearn.log_model(model, name="model", signature=signature, input_example=example,
                                        registered_model_name=spec.name, skops_trusted_types=SKOPS_TRUSTED_TYPES)
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        client.update_model_version(
            spec.name, version,
            description=(f"{cand.name} trained on as-of {pd.Timestamp(train_dates[0]).date()}.."
                         f"{pd.Timestamp(train_dates[-1]).date()}; test {spec.primary_metric}="
                         f"{metrics[spec.primary_metric]:.4f} at as-of {split.test_as_of.date()}"),
        )
        client.set_model_version_tag(spec.name, version, "candidate", cand.name)
        client.set_model_version_tag(spec.name, version, f"test_{spec.primary_metric}", f"{metrics[spec.primary_metric]:.6f}")
    log.info("registered %s version %s (run %s): %s", spec.name, version, run.info.run_id, metrics)
    return {"model": spec.name, "version": version, "run_id": run.info.run_id, "candidate": cand.name, "metrics": metrics}
