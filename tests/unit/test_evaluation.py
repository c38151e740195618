import math

import numpy as np
import pandas as pd
import pytest

from mlscale.modeling.evaluation import WeightedRocAuc, Economics, by_segment, calibration_error, campaign, evaluate
from mlscale.specs import load_specs

CHURN = load_specs()["churn_90d"]
REVENUE = load_specs()["revenue_90d"]


def test_classification_metrics_match_hand_computed_values():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    m = evaluate(CHURN, y, p)
    # 4 positive/negative pairs, 3 ranked right: AUC = 0.75
    assert m["roc_auc"] == pytest.approx(0.75)
    # Brier: mean of 0.01, 0.16, 0.4225, 0.04
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    expected_ll = -np.mean([np.log(0.9), np.log(0.6), np.log(0.35), np.log(0.8)])
    assert m["log_loss"] == pytest.approx(expected_ll)
    # Average precision: ranks 0.8(+) 0.4(-) 0.35(+) 0.1(-) -> (1/1 + 2/3) / 2
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
    # Ten bins of width 0.1, one row each: |0 - 0.1|, |1 - 0.35|, |0 - 0.4|, |1 - 0.8|
    assert m["calibration_error"] == pytest.approx((0.1 + 0.65 + 0.4 + 0.2) / 4)


def test_regression_metrics_match_hand_computed_values():
    y = np.array([0.0, 10.0, 20.0, 30.0])
    pred = np.array([5.0, 10.0, 10.0, 30.0])
    m = evaluate(REVENUE, y, pred)
    assert m["mae"] == pytest.approx((5 + 0 + 10 + 0) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((25 + 100) / 4))
    # R2 = 1 - SSE/SST = 1 - 125 / 500
    assert m["r2"] == pytest.approx(0.75)


def test_calibration_error_is_zero_when_rates_match():
    y = np.array([0, 0, 0, 1] * 5 + [1, 1, 1, 0] * 5)
    p = np.array([0.25] * 20 + [0.75] * 20)
    assert calibration_error(y, p) == pytest.approx(0.0)


def test_campaign_targets_top_expected_gain_and_values_the_outcome():
    spec = CHURN.model_copy(update={"business": CHURN.business.model_copy(update={"top_k_share": 0.5})})
    econ = Economics(margin_rate=0.5, response_rate=0.2, contact_cost=1.0)  # unit = 0.1
    frame = pd.DataFrame({"amount_90d": [100.0, 10.0, 200.0, 50.0]})
    y = np.array([1, 1, 0, 1])
    p = np.array([0.9, 0.95, 0.4, 0.2])
    # expected gain = 0.1 * p * amount - 1: 8.0, -0.05, 7.0, 0.0 -> targets rows 0 and 2
    out = campaign(spec, econ, frame, y, p)
    assert out["targeted"] == 2
    assert out["expected_profit"] == pytest.approx(8.0 + 7.0)
    # realised gain = 0.1 * y * amount - 1: 9, 0, -1, 4
    assert out["profit"] == pytest.approx(9 - 1)
    assert out["profit_random"] == pytest.approx(2 * (9 + 0 - 1 + 4) / 4)
    assert out["profit_uplift"] == pytest.approx(8 - 6)


def test_campaign_without_value_column_uses_the_outcome_itself():
    econ = Economics(margin_rate=0.5, response_rate=0.1, contact_cost=2.0)  # unit = 0.05
    y = np.array([400.0, 0.0, 100.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0, 60.0])
    pred = np.array([300.0, 10.0, 50.0, 40.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0])
    out = campaign(REVENUE, econ, pd.DataFrame(index=range(10)), y, pred)
    assert out["targeted"] == 1  # ceil(10% of 10)
    assert out["profit"] == pytest.approx(0.05 * 400 - 2)
    assert out["expected_profit"] == pytest.approx(0.05 * 300 - 2)


def test_segments_cut_numeric_columns_at_the_edges():
    n = 40
    frame = pd.DataFrame({"region": ["Europe"] * 30 + [None] * 10,
                          "tenure_days": [10] * 20 + [100] * 10 + [400] * 10})
    y = np.array([0, 1] * 20)
    p = np.where(y == 1, 0.8, 0.2)
    rows = {(r["segment"], r["value"]): r for r in by_segment(CHURN, frame, y, p)}
    assert {k: r["rows"] for k, r in rows.items()} == {
        ("region", "Europe"): 30, ("region", "unknown"): 10,
        ("tenure_band", "under 90"): 20, ("tenure_band", "90 to 365"): 10, ("tenure_band", "365 and over"): 10}
    assert rows[("region", "Europe")]["metrics"]["roc_auc"] == pytest.approx(1.0)
    assert rows[("region", "unknown")]["metrics"] == {}  # fewer than 30 rows: no metrics
    assert rows[("tenure_band", "under 90")]["label_mean"] == pytest.approx(0.5)
    assert sum(r["rows"] for k, r in rows.items() if k[0] == "region") == n


def test_weighted_roc_auc_is_roc_auc_score_on_the_resampled_rows():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 500)
    scores = np.round(rng.uniform(0, 1, 500) + 0.3 * y, 1)  # rounded: many ties, within and across the classes
    auc = WeightedRocAuc(y, scores)
    assert auc(np.ones(500)) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    for _ in range(20):
        idx = rng.integers(0, 500, 500)
        assert auc(np.bincount(idx, minlength=500)) == pytest.approx(roc_auc_score(y[idx], scores[idx]), abs=1e-12)
