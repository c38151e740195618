import numpy as np
import pandas as pd
import pytest

from mlscale.baseline import BinnedMean
from mlscale.specs import Candidate, load_specs
from mlscale.training import NotEnoughData, configurations, time_split

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


def test_split_keeps_each_customers_future_out_of_training():
    dates = pd.date_range("2026-01-01", periods=30, freq="7D")
    split = time_split(_frame(dates), gap_days=90)
    # A training row's label window (90 days from its as-of date) ends before the test as-of date.
    assert (split.train["as_of_date"] + pd.Timedelta(days=90) <= split.test_as_of).all()
    # The same customers appear on both sides, but never with the same as-of date.
    assert set(split.train["customer_id"]) == set(split.test["customer_id"]) == {1, 2}
    assert not set(split.train["as_of_date"]) & set(split.test["as_of_date"])


def test_configurations_respect_the_budget_and_are_seeded():
    cand = Candidate(name="hist_gradient_boosting", params={"max_iter": 100, "learning_rate": [0.05, 0.1],
                                                            "max_leaf_nodes": [15, 31, 63]})
    first = configurations(cand, budget=4)
    assert len(first) == 4
    assert len({tuple(sorted(c.items())) for c in first}) == 4  # no combination twice
    assert all(c["max_iter"] == 100 and c["learning_rate"] in (0.05, 0.1) and c["max_leaf_nodes"] in (15, 31, 63)
               for c in first)
    assert configurations(cand, budget=4) == first
    assert len(configurations(cand, budget=50)) == 6  # the whole grid, no more
    assert configurations(Candidate(name="ridge", params={"alpha": 1.0}), budget=5) == [{"alpha": 1.0}]
    assert configurations(Candidate(name="ridge"), budget=5) == [{}]


def test_baseline_predicts_the_training_rate_of_each_bin():
    X = pd.DataFrame({"recency_days": [1, 2, 3, 4, 10, 11, 12, 13, np.nan, np.nan]})
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1, 1, 1])
    base = BinnedMean("recency_days", bins=2, task="classification").fit(X, y)
    # Median 7 splits the known rows: rates 1/4 below, 3/4 above; rows without recency churned 2/2.
    probe = pd.DataFrame({"recency_days": [0, 5, 8, 100, np.nan]})
    assert base.predict_proba(probe)[:, 1].tolist() == [0.25, 0.25, 0.75, 0.75, 1.0]
    overall = BinnedMean("recency_days", bins=1, task="regression").fit(X, y * 10.0)
    assert overall.predict(probe[:4]).tolist() == [5.0] * 4  # bins=1: the mean of the known rows
