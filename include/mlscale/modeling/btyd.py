"""Buy-till-you-die models fitted by maximum likelihood: BG/NBD and Gamma-Gamma.

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way") describes a customer by x repeat
purchases, the time t_x of the last one after the first, and the time T since the first: while alive they
buy at a Poisson rate λ ~ Gamma(r, α), and after each purchase they drop out with probability p ~ Beta(a, b).
Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV"; Fader & Hardie 2013 note) models the mean spend of a
customer with x ≥ 1 repeat purchases of mean value m: spend per purchase ~ Gamma(p, ν), ν ~ Gamma(q, γ).

A compact implementation instead of a library, for the reason README's *BTYD baselines* gives (figures
measured here); `tests/unit/test_btyd.py` reproduces the published estimates on the CDNOW sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1
from sklearn.base import BaseEstimator, TransformerMixin

# BG/NBD fits inside a model use at most this many rows, sampled (seeded) over all of its training rows.
FIT_ROWS, SEED = 50_000, 7


@dataclass(frozen=True)
class BetaGeo:
    """A fitted BG/NBD model (time unit: whatever x, t_x and T were given in)."""

    r: float
    alpha: float
    a: float
    b: float

    def _odds_dead(self, x, t_x, T) -> np.ndarray:
        """a / (b + x - 1) * ((α + T) / (α + t_x))^(r + x) for x > 0, else 0: P(dead) / P(alive)."""
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        with np.errstate(divide="ignore", invalid="ignore"):
            log_odds = (np.log(self.a) - np.log(np.maximum(self.b + x - 1, 1e-12))
                        + (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x)))
        return np.where(x > 0, np.exp(np.minimum(log_odds, 700)), 0.0)

    def p_alive(self, x, t_x, T) -> np.ndarray:
        """P(the customer is still alive at T | x, t_x, T)."""
        return 1.0 / (1.0 + self._odds_dead(x, t_x, T))

    def p_no_purchase(self, x, t_x, T, t: float) -> np.ndarray:
        """P(no purchase in (T, T + t] | x, t_x, T): dead, or alive and without a purchase in t."""
        x, T = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
        alive = self.p_alive(x, t_x, T)
        return 1.0 - alive + alive * ((self.alpha + T) / (self.alpha + T + t)) ** (self.r + x)

    def expected_purchases(self, x, t_x, T, t: float) -> np.ndarray:
        """E[purchases in (T, T + t] | x, t_x, T] (the paper's equation 10)."""
        x, T = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
        num = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
        return num / (1.0 + self._odds_dead(x, t_x, T))


def _bgnbd_loglik(params: np.ndarray, x, t_x, T) -> float:
    r, alpha, a, b = np.exp(params)
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    term1 = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        term2 = np.where(x > 0, betaln(a + 1, np.maximum(b + x - 1, 1e-12)) - betaln(a, b)
                         - (r + x) * np.log(alpha + t_x), -np.inf)
    return float(np.sum(common + np.logaddexp(term1, term2)))


def _fit(loglik, start: np.ndarray, *data) -> np.ndarray:
    """Maximum likelihood over log parameters (so they stay positive); raises when the optimiser fails.

    L-BFGS-B with numerical gradients: on 50,000 rows of the CDNOW log, 105 likelihood evaluations and 0.7 s
    against Nelder-Mead's 4.2 s, to the same estimates (3 decimals); Nelder-Mead remains the fallback.
    """
    res = minimize(lambda p: -loglik(p, *data), start, method="L-BFGS-B")
    if not res.success or not np.isfinite(res.fun):
        res = minimize(lambda p: -loglik(p, *data), start, method="Nelder-Mead",
                       options={"xatol": 1e-7, "fatol": 1e-7, "maxiter": 20_000, "maxfev": 20_000})
    if not res.success:
        raise RuntimeError(f"BTYD fit did not converge: {res.message}")
    return np.exp(res.x)


def fit_beta_geo(x, t_x, T) -> BetaGeo:
    """BG/NBD parameters by maximum likelihood from per-customer x (repeat purchases), t_x and T."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    if len(x) == 0 or np.any(t_x > T) or np.any(x < 0):
        raise ValueError("BG/NBD needs customers with 0 <= x and t_x <= T")
    return BetaGeo(*_fit(_bgnbd_loglik, np.log([0.5, float(np.mean(T)) or 1.0, 1.0, 1.0]), x, t_x, T))


@dataclass(frozen=True)
class GammaGamma:
    """A fitted Gamma-Gamma spend model."""

    p: float
    q: float
    gamma: float

    def expected_spend(self, x, m) -> np.ndarray:
        """E[mean spend per purchase | x repeat purchases of mean value m]; the population mean when x = 0."""
        x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
        population = self.p * self.gamma / (self.q - 1)
        weight = self.p * x / (self.p * x + self.q - 1)
        return (1 - weight) * population + weight * np.where(x > 0, m, 0.0)


def _gamma_gamma_loglik(params: np.ndarray, x, m) -> float:
    p, q, gamma = np.exp(params)
    px = p * x
    return float(np.sum(gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(gamma)
                        + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * np.log(gamma + x * m)))


def fit_gamma_gamma(x, m) -> GammaGamma:
    """Gamma-Gamma parameters by maximum likelihood from customers with x >= 1 repeat purchases of mean value m > 0."""
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    keep = (x > 0) & (m > 0)
    if keep.sum() < 2:
        raise ValueError("Gamma-Gamma needs at least two customers with a repeat purchase and a positive spend")
    return GammaGamma(*_fit(_gamma_gamma_loglik, np.log([1.0, 2.0, float(np.mean(m[keep]))]), x[keep], m[keep]))


def summary(columns, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) of each row, from the columns a spec's `Btyd` names (frequency, recency, age)."""
    return tuple(frame[c].to_numpy(dtype=float) for c in (columns.frequency, columns.recency, columns.age))


def sample(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The rows a BTYD model is fitted on: complete rows, at most FIT_ROWS of them (seeded)."""
    rows = frame.dropna(subset=columns)
    return rows.sample(n=min(FIT_ROWS, len(rows)), random_state=SEED)


class BtydFeatures(TransformerMixin, BaseEstimator):
    """A pipeline step that appends BG/NBD's view of each row: P(alive), the expected purchases and P(no
    purchase) in the next `horizon_days`, from a BG/NBD fitted on the rows the pipeline is fitted on.

    Inside the model, so scoring computes them from the same features, with the parameters of training.
    """

    OUTPUTS = ("btyd_p_alive", "btyd_expected_purchases", "btyd_p_no_purchase")

    def __init__(self, horizon_days: int = 90, frequency: str = "repeat_order_days",
                 recency: str = "first_to_last_order_days", age: str = "tenure_days"):
        self.horizon_days, self.frequency, self.recency, self.age = horizon_days, frequency, recency, age

    def fit(self, X: pd.DataFrame, y=None) -> "BtydFeatures":
        fitted = fit_beta_geo(*summary(self, sample(X, [self.frequency, self.recency, self.age])))
        self.params_ = [float(v) for v in (fitted.r, fitted.alpha, fitted.a, fitted.b)]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        model, (x, t_x, T) = BetaGeo(*self.params_), summary(self, X)
        with np.errstate(invalid="ignore"):  # a row without its summary gets NaN, imputed downstream
            return X.assign(**dict(zip(self.OUTPUTS, (model.p_alive(x, t_x, T),
                                                      model.expected_purchases(x, t_x, T, self.horizon_days),
                                                      model.p_no_purchase(x, t_x, T, self.horizon_days)))))
