"""Model choice: the log-loss bound on selection, calibration on held-out as-of dates, the BTYD features and
baselines (on the CDNOW sample that `lifetimes` ships)."""

import numpy as np
import pandas as pd
import pytest
from skops.io import dumps, loads
from sklearn.linear_model import LogisticRegression

from mlscale.modeling import btyd, evaluation
from mlscale.modeling.baseline import measure_all
from mlscale.modeling.selection import Tried, calibrate, choose
from mlscale.specs import BinnedMeanBaseline, BtydBaseline, Candidate, Features, load_specs
from tests.unit.test_btyd import CDNOW, purchases_after_calibration

CHURN, REVENUE = load_specs()["churn_90d"], load_specs()["revenue_90d"]
LR, HGB = Candidate(name="logistic_regression"), Candidate(name="hist_gradient_boosting")


def _tried(candidate, auc, log_loss):
    return Tried(candidate, {"auc": auc}, {"roc_auc": auc, "log_loss": log_loss}, model=None)


def test_selection_keeps_to_the_log_loss_bound_and_says_what_it_excluded():
    sharp_but_miscalibrated = _tried(LR, 0.80, 0.70)
    calibrated = _tried(HGB, 0.78, 0.50)
    close = _tried(HGB, 0.79, 0.515)
    chosen, excluded = choose(CHURN, [sharp_but_miscalibrated, calibrated, close])
    # bound = best log loss 0.50 + 0.02: the 0.80 model is out, the best of the rest wins
    assert chosen is close
    assert excluded == ["logistic_regression {'auc': 0.8}: validation roc_auc 0.8000, log loss 0.7000 over the "
                        "bound 0.5200"]
    loose = CHURN.model_copy(update={"search": CHURN.search.model_copy(update={"max_log_loss_excess": 0.5})})
    assert choose(loose, [sharp_but_miscalibrated, calibrated, close]) == (sharp_but_miscalibrated, [])
    # regression has no probabilities: the primary metric alone decides (rmse: lower is better)
    ridge = [Tried(Candidate(name="ridge"), {"alpha": a}, {"rmse": r}, None) for a, r in ((1, 12.0), (10, 11.0))]
    assert choose(REVENUE, ridge) == (ridge[1], [])


