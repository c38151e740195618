"""The dbt var that tells int_matured_predictions each model's label, campaign value and top-k share."""

import json

from mlscale.production import outcomes
from mlscale.specs import load_specs


def test_campaigns_come_from_the_specs():
    assert outcomes.campaigns(load_specs()) == {
        "churn_90d": {"label": "churned_90d", "value_column": "amount_90d", "top_k_share": 0.1},
        "revenue_90d": {"label": "revenue_next_90d", "value_column": None, "top_k_share": 0.1},
    }
    assert json.loads(outcomes.dbt_vars(load_specs())) == {"model_campaigns": outcomes.campaigns(load_specs())}
