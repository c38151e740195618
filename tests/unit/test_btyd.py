"""BG/NBD and Gamma-Gamma reproduce the published estimates on the CDNOW sample (the data `lifetimes` ships)."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlscale.modeling.btyd import BetaGeo, GammaGamma, fit_beta_geo, fit_gamma_gamma

# The 2,357 customers of the CDNOW 1/10 sample, 39-week calibration period, time in weeks.
CDNOW = Path(importlib.util.find_spec("lifetimes").submodule_search_locations[0]) / "datasets"


def purchases_after_calibration() -> pd.DataFrame:
    """The CDNOW sample's purchases in the 39 weeks after the 39-week calibration period (columns ID, date, dollars)."""
    log = pd.read_csv(CDNOW / "CDNOW_sample.txt", sep=r"\s+", header=None, dtype={"date": str},
                      names=["master_id", "ID", "date", "cds", "dollars"])
    log["date"] = pd.to_datetime(log["date"])
    end = pd.Timestamp("1997-01-01") + pd.Timedelta(weeks=39)
    return log[(log["date"] >= end) & (log["date"] < end + pd.Timedelta(weeks=39))]


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return pd.read_csv(CDNOW / "cdnow_customers_summary_with_transactions.csv")


def test_bg_nbd_reproduces_fader_hardie_lee_2005(cdnow):
    model = fit_beta_geo(cdnow["x"], cdnow["t_x"], cdnow["T"])
    # "Counting your customers the easy way" (2005), section 5: r = 0.243, α = 4.414, a = 0.793, b = 2.426
    assert (model.r, model.alpha, model.a, model.b) == pytest.approx((0.243, 4.414, 0.793, 2.426), abs=0.002)
    # The 39 weeks after the calibration period, from the transaction log: each customer's expected
    # purchases follow what they bought (the days with a purchase, as the model counts them).
    holdout = purchases_after_calibration()
    actual = holdout.groupby("ID")["date"].nunique().reindex(cdnow["ID"], fill_value=0).to_numpy()
    expected = model.expected_purchases(cdnow["x"], cdnow["t_x"], cdnow["T"], 39)
    assert actual.sum() == 1882
    assert abs(expected.sum() - actual.sum()) / actual.sum() < 0.15
    assert np.corrcoef(actual, expected)[0, 1] > 0.55
    # and P(no purchase in those 39 weeks) ranks the customers who bought nothing (71% of them) and is calibrated
    silent = model.p_no_purchase(cdnow["x"], cdnow["t_x"], cdnow["T"], 39)
    assert roc_auc_score(actual == 0, silent) > 0.72
    assert abs(silent.mean() - (actual == 0).mean()) < 0.05


def test_bg_nbd_probabilities_behave(cdnow):
    model = BetaGeo(r=0.243, alpha=4.414, a=0.793, b=2.426)
    # no repeat purchase: alive by assumption (BG/NBD drops out only after a purchase)
    assert model.p_alive(0, 0, 38.86) == 1.0
    # the longer the silence since the last purchase, the likelier the customer is gone
    silence = model.p_alive(3, np.array([35.0, 20.0, 5.0]), 38.86)
    assert silence[0] > silence[1] > silence[2]
    no_buy = model.p_no_purchase(cdnow["x"], cdnow["t_x"], cdnow["T"], 13)
    assert ((no_buy > 0) & (no_buy < 1)).all()
    # over a longer window a purchase is likelier
    assert (model.p_no_purchase(cdnow["x"], cdnow["t_x"], cdnow["T"], 52) < no_buy).all()


def test_gamma_gamma_reproduces_fader_hardie_2013(cdnow):
    repeat = cdnow[cdnow["x"] > 0]
    model = fit_gamma_gamma(repeat["x"], repeat["zbar"])
    # "The Gamma-Gamma model of monetary value" (2013): p = 6.25, q = 3.74, γ = 15.44
    assert (model.p, model.q, model.gamma) == pytest.approx((6.25, 3.74, 15.44), abs=0.01)
    # the expected spend shrinks a customer's own mean toward the population mean, more for fewer purchases
    population = model.p * model.gamma / (model.q - 1)
    one, many = model.expected_spend([1, 20], [100.0, 100.0])
    assert population < one < many < 100
    assert model.expected_spend(0, 0) == pytest.approx(population)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="t_x <= T"):
        fit_beta_geo([1], [5.0], [3.0])
    with pytest.raises(ValueError, match="at least two customers"):
        fit_gamma_gamma([0, 1], [10.0, 12.0])
    assert GammaGamma(6.25, 3.74, 15.44).expected_spend(2, 30.0) > 0
