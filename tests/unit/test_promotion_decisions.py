import pytest

from mlscale.config import Settings
from mlscale.production.promotion import Decision, decision_dict, decision_from_dict, promote, switch
from mlscale.registry import RegistryError
from mlscale.specs import load_specs

SPEC = load_specs()["churn_90d"]


def test_a_spec_that_requires_approval_cannot_be_promoted_without_an_approver():
    spec = SPEC.model_copy(update={"promotion": SPEC.promotion.model_copy(update={"approval": "required"})})
    # Raised before any registry or database access: the settings point nowhere.
    nowhere = Settings.from_env({"MLSCALE_PG_DSN": "postgresql://nobody@127.0.0.1:1/none"})
    with pytest.raises(RegistryError, match=r"churn_90d requires approval: run promote_churn_90d in Airflow"):
        promote(nowhere, spec, "3")


def test_only_a_pending_decision_can_be_switched():
    nowhere = Settings.from_env({"MLSCALE_PG_DSN": "postgresql://nobody@127.0.0.1:1/none"})
    rejected = Decision("churn_90d", "3", "rejected", "None", "staging gate: ...")
    with pytest.raises(RegistryError, match=r"churn_90d v3 is rejected, not pending: nothing to switch"):
        switch(nowhere, SPEC, rejected)


def test_decisions_survive_the_xcom_round_trip():
    d = Decision("churn_90d", "3", "pending", "Staging", "ok", "2", {"roc_auc": 0.9}, {"roc_auc": 0.8},
                 {"staging": {"passed": True}})
    assert decision_from_dict(decision_dict(d)) == d
