import pandas as pd

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
