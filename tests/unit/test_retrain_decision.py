"""The retrain decision and the checks that need no database: breaches, cooldown, model age, drift checks."""

from datetime import date

import numpy as np
import pandas as pd

from mlscale.modeling.drift import profile
from mlscale.production.monitoring import Check, age_check, decide, drift_checks
from mlscale.specs import load_specs

SPEC = load_specs()["churn_90d"]  # feature_psi 0.25, max_model_age_days 91, min_days_between_retrains 28


def _check(breach: bool, detail: str = "PSI of recency_days 0.400") -> Check:
    return Check("feature_psi", "recency_days", 0.4 if breach else 0.1, 0.25, breach, detail)


def test_no_breach_no_retrain():
    assert decide(SPEC, [_check(False)], date(2026, 11, 1), None) == (False, "no breach")


def test_a_breach_asks_for_a_retrain_with_its_reason():
    retrain, reason = decide(SPEC, [_check(False), _check(True)], date(2026, 11, 1), None)
    assert retrain and reason == "PSI of recency_days 0.400"


def test_cooldown_holds_a_breach_back_until_enough_days_passed():
    retrain, reason = decide(SPEC, [_check(True)], date(2026, 11, 1), date(2026, 10, 11))  # 21 days
    assert not retrain and reason.startswith("breach, but a retrain was asked for at as-of 2026-10-11")
    assert decide(SPEC, [_check(True)], date(2026, 11, 8), date(2026, 10, 11))[0]  # 28 days


def test_age_is_counted_in_data_days_from_the_training_data():
    tags = {"mlscale.data_as_of": "2026-08-01", "test_as_of": "2026-05-01"}
    young = age_check(SPEC, tags, date(2026, 10, 30))  # 90 days
    old = age_check(SPEC, tags, date(2026, 10, 31))  # 91 days
    assert (young.value, young.breach, old.value, old.breach) == (90, False, 91, True)
    # Versions registered before data_as_of was tagged fall back to their test as-of date.
    assert age_check(SPEC, {"test_as_of": "2026-05-01"}, date(2026, 10, 31)).value == 183


def test_drift_checks_flag_the_shifted_feature_and_the_scores():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({c: rng.normal(size=1000) for c in SPEC.features.numeric})
    for c in SPEC.features.categorical:
        frame[c] = rng.choice(["a", "b", "c"], 1000)
    scores = rng.random(1000)
    reference = profile(SPEC, frame, scores, bins=10)
    today = frame.assign(amount_90d=frame["amount_90d"] * 1.5 + 1)
    checks = {c.subject: c for c in drift_checks(SPEC, reference, today, scores ** 3)}
    assert len(checks) == len(SPEC.feature_names) + 1
    assert [s for s, c in checks.items() if c.breach] == ["amount_90d", "scores"]
    assert checks["amount_90d"].value > 0.25 and checks["recency_days"].value < 0.01
