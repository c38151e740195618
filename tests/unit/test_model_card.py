"""The model card says what a reviewer needs, from what training measured (training.fit_and_log's facts)."""

from mlscale.modeling.model_card import render
from mlscale.specs import load_specs

SPEC = load_specs()["churn_90d"]


def _facts(**changes) -> dict:
    facts = {
        "candidate": "logistic_regression", "params": {"C": 0.1}, "configurations": 7,
        "not_tried": [], "excluded": [], "calibration": "sigmoid",
        "calibration_log_loss": {"none": 0.4012, "sigmoid": 0.3871},
        "train_rows": 12000, "train_sample_share": 1.0, "test_rows": 556, "train_as_of_min": "2026-01-29", "train_as_of_max": "2026-03-26",
        "test_as_of": "2026-06-25",
        "metrics": {"roc_auc": 0.908, "calibration_error": 0.038},
        "baseline_metrics": {"roc_auc": 0.883, "calibration_error": 0.175}, "baseline": "BG/NBD P(no purchase)",
        "baselines": {"bg_nbd": {"describe": "BG/NBD", "metrics": {"roc_auc": 0.883, "calibration_error": 0.175}},
                      "binned_mean_recency_days": {"describe": "recency rule",
                                                   "metrics": {"roc_auc": 0.8825, "calibration_error": 0.076}}},
        "business": {"targeted": 56, "expected_profit": 101.5, "profit": 98.25, "profit_random": 12.0,
                     "profit_uplift": 86.25},
        "segments": [{"segment": "region", "value": "Europe", "rows": 300, "label_mean": 0.41,
                      "metrics": {"roc_auc": 0.91}}],
        "importance": [{"feature": "recency_days", "importance_mean": 0.12, "importance_std": 0.01},
                       {"feature": "age", "importance_mean": 0.001, "importance_std": 0.001}],
        "registered": True, "reason": "beats the baseline",
        "lineage": {"dbt_invocation_id": "inv-1", "git_commit": "abc123", "train_sha256": "f" * 64},
        "uninformative_features": [], "currency": "EUR",
    }
    return {**facts, **changes}


def test_the_card_shows_the_choice_the_calibration_and_every_baseline_side_by_side():
    card = render(SPEC, _facts())
    assert card.startswith("# Model card: churn_90d\n")
    assert "**Outcome of this run:** registered as a candidate for promotion." in card
    assert "`logistic_regression` with {'C': 0.1}, chosen by validation\n`roc_auc` among 7 configurations" in card
    assert "Probabilities: recalibrated by sigmoid (held-out validation log loss: none 0.4012, sigmoid 0.3871" in card
    assert "| metric | model | bg_nbd | binned_mean_recency_days |" in card
    assert "| roc_auc | 0.9080 | 0.8830 | 0.8825 |" in card and "| calibration_error | 0.0380 | 0.1750 | 0.0760 |" in card
    assert "test as-of date 2026-06-25 (556 rows), at least 90 days" in card
    assert "2026-01-29 to 2026-03-26 (12000 rows);" in card
    assert "2026-01-29 to 2026-03-26 (12000 rows, a sample of 21.5% of the customers (split.max_train_rows));" in render(
        SPEC, _facts(train_sample_share=0.2149))
    assert "(uplift +86.25 EUR)" in card and "| region | Europe | 300 | 0.4100 | 0.91" in card
    assert card.index("| recency_days |") < card.index("| age |")  # most important first
    assert "Every feature varies in the training rows." in card


def test_money_is_in_the_landing_contracts_currency():
    card = render(SPEC, _facts(currency="USD"))
    assert "the model expected 101.50 USD; acting on it earned 98.25 USD" in card and "EUR" not in card


def test_the_card_says_what_was_not_tried_excluded_or_not_learnable_and_why_it_was_not_registered():
    card = render(SPEC, _facts(
        registered=False, reason="test roc_auc 0.87 vs the strongest baseline 0.88", calibration=None,
        not_tried=["hist_gradient_boosting {'max_leaf_nodes': 31}"],
        excluded=["logistic_regression {'C': 10.0}: validation roc_auc 0.9100, log loss 0.5000 over the bound 0.4200"],
        uninformative_features=["sessions_30d", "region"]))
    assert "**not registered**: test roc_auc 0.87 vs the strongest baseline 0.88." in card
    assert "time budget left 1 configuration(s) untried: hist_gradient_boosting {'max_leaf_nodes': 31}." in card
    assert "for their validation log loss: logistic_regression {'C': 10.0}: validation roc_auc 0.9100" in card
    assert "Probabilities: not recalibrated (held-out validation log loss: none 0.4012" in card
    assert "(never observed or constant, so the model cannot use them; usually an optional feed that is not " \
           "delivered): sessions_30d, region." in card
