"""Reference profiles and the population stability index, on hand-checkable data."""

import math

import numpy as np
import pandas as pd
import pytest

from mlscale.modeling.drift import categorical_psi, numeric_profile, numeric_psi, profile, psi
from mlscale.specs import load_specs


def test_psi_matches_the_formula():
    expected, actual = [0.5, 0.5], [0.25, 0.75]
    by_hand = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi(expected, actual) == pytest.approx(by_hand)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_an_empty_bin_keeps_the_psi_finite_and_large():
    value = psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5])
    assert math.isfinite(value) and value > 4


def test_numeric_profile_uses_reference_quantiles_and_a_missing_bin():
    reference = pd.Series([1.0, 2.0, 3.0, 4.0, None])
    ref = numeric_profile(reference, bins=2)
    assert ref["edges"] == [2.5]  # the median of the known values
    assert ref["shares"] == [0.4, 0.4, 0.2]  # below, above, missing
    assert numeric_psi(ref, reference) == 0.0
    shifted = pd.Series([10.0, 11.0, 12.0, 13.0, None])  # every known value lands in the upper bin
    assert numeric_psi(ref, shifted) == pytest.approx(psi([0.4, 0.4, 0.2], [0.0, 0.8, 0.2]))


def test_categorical_psi_counts_new_and_missing_categories():
    reference = {"Europe": 0.5, "Asia Pacific": 0.5}
    now = pd.Series(["Europe", "Europe", None, "Mars"])
    value = categorical_psi(reference, now)
    # categories (missing), Asia Pacific, Europe, Mars
    assert value == pytest.approx(psi([0.0, 0.5, 0.5, 0.0], [0.25, 0.0, 0.5, 0.25]))


def test_profile_covers_every_feature_and_the_scores():
    spec = load_specs()["churn_90d"]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({c: rng.normal(size=200) for c in spec.features.numeric})
    for c in spec.features.categorical:
        frame[c] = rng.choice(["a", "b"], 200)
    ref = profile(spec, frame, rng.random(200), bins=10)
    assert set(ref["numeric"]) == set(spec.features.numeric)
    assert set(ref["categorical"]) == set(spec.features.categorical)
    assert len(ref["scores"]["edges"]) == 9 and sum(ref["scores"]["shares"]) == pytest.approx(1.0)
    # The same population has no drift; a shifted one has a lot.
    assert numeric_psi(ref["numeric"]["tenure_days"], frame["tenure_days"]) == pytest.approx(0.0)
    assert numeric_psi(ref["numeric"]["tenure_days"], frame["tenure_days"] + 1.0) > 0.25
