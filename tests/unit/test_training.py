import numpy as np
import pandas as pd
import pytest

from mlscale.modeling.baseline import BinnedMean
from mlscale.modeling.btyd import BtydFeatures
from mlscale.specs import Candidate, load_specs
from mlscale.modeling.selection import build_pipeline, configurations
from mlscale.modeling.judging import NotEnoughData, time_split
from mlscale.modeling.training import search_split, uninformative

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


def test_the_search_fits_validation_gap_days_before_its_validation_dates(caplog):
    spec = SPEC.model_copy(update={"split": SPEC.split.model_copy(update={"validation_gap_days": 90})})
    train = _frame(pd.date_range("2026-01-01", periods=30, freq="7D"))
    fit, valid, gap = search_split(spec, train)
    assert gap == 90 and sorted(valid["as_of_date"].unique()) == list(pd.date_range("2026-07-02", periods=4, freq="7D"))
    assert fit["as_of_date"].max() == pd.Timestamp("2026-04-02")  # the last date >= 90 days before 2026-07-02
    assert len(fit) == 2 * 14 and not caplog.records
    # 12 weeks of history cannot afford 90 days: the search fits on the dates just before validation, and says so
    fit, valid, gap = search_split(spec, train.iloc[:2 * 12])
    assert gap == 0 and fit["as_of_date"].max() == pd.Timestamp("2026-02-19") and len(valid) == 2 * 4
    assert "history is too short" in caplog.text
    with pytest.raises(NotEnoughData, match="only 4 training as-of date"):
        search_split(spec, train.iloc[:2 * 4])


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


def _spec_rows(n: int) -> pd.DataFrame:
    """n rows with every feature of SPEC varying, and a label that follows the first numeric feature."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({c: rng.normal(size=n) for c in SPEC.features.numeric})
    for c in SPEC.features.categorical:
        frame[c] = rng.choice(["a", "b", "c"], size=n)
    frame[SPEC.label] = (frame[SPEC.features.numeric[0]] > 0).astype(float)
    # the purchase summary of a BTYD model is consistent: 0 <= x, 0 <= t_x <= T
    btyd = SPEC.features.btyd
    frame[btyd.age] = rng.integers(0, 300, size=n)
    frame[btyd.recency] = np.floor(frame[btyd.age] * rng.uniform(size=n))
    frame[btyd.frequency] = rng.poisson(2.0, size=n) * (frame[btyd.recency] > 0)
    return frame


def test_uninformative_names_never_observed_and_constant_features():
    frame = _spec_rows(200)
    assert uninformative(SPEC, frame) == []
    never, constant, category = SPEC.features.numeric[1], SPEC.features.numeric[2], SPEC.features.categorical[0]
    frame[never], frame[constant], frame[category] = np.nan, 0.0, "unknown"
    frame.loc[5, constant] = np.nan  # missing values do not make a constant informative
    assert uninformative(SPEC, frame) == [c for c in SPEC.feature_names if c in {never, constant, category}]


def test_pipeline_keeps_a_never_observed_feature_as_an_input():
    frame = _spec_rows(300)
    never = SPEC.features.numeric[1]
    frame[never] = np.nan
    model = build_pipeline(SPEC, "logistic_regression", {}).fit(frame[SPEC.feature_names], frame[SPEC.label])
    # the fitted preprocessing still has one output per numeric feature (and the three BG/NBD features after
    # them), the empty one a constant 0 after scaling
    with_btyd = model.named_steps["btyd"].transform(frame[SPEC.feature_names])
    columns = [*SPEC.features.numeric, *BtydFeatures.OUTPUTS]
    numeric = model.named_steps["features"].named_transformers_["num"].transform(with_btyd[columns])
    assert numeric.shape == (300, len(SPEC.features.numeric) + 3)
    assert (numeric[:, SPEC.features.numeric.index(never)] == 0).all()
    assert model.predict_proba(frame[SPEC.feature_names]).shape == (300, 2)


@pytest.mark.parametrize("candidate", ["hist_gradient_boosting", "logistic_regression"])
def test_predict_scores_in_parts_what_the_model_scores_at_once(monkeypatch, candidate):
    from mlscale.modeling import judging

    frame = _spec_rows(1000)
    model = build_pipeline(SPEC, candidate, {}).fit(frame[SPEC.feature_names], frame[SPEC.label])
    X = frame[SPEC.feature_names].iloc[::-1]  # any index: parts are taken by position
    at_once = model.predict_proba(X)[:, 1]
    monkeypatch.setattr(judging, "PREDICT_ROWS", 300)  # parts of 300, 300, 300 and 100 rows
    calls, predict_proba = [], model.predict_proba
    monkeypatch.setattr(model, "predict_proba", lambda part: calls.append(len(part)) or predict_proba(part))
    in_parts = judging.predict(SPEC, model, X)
    assert calls == [300, 300, 300, 100]
    np.testing.assert_allclose(in_parts, at_once, rtol=1e-12, atol=0)
    assert len(set(np.round(in_parts, 6))) > 50  # real, varied scores
