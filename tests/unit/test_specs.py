import pytest
import yaml

from mlscale.specs import SPECS_DIR, SpecError, load_spec, load_specs


def _write(tmp_path, name, **changes):
    data = yaml.safe_load((SPECS_DIR / "churn_90d.yml").read_text())
    data.update(changes)
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_specs_load():
    specs = load_specs()
    assert "churn_90d" in specs
    assert specs["churn_90d"].label == "churned_90d"


def test_unknown_metric_names_file_and_field(tmp_path):
    path = _write(tmp_path, "churn_90d", primary_metric="accuracy")
    with pytest.raises(SpecError, match=r"churn_90d\.yml: .*unknown metric 'accuracy'"):
        load_spec(path)


def test_unknown_estimator(tmp_path):
    path = _write(tmp_path, "churn_90d", candidates=[{"name": "xgboost"}])
    with pytest.raises(SpecError, match=r"candidates\.0.*unknown estimator 'xgboost'"):
        load_spec(path)


def test_unknown_field_and_name_mismatch(tmp_path):
    with pytest.raises(SpecError, match=r"colour: Extra inputs are not permitted"):
        load_spec(_write(tmp_path, "churn_90d", colour="red"))
    with pytest.raises(SpecError, match=r"must match the file name 'other'"):
        load_spec(_write(tmp_path, "other"))


def test_bad_threshold_type(tmp_path):
    path = _write(tmp_path, "churn_90d", promotion={"staging": {"min_metrics": {"roc_auc": "high"}},
                                                    "production": {"min_improvement": 0}})
    with pytest.raises(SpecError, match=r"promotion\.staging\.min_metrics\.roc_auc"):
        load_spec(path)


def test_improvement_points_the_right_way():
    from mlscale.specs import improvement

    assert improvement("roc_auc", 0.8, 0.75) == pytest.approx(0.05)
    assert improvement("log_loss", 0.30, 0.35) == pytest.approx(0.05)
    assert improvement("rmse", 12.0, 10.0) == pytest.approx(-2.0)
