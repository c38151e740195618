import pandas as pd
import pytest

from mlscale.modeling import lineage
from mlscale.config import Settings


def _frame():
    return pd.DataFrame({"customer_id": [1, 2], "as_of_date": pd.to_datetime(["2026-01-01", "2026-01-08"]),
                         "x": [1.5, 2.5]})


def test_content_hash_covers_values_order_and_columns():
    base = lineage.content_hash(_frame())
    assert lineage.content_hash(_frame()) == base
    changed = _frame()
    changed.loc[1, "x"] = 2.6
    assert lineage.content_hash(changed) != base
    assert lineage.content_hash(_frame().iloc[::-1]) != base
    assert lineage.content_hash(_frame().rename(columns={"x": "y"})) != base


def test_profile_and_dataset_source_round_trip():
    frame = _frame()
    assert lineage.profile(frame) == {"rows": "2", "as_of_min": "2026-01-01", "as_of_max": "2026-01-08",
                                      "content_sha256": lineage.content_hash(frame)}
    source = lineage.WarehouseTableSource("postgres://h:5432/warehouse/ml/t", "select 1")
    again = lineage.WarehouseTableSource.from_json(source.to_json())
    assert (again.uri, again.query) == (source.uri, source.query)
    assert again._get_source_type() == "postgres_table"


def test_git_commit_of_the_bundle_and_override(monkeypatch):
    settings = Settings.from_env({})
    commit = lineage.git_commit(settings)
    assert len(commit.removesuffix("+dirty")) == 40
    monkeypatch.setenv("MLSCALE_GIT_COMMIT", "abc123")
    assert lineage.git_commit(settings) == "abc123"


@pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer")
def test_frame_schema_is_what_mlflow_infers_and_rejects_other_dtypes():
    from mlflow.types.utils import _infer_schema

    # the dtypes of a feature frame (features._csv_options): ids, dates, floats with and without NaN, strings
    frame = pd.DataFrame({"customer_id": [1, 2, 3], "as_of_date": pd.to_datetime(["2026-01-01"] * 3),
                          "recency_days": [1.0, float("nan"), 3.0], "orders_7d": [0.0, 1.0, 2.0],
                          "region": ["north", None, "south"], "channel": ["web", "shop", "web"],
                          "flag": [True, False, True]})
    ours, mlflows = lineage.frame_schema(frame), _infer_schema(frame)
    assert ours.to_dict() == mlflows.to_dict()
    assert [c.required for c in ours.inputs] == [True, True, False, True, False, True, True]
    assert lineage.dataset(Settings.from_env({}), "ml.t", frame, "select 1", "orders_7d", "t").schema == ours
    try:
        lineage.frame_schema(pd.DataFrame({"c": pd.Series([1 + 2j])}))
    except TypeError as exc:
        assert "c (complex128)" in str(exc)
    else:
        raise AssertionError("a complex column has no MLflow type and must be refused")
