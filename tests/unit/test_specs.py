import csv

import pytest
import yaml

from mlscale.specs import SPECS_DIR, SpecError, improvement, load_spec, load_specs


def _write(tmp_path, name="churn_90d", source="churn_90d", **changes):
    """A copy of a shipped spec with top-level fields replaced; dotted keys reach into nested fields."""
    data = yaml.safe_load((SPECS_DIR / f"{source}.yml").read_text())
    for key, value in changes.items():
        *parents, leaf = key.split("__")
        node = data
        for p in parents:
            node = node[p]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_specs_load():
    specs = load_specs()
    assert set(specs) == {"churn_90d", "revenue_90d"}
    assert (specs["churn_90d"].task, specs["churn_90d"].label) == ("classification", "churned_90d")
    assert (specs["revenue_90d"].task, specs["revenue_90d"].label) == ("regression", "revenue_next_90d")


def test_every_spec_has_economics_in_the_dbt_seed():
    with open(SPECS_DIR.parents[1] / "dbt_project" / "seeds" / "model_economics.csv") as fh:
        rows = {r["model"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(load_specs())
    for row in rows.values():
        assert 0 < float(row["margin_rate"]) <= 1 and 0 < float(row["response_rate"]) <= 1
        assert float(row["contact_cost"]) >= 0


@pytest.mark.parametrize(("changes", "message"), [
    ({"features__numeric": ["recency_days", "tenure_days", "amount_90d", "repeat_order_days",
                            "first_to_last_order_days", "tenure_dayz"]},
     r"features\.numeric: unknown column 'tenure_dayz': ml\.customer_features has no such column"),
    ({"features__categorical": ["region", "colour"]}, r"features\.categorical: unknown column 'colour'"),
    ({"label": "churned_30d"}, r"label: unknown column 'churned_30d'"),
    ({"table": "ml.no_such_table"}, r"table: no dbt model documents the columns of 'ml\.no_such_table'"),
    ({"primary_metric": "accuracy"}, r"primary_metric: unknown metric 'accuracy' for a classification model"),
    ({"promotion__staging__min_metrics": {"rmse": 10}}, r"min_metrics\.rmse: unknown metric 'rmse'"),
    ({"promotion__staging__min_metrics": {"roc_auc": 1.5}},
     r"min_metrics\.roc_auc: threshold 1\.5 is outside the metric's range \[0\.0, 1\.0\]"),
    ({"promotion__staging__min_metrics": {"roc_auc": "high"}}, r"promotion\.staging\.min_metrics\.roc_auc"),
    ({"promotion__production__min_improvement": -0.1}, r"min_improvement: Input should be greater than or equal to 0"),
    ({"candidates": [{"name": "xgboost"}]}, r"candidates\.0\.name: unknown estimator 'xgboost'"),
    ({"candidates": [{"name": "ridge"}]}, r"candidates\.0\.name: unknown estimator 'ridge' for a classification model"),
    ({"candidates": [{"name": "logistic_regression", "params": {"C": []}}]}, r"params\.C: empty list"),
    ({"candidates": []}, r"candidates: List should have at least 1 item"),
    ({"search__budget": 0}, r"search\.budget: Input should be greater than or equal to 1"),
    ({"baselines": [{"kind": "binned_mean", "feature": "region"}]},
     r"baselines\.0\.feature: 'region' is not a numeric feature"),
    ({"baselines": []}, r"baselines: List should have at least 1 item"),
    ({"baselines": [{"kind": "pareto_nbd", "horizon_days": 90}]}, r"baselines\.0: Input tag 'pareto_nbd' found using 'kind'"),
    ({"baselines": [{"kind": "bg_nbd_gamma_gamma", "horizon_days": 90}]},
     r"baselines\.0: bg_nbd_gamma_gamma predicts a regression label, this is a classification model"),
    ({"baselines": [{"kind": "bg_nbd", "horizon_days": 90, "recency": "recency_days"}, {"kind": "bg_nbd"}]},
     r"baselines\.1\.bg_nbd\.horizon_days: Field required"),
    ({"features__numeric": ["recency_days", "tenure_days", "repeat_order_days"]},
     r"baselines\.1\.recency: 'first_to_last_order_days' is not a numeric feature"),
    ({"features__btyd": {"horizon_days": 90, "frequency": "orders_90d", "age": "age_days"}},
     r"features\.btyd\.age: 'age_days' is not a numeric feature"),
    ({"promotion__staging__max_metrics": {"roc_auc": 0.9}}, r"max_metrics\.roc_auc: higher roc_auc is better, so give it under min_metrics"),
    ({"promotion__staging__min_metrics": {"calibration_error": 0.05}},
     r"min_metrics\.calibration_error: lower calibration_error is better, so give it under max_metrics"),
    ({"promotion__staging__max_metrics": {"calibration_error": 2}}, r"max_metrics\.calibration_error: threshold 2\.0 is outside"),
    ({"search__max_minutes": 0}, r"search\.max_minutes: Input should be greater than 0"),
    ({"search__max_log_loss_excess": -0.1}, r"search\.max_log_loss_excess: Input should be greater than or equal to 0"),
    ({"calibration__methods": ["platt"]}, r"calibration\.methods\.0: Input should be 'sigmoid' or 'isotonic'"),
    ({"segments__tenure_band__edges": [365, 90]}, r"segments\.tenure_band.*strictly increasing"),
    ({"segments__tenure_band__column": "churned_90d"}, r"segments\.tenure_band\.column: 'churned_90d' is not a numeric feature"),
    ({"business__top_k_share": 0}, r"business\.top_k_share: Input should be greater than 0"),
    ({"business__top_k_share": 1.5}, r"business\.top_k_share: Input should be less than or equal to 1"),
    ({"business__value_column": "region"}, r"business\.value_column: 'region' is not a numeric feature"),
    ({"features__numeric": ["recency_days", "recency_days"]}, r"features: listed twice: \['recency_days'\]"),
    ({"features__numeric": ["recency_days", "churned_90d"]}, r"label: 'churned_90d' is also a feature"),
    ({"intended_use": None}, r"intended_use: Field required"),
    ({"colour": "red"}, r"colour: Extra inputs are not permitted"),
    ({"task": "ranking"}, r"task: Input should be 'classification' or 'regression'"),
    ({"monitoring__feature_psi": 0}, r"monitoring\.feature_psi: Input should be greater than 0"),
    ({"monitoring__bins": 1}, r"monitoring\.bins: Input should be greater than or equal to 2"),
    ({"monitoring__max_model_age_days": 0}, r"monitoring\.max_model_age_days: Input should be greater than or equal to 1"),
    ({"monitoring__retrain_on": "drift"}, r"monitoring\.retrain_on: Extra inputs are not permitted"),
])
def test_each_bad_spec_names_file_field_and_problem(tmp_path, changes, message):
    with pytest.raises(SpecError, match=r"churn_90d\.yml: .*" + message):
        load_spec(_write(tmp_path, **changes))


def test_regression_metrics_belong_to_regression_specs(tmp_path):
    with pytest.raises(SpecError, match=r"revenue_90d\.yml: primary_metric: unknown metric 'roc_auc' for a regression"):
        load_spec(_write(tmp_path, "revenue_90d", "revenue_90d", primary_metric="roc_auc"))


def test_name_must_match_file_and_yaml_must_parse(tmp_path):
    with pytest.raises(SpecError, match=r"must match the file name 'other'"):
        load_spec(_write(tmp_path, "other"))
    broken = tmp_path / "broken.yml"
    broken.write_text("name: [unclosed")
    with pytest.raises(SpecError, match=r"broken\.yml: not valid YAML"):
        load_spec(broken)


def test_specs_dir_comes_from_the_environment(tmp_path, monkeypatch):
    _write(tmp_path, "revenue_90d", "revenue_90d")
    monkeypatch.setenv("MLSCALE_SPECS_DIR", str(tmp_path))
    assert list(load_specs()) == ["revenue_90d"]


def test_search_space_of_a_candidate():
    cand = load_specs()["churn_90d"].candidates[1]
    assert cand.space["max_iter"] == [300]  # a scalar is a one-value space
    assert cand.grid_size == 1 * 1 * 2 * 3 * 2


def test_improvement_points_the_right_way():
    assert improvement("roc_auc", 0.8, 0.75) == pytest.approx(0.05)
    assert improvement("log_loss", 0.30, 0.35) == pytest.approx(0.05)
    assert improvement("rmse", 12.0, 10.0) == pytest.approx(-2.0)


def test_monitoring_section_is_optional_with_defaults(tmp_path):
    spec = load_spec(_write(tmp_path, monitoring=None))
    assert (spec.monitoring.feature_psi, spec.monitoring.max_model_age_days) == (0.25, None)
    assert load_specs()["churn_90d"].monitoring.max_model_age_days == 91


def test_btyd_baselines_and_calibration_fit_their_task(tmp_path):
    with pytest.raises(SpecError, match=r"revenue_90d\.yml: baselines\.0: bg_nbd predicts a classification label"):
        load_spec(_write(tmp_path, "revenue_90d", "revenue_90d", baselines=[{"kind": "bg_nbd", "horizon_days": 90}]))
    with pytest.raises(SpecError, match=r"revenue_90d\.yml: calibration: only a classification model"):
        load_spec(_write(tmp_path, "revenue_90d", "revenue_90d", calibration={"methods": ["sigmoid"]}))
    with pytest.raises(SpecError, match=r"revenue_90d\.yml: baselines\.1\.monetary: 'avg_order_value_all' is not"):
        load_spec(_write(tmp_path, "revenue_90d", "revenue_90d", baselines=[
            {"kind": "binned_mean", "feature": "amount_90d"},
            {"kind": "bg_nbd_gamma_gamma", "horizon_days": 90, "monetary": "avg_order_value_all"}]))
    churn, revenue = load_specs()["churn_90d"], load_specs()["revenue_90d"]
    assert [b.kind for b in churn.baselines] == ["binned_mean", "bg_nbd"]
    assert [b.kind for b in revenue.baselines] == ["binned_mean", "bg_nbd_gamma_gamma"]
    assert churn.promotion.staging.max_metrics == {"calibration_error": 0.05}
    uncapped = _write(tmp_path, promotion__staging__max_metrics={})
    assert load_spec(uncapped).promotion.staging.max_metrics == {}
    assert churn.calibration.methods == ["sigmoid"] and churn.search.max_minutes == 2
