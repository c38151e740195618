import numpy as np
import pandas as pd
import pytest

from mlscale.specs import load_specs
from mlscale.training import NotEnoughData, evaluate, time_split

SPEC = load_specs()["churn_90d"]


def _frame(dates):
    rows = [{"customer_id": c, "as_of_date": pd.Timestamp(d), "x": i} for i, d in enumerate(dates) for c in (1, 2)]
    return pd.DataFrame(rows)


def test_split_tests_on_latest_and_keeps_the_gap():
    dates = pd.date_range("2026-01-01", periods=20, freq="7D")
    split = time_split(_frame(dates), gap_days=90)
    assert split.test_as_of == dates[-1]
    assert set(split.test["as_of_date"]) == {dates[-1]}
    assert split.train["as_of_date"].max() <= dates[-1] - pd.Timedelta(days=90)
    assert split.train["as_of_date"].max() == dates[6]  # 2026-02-12 is the last date >= 90 days before 2026-05-14
    assert set(split.train.index).isdisjoint(split.test.index)


def test_split_without_enough_history_says_so():
    with pytest.raises(NotEnoughData, match="no training as-of date"):
        time_split(_frame(pd.date_range("2026-01-01", periods=3, freq="7D")), gap_days=90)
    with pytest.raises(NotEnoughData, match="no rows"):
        time_split(_frame([]).reindex(columns=["customer_id", "as_of_date"]), gap_days=90)


def test_classification_metrics_match_hand_computed_values():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    m = evaluate(SPEC, y, p)
    # 4 positive/negative pairs, 3 ranked right: AUC = 0.75
    assert m["roc_auc"] == pytest.approx(0.75)
    # Brier: mean of 0.01, 0.16, 0.4225, 0.04
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    expected_ll = -np.mean([np.log(0.9), np.log(0.6), np.log(0.35), np.log(0.8)])
    assert m["log_loss"] == pytest.approx(expected_ll)
    # Average precision: ranks 0.8(+) 0.4(-) 0.35(+) 0.1(-) -> (1/1 + 2/3) / 2
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
