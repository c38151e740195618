"""Baselines of a spec: each fitted on the training rows, all judged on the same test rows, the strongest first."""

import numpy as np
import pandas as pd
import pytest

from mlscale.modeling.baseline import BinnedMean, measure_all, name
from mlscale.specs import BinnedMeanBaseline, BtydBaseline, load_specs

CHURN, REVENUE = load_specs()["churn_90d"], load_specs()["revenue_90d"]


def _rows(spec, n: int, seed: int) -> pd.DataFrame:
    """Rows where recency_days drives the label and age is noise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({c: rng.normal(size=n) for c in spec.features.numeric})
    for c in spec.features.categorical:
        frame[c] = "unknown"
    frame["recency_days"] = rng.integers(1, 181, n).astype(float)
    if spec.task == "classification":
        frame[spec.label] = (rng.random(n) < frame["recency_days"] / 180).astype(float)
    else:
        frame[spec.label] = np.maximum(0, 200 - frame["recency_days"] + rng.normal(0, 20, n))
    return frame


@pytest.mark.parametrize("spec, metric", [(CHURN, "roc_auc"), (REVENUE, "rmse")])
def test_the_strongest_baseline_comes_first_whichever_way_the_metric_points(spec, metric):
    weak = BinnedMeanBaseline(kind="binned_mean", feature="age", bins=5)
    strong = BinnedMeanBaseline(kind="binned_mean", feature="recency_days", bins=10)
    variant = spec.model_copy(update={"baselines": [weak, strong]})
    measured = measure_all(variant, _rows(spec, 4000, 1), _rows(spec, 2000, 2))
    assert [m.name for m in measured] == ["binned_mean_recency_days", "binned_mean_age"]
    better, worse = measured[0].metrics[metric], measured[1].metrics[metric]
    assert (better > worse + 0.2) if metric == "roc_auc" else (better < worse - 10)
    assert len(measured[0].scores) == 2000
    assert measured[0].model.describe().endswith("per quantile bin of recency_days (10 bins)")


def test_baseline_names_are_the_metric_keys():
    assert name(BinnedMeanBaseline(kind="binned_mean", feature="recency_days", bins=10)) == "binned_mean_recency_days"
    assert name(BtydBaseline(kind="bg_nbd", horizon_days=90)) == "bg_nbd"
    assert name(BtydBaseline(kind="bg_nbd_gamma_gamma", horizon_days=90)) == "bg_nbd_gamma_gamma"


def test_binned_mean_learns_a_rate_per_bin_and_one_for_missing_values():
    X = pd.DataFrame({"recency_days": [1.0, 2.0, 3.0, 4.0, np.nan, np.nan]})
    model = BinnedMean("recency_days", bins=2, task="classification").fit(X, [0, 0, 1, 1, 1, 0])
    probe = pd.DataFrame({"recency_days": [1.5, 3.5, 100.0, np.nan]})
    assert model.predict_proba(probe)[:, 1].tolist() == [0.0, 1.0, 1.0, 0.5]
