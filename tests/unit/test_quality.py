"""GX suite files: what the shipped suites declare, and a clear error for a malformed one."""

import re
from pathlib import Path

import pytest

from mlscale.config import ROOT, Settings
from mlscale.data.quality import load_suite, suites

SETTINGS = Settings.from_env({"MLSCALE_ROOT": str(ROOT)})


def test_suites_are_found_per_layer_and_all_load():
    assert suites(SETTINGS, "raw") == ["raw_ingest_batch", "raw_orders", "raw_orders_per_file"]
    assert suites(SETTINGS, "mart") == ["mart_customer_features", "mart_customer_labels"]
    for name in suites(SETTINGS, "raw") + suites(SETTINGS, "mart"):
        spec = load_suite(SETTINGS.gx_dir / f"{name}.yml")
        assert spec["name"] == name and spec["expectations"]
    with pytest.raises(ValueError, match="layer must be 'raw' or 'mart', got 'marts'"):
        suites(SETTINGS, "marts")


def test_only_the_label_suite_is_declared_skippable_when_empty():
    features = load_suite(SETTINGS.gx_dir / "mart_customer_features.yml")
    labels = load_suite(SETTINGS.gx_dir / "mart_customer_labels.yml")
    # An empty feature mart must fail its row count, not be skipped; no matured label yet is nothing to check.
    assert not features.get("skip_when_empty", False) and features.get("scope", "all") == "all"
    assert labels["skip_when_empty"] is True
    assert [e["type"] for e in labels["expectations"]] == ["expect_column_mean_to_be_between"]


def test_the_mart_suites_select_the_columns_their_expectations_read_and_no_other():
    for name in suites(SETTINGS, "mart"):
        suite = load_suite(SETTINGS.gx_dir / f"{name}.yml")
        selected = re.split(r"\sfrom\s", suite["query"], maxsplit=1)[0].removeprefix("select ")
        read = {e["kwargs"][k] for e in suite["expectations"] for k in ("column", "column_A", "column_B")
                if k in e.get("kwargs", {})}
        # a column, or an expression named with `as`
        assert sorted(c.split(" as ")[-1].strip() for c in selected.split(",")) == sorted(read), name


@pytest.mark.parametrize(("body", "error"), [
    ("name: s\ntable: t\nexpectations: []\n", "table must be schema-qualified, got 't'"),
    ("name: s\nquery: select 1\ntable: ml.t\nexpectations: []\n", "give exactly one of 'table' and 'query'"),
    ("name: s\ntable: ml.t\nscope: today\nexpectations: []\n", "scope must be 'all' or 'batch'"),
    ("name: s\nquery: select 1\nskip_when_empty: sometimes\nexpectations: []\n", "skip_when_empty must be true or false"),
    ("name: s\ntable: ml.t\nskip_when_empty: true\nexpectations: []\n", "skip_when_empty applies to a query suite"),
    ("name: s\nquery: select 1\ncopy: no thanks\nexpectations: []\n", "copy must be true or false"),
    ("name: s\ntable: ml.t\ncopy: false\nexpectations: []\n", "copy applies to a query or batch suite"),
    ("name: s\ntable: ml.t\nexpectations:\n  - {type: expect_column_values_to_be_bluish}\n",
     "unknown expectation type 'expect_column_values_to_be_bluish'"),
    ("name: s\ntable: ml.t\nexpectations:\n  - {type: expect_table_row_count_to_be_between, severity: fatal}\n",
     "expectation 0: severity must be one of"),
])
def test_a_malformed_suite_names_the_file_and_the_problem(tmp_path: Path, body: str, error: str):
    path = tmp_path / "bad_suite.yml"
    path.write_text(body)
    with pytest.raises(ValueError) as exc:
        load_suite(path)
    assert str(exc.value).startswith(f"{path}: ") and error in str(exc.value)


@pytest.mark.parametrize("run_id, name", [
    ("manual__2026-12-07T00:00:00.123+00:00", "manual__2026-12-07T00:00:00.123+00:00"),  # Airflow's ids: unchanged
    ("asset_triggered__2026-12-07T06:00:00+00:00_aBc12", "asset_triggered__2026-12-07T06:00:00+00:00_aBc12"),
    ("../../etc", ".._.._etc"), ("a b'c;d", "a_b_c_d"), ("..", "__"), (".", "_"), ("", "_"),
])
def test_a_run_id_becomes_a_gx_run_name_that_is_one_folder_of_its_own(run_id, name):
    from mlscale.data.quality import _run_name

    assert _run_name(run_id) == name
