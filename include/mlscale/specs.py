"""Model specs (include/models/*.yml): what to predict, from which features, how to judge and promote it.

A spec is validated on load; every error names the file, the field and the problem. Column names
(features, label, baseline, segments, business value) are checked against the columns the dbt
model of the spec's table documents, so a typo fails at DAG parse time, not mid-training.
"""

from __future__ import annotations

import itertools
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlscale.config import ROOT

# Metric name -> (lowest, highest) value it can take.
METRIC_RANGES = {
    "roc_auc": (0.0, 1.0), "pr_auc": (0.0, 1.0), "log_loss": (0.0, math.inf), "brier": (0.0, 1.0),
    "calibration_error": (0.0, 1.0),
    "mae": (0.0, math.inf), "rmse": (0.0, math.inf), "r2": (-math.inf, 1.0),
}
# Every model of a task reports these, in this order.
CLASSIFICATION_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "calibration_error")
REGRESSION_METRICS = ("mae", "rmse", "r2")
LOWER_IS_BETTER = {"log_loss", "brier", "calibration_error", "mae", "rmse"}
ESTIMATORS = {
    "classification": {"logistic_regression", "hist_gradient_boosting"},
    "regression": {"ridge", "hist_gradient_boosting_regressor"},
}
SPECS_DIR = ROOT / "include" / "models"
DBT_MODELS_DIR = ROOT / "dbt_project" / "models"

Scalar = float | int | str | bool | None