def _churn_frame(n_per_date: int, dates: list[str], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for d in dates:
        x = rng.normal(size=n_per_date)
        churned = rng.uniform(size=n_per_date) < 1 / (1 + np.exp(-(x - 1.5)))  # about 22% churn
        rows.append(pd.DataFrame({"as_of_date": pd.Timestamp(d), "recency_days": x, "churned_90d": churned * 1.0}))
    return pd.concat(rows, ignore_index=True)


def test_calibration_repairs_a_balanced_class_weight_on_held_out_dates():
    spec = CHURN.model_copy(update={"features": Features(numeric=["recency_days"])})
    fit = _churn_frame(3000, ["2026-01-01"], seed=1)
    valid = _churn_frame(1500, ["2026-02-01", "2026-02-08", "2026-02-15", "2026-02-22"], seed=2)
    test = _churn_frame(6000, ["2026-06-01"], seed=3)
    # class_weight balanced ranks as well but pushes every probability toward 0.5
    model = LogisticRegression(class_weight="balanced").fit(fit[["recency_days"]], fit["churned_90d"])
    before = model.predict_proba(test[["recency_days"]])[:, 1]
    result = calibrate(spec, model, model, valid)
    after = result.model.predict_proba(test[["recency_days"]])[:, 1]
    y = test["churned_90d"].to_numpy()
    assert result.method in ("sigmoid", "isotonic")
    assert result.log_loss[result.method] < result.log_loss["none"] - 0.05
    assert evaluation.calibration_error(y, before) > 0.15
    assert evaluation.calibration_error(y, after) < 0.03
    # the ranking is the model's: sigmoid keeps it exactly, isotonic up to ties
    assert evaluation.metric("roc_auc", y, after) == pytest.approx(evaluation.metric("roc_auc", y, before), abs=0.01)
    # with every method removed, nothing changes
    none = calibrate(spec.model_copy(update={"calibration": spec.calibration.model_copy(update={"methods": []})}),
                     model, model, valid)
    assert none.method is None and none.model is model


@pytest.fixture(scope="module")
def cdnow_rows() -> pd.DataFrame:
    """The 2,357 CDNOW customers at the end of their 39-week calibration period, as feature rows (in weeks),
    with the 39 weeks after it as labels: no purchase (churn) and the purchases made."""
    summary = pd.read_csv(CDNOW / "cdnow_customers_summary_with_transactions.csv")
    later = purchases_after_calibration()
    bought = later.groupby("ID")["date"].nunique().reindex(summary["ID"], fill_value=0).to_numpy()
    spent = later.groupby("ID")["dollars"].sum().reindex(summary["ID"], fill_value=0).to_numpy()
    return pd.DataFrame({"repeat_order_days": summary["x"], "first_to_last_order_days": summary["t_x"],
                         "tenure_days": summary["T"], "recency_days": summary["T"] - summary["t_x"],
                         "lifetime_avg_order_value": summary["zbar"].where(summary["x"] > 0, np.nan),
                         "amount_90d": 0.0, "churned_90d": (bought == 0) * 1.0, "revenue_next_90d": spent})


def test_btyd_features_are_fitted_with_the_pipeline_and_travel_with_it(cdnow_rows):
    step = btyd.BtydFeatures(horizon_days=39).fit(cdnow_rows)
    # on fewer rows than FIT_ROWS it is the maximum-likelihood fit of the published paper
    assert step.params_ == pytest.approx([0.243, 4.414, 0.793, 2.426], abs=0.002)
    out = step.transform(cdnow_rows)
    model = btyd.BetaGeo(*step.params_)
    x, t_x, T = cdnow_rows["repeat_order_days"], cdnow_rows["first_to_last_order_days"], cdnow_rows["tenure_days"]
    assert list(out.columns) == [*cdnow_rows.columns, *btyd.BtydFeatures.OUTPUTS]
    assert np.allclose(out["btyd_p_alive"], model.p_alive(x, t_x, T))
    assert np.allclose(out["btyd_p_no_purchase"], model.p_no_purchase(x, t_x, T, 39))
    # saved with skops as the registry saves a model, it loads and computes the same features
    restored = loads(dumps(step), trusted=["mlscale.modeling.btyd.BtydFeatures"])
    assert restored.transform(cdnow_rows).equals(out)


def test_the_strongest_baseline_is_the_one_to_beat(cdnow_rows):
    weeks = {"horizon_days": 39}
    churn = CHURN.model_copy(update={
        "features": Features(numeric=["recency_days", "tenure_days", "repeat_order_days", "first_to_last_order_days"]),
        "baselines": [BinnedMeanBaseline(kind="binned_mean", feature="recency_days", bins=10),
                      BtydBaseline(kind="bg_nbd", **weeks)]})
    train, test = cdnow_rows.iloc[::2], cdnow_rows.iloc[1::2]  # fitted on half of the customers, judged on the rest
    measured = measure_all(churn, train, test)
    # strongest first; on this sample the recency rule and BG/NBD rank the silent customers about as well
    assert {m.name for m in measured} == {"bg_nbd", "binned_mean_recency_days"}
    assert measured[0].metrics["roc_auc"] >= measured[1].metrics["roc_auc"] > 0.7
    bg_nbd = next(m for m in measured if m.name == "bg_nbd")
    assert bg_nbd.model.describe() == "BG/NBD P(no purchase in 39 days), fitted on 1179 training rows"
    assert bg_nbd.metrics["calibration_error"] < 0.06
    assert np.array_equal(bg_nbd.scores, bg_nbd.model.predict_proba(test)[:, 1])

    revenue = REVENUE.model_copy(update={
        "features": Features(numeric=["amount_90d", "tenure_days", "repeat_order_days", "first_to_last_order_days",
                                      "lifetime_avg_order_value"]),
        "baselines": [BinnedMeanBaseline(kind="binned_mean", feature="amount_90d", bins=20),
                      BtydBaseline(kind="bg_nbd_gamma_gamma", **weeks)]})
    measured = measure_all(revenue, train, test)
    # amount_90d is 0 for everyone here: the binned mean is the overall mean, which BTYD beats on rmse
    assert [m.name for m in measured] == ["bg_nbd_gamma_gamma", "binned_mean_amount_90d"]
    assert measured[0].metrics["rmse"] < measured[1].metrics["rmse"]
    forecast = measured[0].scores
    assert abs(forecast.sum() - test["revenue_next_90d"].sum()) / test["revenue_next_90d"].sum() < 0.2
