"""Model specs (include/models/*.yml): what to predict, from which features, and how to promote."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CLASSIFICATION_METRICS = {"roc_auc", "pr_auc", "log_loss", "brier"}
REGRESSION_METRICS = {"mae", "rmse", "r2"}
LOWER_IS_BETTER = {"log_loss", "brier", "mae", "rmse"}
ESTIMATORS = {"logistic_regression", "hist_gradient_boosting", "ridge", "hist_gradient_boosting_regressor"}
SPECS_DIR = Path(__file__).resolve().parents[1] / "models"


class SpecError(ValueError):
    """A model spec file is invalid; the message names the file, field and problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Features(_Strict):
    numeric: list[str] = Field(min_length=1)
    categorical: list[str] = []


class Split(_Strict):
    gap_days: int = Field(ge=0)
    validation_as_of_dates: int = Field(ge=1)


class Candidate(_Strict):
    name: str
    params: dict[str, float | int | str | bool | None] = {}

    @model_validator(mode="after")
    def _known(self):
        if self.name not in ESTIMATORS:
            raise ValueError(f"unknown estimator {self.name!r}; known: {sorted(ESTIMATORS)}")
        return self


class StagingGate(_Strict):
    min_metrics: dict[str, float] = {}


class ProductionGate(_Strict):
    min_improvement: float = 0.0


class Promotion(_Strict):
    staging: StagingGate
    production: ProductionGate


class ModelSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    task: Literal["classification", "regression"]
    table: str = Field(pattern=r"^[a-z_]+\.[a-z_]+$")
    label: str
    features: Features
    split: Split
    candidates: list[Candidate] = Field(min_length=1)
    primary_metric: str
    promotion: Promotion

    @model_validator(mode="after")
    def _metrics_fit_task(self):
        known = CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS
        for metric in [self.primary_metric, *self.promotion.staging.min_metrics]:
            if metric not in known:
                raise ValueError(f"unknown metric {metric!r} for a {self.task} model; known: {sorted(known)}")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [*self.features.numeric, *self.features.categorical]



def improvement(metric: str, new: float, old: float) -> float:
    """How much better `new` is than `old` on `metric` (positive = better, whichever way the metric points)."""
    return old - new if metric in LOWER_IS_BETTER else new - old


def load_spec(path: Path) -> ModelSpec:
    """Parse and validate one spec file."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise SpecError(f"{path}: {problems}") from None
    if spec.name != path.stem:
        raise SpecError(f"{path}: name: {spec.name!r} must match the file name {path.stem!r}")
    return spec


def load_specs(folder: Path = SPECS_DIR) -> dict[str, ModelSpec]:
    """Every spec in `folder`, by name."""
    return {p.stem: load_spec(p) for p in sorted(folder.glob("*.yml"))}