class SpecError(ValueError):
    """A model spec file is invalid; the message names the file, field and problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Btyd(_Strict):
    """A buy-till-you-die summary of each row (Fader, Hardie & Lee 2005) and the horizon to predict.

    The columns hold, per customer and as-of date, the repeat purchases (BG/NBD's x), the time from the
    first to the last purchase (t_x), the time since the first purchase (T), and the mean spend per
    purchase (Gamma-Gamma's m), all in days; the defaults are the lifetime columns of ml.customer_features.
    """

    horizon_days: int = Field(ge=1)
    frequency: str = "repeat_order_days"
    recency: str = "first_to_last_order_days"
    age: str = "tenure_days"
    monetary: str = "lifetime_avg_order_value"


class Features(_Strict):
    numeric: list[str] = Field(min_length=1)
    categorical: list[str] = []
    # Offer the candidates BG/NBD's view of each row as three more features (P(alive), expected purchases
    # and P(no purchase) in the horizon), from a BG/NBD fitted inside the model on its training rows.
    btyd: Btyd | None = None


class Split(_Strict):
    gap_days: int = Field(ge=0)
    validation_as_of_dates: int = Field(ge=1)
    # Days between the search's fit part and its validation as-of dates. Without a gap, a customer's fit row
    # of one week and validation row of the next share most of their label window, and a model that can
    # recognise customers (lifetime features do) looks better on validation than it is: on a quarter of the
    # CDNOW log a gradient-boosting configuration scored ROC AUC 0.82 on validation and 0.71 on test; with a
    # 90-day gap, 0.67 on validation, and the search chose a model that beat BG/NBD. It costs history: the fit
    # part ends validation_gap_days before the validation dates; when no training as-of date is that early,
    # the search fits on the dates just before them and warns (training.search_split).
    validation_gap_days: int = Field(default=0, ge=0)
    # Train on at most about this many rows: beyond it, a fixed sample of customers (a hash of customer_id, so the
    # same customers on every run) with all their training as-of dates. The test rows are never sampled. Search,
    # refit and memory follow the training rows; past a million or so a gradient-boosting model gains little
    # (README, *Training on a sample*). Unset: every row.
    max_train_rows: int | None = Field(default=None, ge=1)


class BinnedMeanBaseline(_Strict):
    """The training label mean per quantile bin of one feature (on recency_days: the recency rule)."""

    kind: Literal["binned_mean"]
    feature: str
    bins: int = Field(default=10, ge=1, le=100)


class BtydBaseline(Btyd):
    """A textbook model fitted on the training rows: `bg_nbd` predicts P(no purchase in the horizon) (for a
    churn label), `bg_nbd_gamma_gamma` the expected purchases in the horizon x the expected spend per
    purchase (for a revenue label)."""

    kind: Literal["bg_nbd", "bg_nbd_gamma_gamma"]


# What a model must beat: the strongest of its spec's baselines on the same test rows.
Baseline = Annotated[BinnedMeanBaseline | BtydBaseline, Field(discriminator="kind")]
BTYD_TASKS = {"bg_nbd": "classification", "bg_nbd_gamma_gamma": "regression"}


class Search(_Strict):
    """Parameter combinations tried per candidate, sampled (seeded) from its parameter lists."""

    budget: int = Field(ge=1, le=50)
    # Start no configuration after this many minutes of search (the ones not tried are logged); the first
    # configuration of each candidate always runs. null: no time limit.
    max_minutes: float | None = Field(default=None, gt=0)
    # Classification: a configuration competes on the primary metric only if its validation log loss (a
    # proper scoring rule) is within this of the best configuration's, so selection cannot trade the
    # probabilities away for a little ranking.
    max_log_loss_excess: float = Field(default=0.02, ge=0)


class Calibration(_Strict):
    """Classification: the chosen model's probabilities are recalibrated on the validation as-of dates (held
    out from its fit) by each method listed; the one with the lower held-out log loss is kept. [] = none."""

    methods: list[Literal["sigmoid", "isotonic"]] = ["sigmoid", "isotonic"]


class Candidate(_Strict):
    name: str
    # A scalar is fixed; a list is the search space for that parameter.
    params: dict[str, Scalar | list[Scalar]] = {}

    @model_validator(mode="after")
    def _lists_not_empty(self):
        for key, value in self.params.items():
            if isinstance(value, list) and not value:
                raise ValueError(f"params.{key}: empty list (give at least one value)")
        return self

    @property
    def space(self) -> dict[str, list]:
        return {k: v if isinstance(v, list) else [v] for k, v in self.params.items()}

    @property
    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.space.values())


class Segment(_Strict):
    """A slice for per-segment metrics: a categorical column, or a numeric column cut at `edges`."""

    column: str
    edges: list[float] | None = None

    @model_validator(mode="after")
    def _increasing(self):
        if self.edges is not None and (not self.edges or any(b <= a for a, b in itertools.pairwise(self.edges))):
            raise ValueError(f"edges {self.edges} must be a non-empty, strictly increasing list")
        return self


class Business(_Strict):
    """A campaign on the top_k_share of customers by expected gain, valued with the dbt seed model_economics.

    Gain of contacting one customer = margin_rate x response_rate x outcome x value - contact_cost, where
    value is `value_column` (for churn: the spend a saved churner keeps bringing) or 1 without one (for
    revenue: the outcome is the spend itself). The outcome is the score for the expected gain that picks
    whom to contact, and the matured label for the realised profit.
    """

    top_k_share: float = Field(gt=0, le=1)
    value_column: str | None = None


class StagingGate(_Strict):
    """Absolute checks of a candidate on its own: metric floors, size and batch latency budgets."""

    min_metrics: dict[str, float] = {}
    # Ceilings for metrics where lower is better (calibration_error, log_loss, brier, mae, rmse).
    max_metrics: dict[str, float] = {}
    max_model_mb: float = Field(default=100.0, gt=0)
    # Milliseconds to score latency_rows rows (median of three runs, after loading).
    max_batch_ms: float = Field(default=2000.0, gt=0)
    latency_rows: int = Field(default=10_000, ge=1)


class Bootstrap(_Strict):
    samples: int = Field(default=1000, ge=100, le=20_000)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)


class ProductionGate(_Strict):
    """The candidate against current Production, both re-evaluated on the same latest matured holdout."""

    min_improvement: float = Field(default=0.0, ge=0)
    bootstrap: Bootstrap = Bootstrap()
    # Largest drop of the primary metric allowed in any segment slice (absolute, in metric units).
    segment_tolerance: float = Field(default=0.05, ge=0)


class Promotion(_Strict):
    # required: a person approves in Airflow (Required Actions) before the switch; auto: no wait.
    approval: Literal["auto", "required"] = "auto"
    staging: StagingGate
    production: ProductionGate


class Monitoring(_Strict):
    """What monitor_<model> checks each day, and when it asks train_<model> for a new version.

    Ages and intervals count in data days (as-of dates of the feature table), so a replayed past
    behaves like the present.
    """

    # Population stability index of a feature (or of the scores) against the Production version's
    # training data, in `bins` quantile bins of that data; above the threshold is drift.
    feature_psi: float = Field(default=0.25, gt=0)
    prediction_psi: float = Field(default=0.25, gt=0)
    bins: int = Field(default=10, ge=2, le=50)
    # Realised primary metric of the newest matured predictions this far worse than the version's test metric.
    max_metric_drop: float = Field(default=0.05, ge=0)
    # Scheduled retraining: a Production version trained on data this many days older than the newest
    # as-of date is retrained even without drift (null: only on a breach).
    max_model_age_days: int | None = Field(default=None, ge=1)
    # After asking for a retrain, wait this many days before asking again (a rejected candidate is not
    # retried on the same evidence every day).
    min_days_between_retrains: int = Field(default=28, ge=0)


class ModelSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    # The role answerable for the model: its train_ DAG's owner and a tag of the registered model.
    owner: str = "data_scientist"
    intended_use: str
    limitations: list[str] = []
    task: Literal["classification", "regression"]
    table: str = Field(pattern=r"^[a-z_]+\.[a-z_]+$")
    label: str
    features: Features
    split: Split
    baselines: list[Baseline] = Field(min_length=1)
    search: Search
    calibration: Calibration = Calibration()
    candidates: list[Candidate] = Field(min_length=1)
    primary_metric: str
    segments: dict[str, Segment] = {}
    business: Business
    promotion: Promotion
    monitoring: Monitoring = Monitoring()

    @model_validator(mode="after")
    def _consistent(self):
        known = CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS
        staging = self.promotion.staging
        limits = [(f"promotion.staging.{kind}.{m}", m, v, kind) for kind, given in
                  (("min_metrics", staging.min_metrics), ("max_metrics", staging.max_metrics)) for m, v in given.items()]
        for where, metric in [("primary_metric", self.primary_metric), *((w, m) for w, m, _, _ in limits)]:
            if metric not in known:
                raise ValueError(f"{where}: unknown metric {metric!r} for a {self.task} model; known: {sorted(known)}")
        for where, metric, threshold, kind in limits:
            low, high = METRIC_RANGES[metric]
            if not low <= threshold <= high:
                raise ValueError(f"{where}: threshold {threshold} is outside the metric's range [{low}, {high}]")
            if (kind == "max_metrics") != (metric in LOWER_IS_BETTER):
                way = better(metric)
                raise ValueError(f"{where}: {way} {metric} is better, so give it under "
                                 f"{'max_metrics' if way == 'lower' else 'min_metrics'}")
        if self.task == "regression" and self.calibration.methods and "calibration" in self.model_fields_set:
            raise ValueError("calibration: only a classification model has probabilities to calibrate")
        for i, cand in enumerate(self.candidates):
            if cand.name not in ESTIMATORS[self.task]:
                raise ValueError(f"candidates.{i}.name: unknown estimator {cand.name!r} for a {self.task} model; "
                                 f"known: {sorted(ESTIMATORS[self.task])}")
        names = self.feature_names
        if len(set(names)) != len(names):
            raise ValueError(f"features: listed twice: {sorted({n for n in names if names.count(n) > 1})}")
        if self.label in names:
            raise ValueError(f"label: {self.label!r} is also a feature")
        numeric = set(self.features.numeric)
        for i, base in enumerate(self.baselines):
            if base.kind in BTYD_TASKS and BTYD_TASKS[base.kind] != self.task:
                raise ValueError(f"baselines.{i}: {base.kind} predicts a {BTYD_TASKS[base.kind]} label, "
                                 f"this is a {self.task} model")
        for where, column, need_numeric in [
            *((f"baselines.{i}.feature", b.feature, True) for i, b in enumerate(self.baselines)
              if b.kind == "binned_mean"),
            *((f"{where}.{field}", getattr(b, field), True) for where, b in self._btyd_inputs()
              for field in ("frequency", "recency", "age",
                            *(("monetary",) if getattr(b, "kind", None) == "bg_nbd_gamma_gamma" else ()))),
            ("business.value_column", self.business.value_column, True),
            *((f"segments.{n}.column", s.column, s.edges is not None) for n, s in self.segments.items()),
        ]:
            if column is not None and column not in (numeric if need_numeric else names):
                kind = "numeric feature" if need_numeric else "feature"
                raise ValueError(f"{where}: {column!r} is not a {kind} of this spec")
        return self

    def _btyd_inputs(self) -> list[tuple[str, Btyd]]:
        """(where in the spec, BTYD inputs) of every BTYD baseline and of the BTYD features."""
        found = [(f"baselines.{i}", b) for i, b in enumerate(self.baselines) if b.kind != "binned_mean"]
        return found + ([("features.btyd", self.features.btyd)] if self.features.btyd else [])

    @property
    def feature_names(self) -> list[str]:
        return [*self.features.numeric, *self.features.categorical]


def better(metric: str) -> str:
    """Which way `metric` is better: "lower" or "higher"."""
    return "lower" if metric in LOWER_IS_BETTER else "higher"


def improvement(metric: str, new: float, old: float) -> float:
    """How much better `new` is than `old` on `metric` (positive = better, whichever way the metric points)."""
    return old - new if metric in LOWER_IS_BETTER else new - old


@lru_cache(maxsize=8)
def table_columns(table: str, models_dir: Path = DBT_MODELS_DIR) -> frozenset[str]:
    """Columns documented for `schema.table` in the dbt model files (empty if no model documents it)."""
    model = table.split(".")[1]
    for path in sorted(models_dir.rglob("*.yml")):
        for node in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            if node.get("name") == model:
                return frozenset(c["name"] for c in node.get("columns", []))
    return frozenset()


def _check_columns(spec: ModelSpec) -> list[str]:
    columns = table_columns(spec.table)
    if not columns:
        return [f"table: no dbt model documents the columns of {spec.table!r} (under {DBT_MODELS_DIR})"]
    problems = []
    for where, names in [("features.numeric", spec.features.numeric), ("features.categorical", spec.features.categorical),
                         ("label", [spec.label])]:
        problems += [f"{where}: unknown column {n!r}: {spec.table} has no such column" for n in names if n not in columns]
    return problems


def load_spec(path: Path) -> ModelSpec:
    """Parse and validate one spec file."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise SpecError(f"{path}: {problems}") from None
    if spec.name != path.stem:
        raise SpecError(f"{path}: name: {spec.name!r} must match the file name {path.stem!r}")
    if problems := _check_columns(spec):
        raise SpecError(f"{path}: " + "; ".join(problems))
    return spec


def _problem(error: dict) -> str:
    where = ".".join(map(str, error["loc"]))
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def specs_dir() -> Path:
    """Where the spec files are: MLSCALE_SPECS_DIR, else include/models of the bundle."""
    return Path(os.environ.get("MLSCALE_SPECS_DIR") or SPECS_DIR)


def load_specs(folder: Path | None = None) -> dict[str, ModelSpec]:
    """Every spec in `folder` (default: specs_dir()), by name."""
    return {p.stem: load_spec(p) for p in sorted((folder or specs_dir()).glob("*.yml"))}
