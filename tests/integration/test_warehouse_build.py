"""dbt builds the warehouse on real PostgreSQL, and the feature mart matches features computed by hand."""

import json
import logging
import re
import shutil

import pandas as pd
import psycopg
import pytest

from mlscale import postgres
from mlscale.local.datagen import ShopParams, generate, read_landing
from mlscale.data.ingest import ingest_landing, retract_file
from mlscale.data import quality
from mlscale.data.quality import DataQualityError, docs_dir, gate
from mlscale.data.warehouse import DbtFailed, StaleSource, claim_batch, freshness_target, publish_batch, source_freshness
from tests.helpers import build, dbt, empty_warehouse, query, scalar, update_features

pytestmark = pytest.mark.integration
# 200 days: the last as-of dates see orders from before the 180-day active window (the lifetime summary)
PARAMS = ShopParams(customers=250, days=200, seed=5)


def _expected(orders: pd.DataFrame, sessions: pd.DataFrame, as_of: pd.Timestamp, last_day: pd.Timestamp) -> pd.DataFrame:
    """Point-in-time features computed in pandas from the landing files."""
    def day(col):
        return pd.to_datetime(col).dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize()

    o = orders.assign(d=day(orders["ordered_at"]), amount=orders["amount"].astype(float),
                      customer_id=orders["customer_id"].astype(int))
    first_order = o.groupby("customer_id")["d"].min()
    past = o[(o["d"] < as_of) & (o["d"] >= as_of - pd.Timedelta(days=180))]
    g = past.groupby("customer_id")
    s = sessions.assign(d=day(sessions["started_at"]), customer_id=sessions["customer_id"].astype(int))
    s30 = s[(s["d"] < as_of) & (s["d"] >= as_of - pd.Timedelta(days=30))].groupby("customer_id").size()
    exp = pd.DataFrame({
        "recency_days": (as_of - g["d"].max()).dt.days,
        "orders_180d": g.size(),
        "amount_180d": g["amount"].sum().round(2),
        "orders_30d": past[past["d"] >= as_of - pd.Timedelta(days=30)].groupby("customer_id").size(),
    })
    exp["tenure_days"] = (as_of - first_order.reindex(exp.index)).dt.days
    # the lifetime summary: every order day before the as-of date, not only the active window's
    order_days = o[o["d"] < as_of].groupby("customer_id")["d"].agg(lambda d: sorted(set(d))).reindex(exp.index)
    exp["repeat_order_days"] = order_days.map(len) - 1
    exp["first_to_last_order_days"] = order_days.map(lambda d: (d[-1] - d[0]).days)
    exp["last_order_gap_days"] = order_days.map(lambda d: (d[-1] - d[-2]).days if len(d) > 1 else float("nan"))
    lifetime = o[o["d"] < as_of].groupby("customer_id")["amount"].agg(["size", "sum"]).reindex(exp.index)
    exp["lifetime_orders"] = lifetime["size"]
    exp["lifetime_avg_order_value"] = (lifetime["sum"] / lifetime["size"]).round(2)
    exp["orders_30d"] = exp["orders_30d"].fillna(0)
    exp["sessions_30d"] = s30.reindex(exp.index).fillna(0)
    # the last session in the active window (none: NULL, however recent an older one was)
    recent = s[(s["d"] < as_of) & (s["d"] >= as_of - pd.Timedelta(days=180))].groupby("customer_id")["d"].max()
    exp["days_since_last_session"] = (as_of - recent.reindex(exp.index)).dt.days
    future = o[(o["d"] >= as_of) & (o["d"] < as_of + pd.Timedelta(days=90))]
    matured = as_of + pd.Timedelta(days=90) <= last_day
    exp["churned_90d"] = (~exp.index.isin(future["customer_id"])).astype(float) if matured else float("nan")
    return exp


def test_feature_mart_is_point_in_time_correct(warehouse):
    generate(PARAMS, warehouse.landing_dir)
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    assert "ERROR=0" in build(warehouse)

    orders = read_landing(warehouse.landing_dir, "orders")
    sessions = read_landing(warehouse.landing_dir, "web_sessions")
    mart = query(warehouse, "select * from ml.customer_features order by as_of_date, customer_id")
    tickets = read_landing(warehouse.landing_dir, "support_tickets")
    first_day = min(pd.to_datetime(events).min().tz_convert("UTC").tz_localize(None).normalize()
                    for events in (orders["ordered_at"], sessions["started_at"], tickets["created_at"]))
    last_day = pd.to_datetime(orders["ordered_at"]).max().tz_localize(None).normalize()
    as_of_dates = sorted(pd.to_datetime(mart["as_of_date"].unique()))
    assert as_of_dates[0] == first_day + pd.Timedelta(days=28)
    assert all((b - a).days == 7 for a, b in zip(as_of_dates, as_of_dates[1:]))

    for as_of in (as_of_dates[0], as_of_dates[len(as_of_dates) // 2], as_of_dates[-1]):
        got = mart[pd.to_datetime(mart["as_of_date"]) == as_of].set_index("customer_id").sort_index()
        exp = _expected(orders, sessions, as_of, last_day).sort_index()
        assert got.index.tolist() == exp.index.tolist(), as_of
        for col in ("recency_days", "tenure_days", "orders_180d", "orders_30d", "repeat_order_days",
                    "first_to_last_order_days", "lifetime_orders"):
            assert got[col].astype(int).tolist() == exp[col].astype(int).tolist(), (as_of, col)
        assert got["last_order_gap_days"].astype(float).fillna(-1).tolist() == \
            exp["last_order_gap_days"].fillna(-1).tolist()
        # within a cent: PostgreSQL rounds the exact numeric mean, pandas a float one (26.995 vs 26.99499...)
        assert got["lifetime_avg_order_value"].astype(float).tolist() == pytest.approx(
            exp["lifetime_avg_order_value"].tolist(), abs=0.0101)
        assert got["sessions_30d"].fillna(0).astype(int).tolist() == exp["sessions_30d"].astype(int).tolist()
        assert got["days_since_last_session"].astype(float).fillna(-1).tolist() == \
            exp["days_since_last_session"].fillna(-1).tolist()
        assert got["amount_180d"].astype(float).round(2).tolist() == exp["amount_180d"].tolist()
        assert got["churned_90d"].astype(float).fillna(-1).tolist() == exp["churned_90d"].fillna(-1).tolist()
    # the last as-of date's lifetime summary reaches past the active window
    assert (got["lifetime_orders"] > got["orders_180d"]).sum() > 10
    # some customers' last session is older than the window: no days_since_last_session for them
    assert got["days_since_last_session"].isna().sum() > 0
    # the contract's constraints hold on every write: a label outside (0, 1) is refused by PostgreSQL
    with pytest.raises(psycopg.errors.CheckViolation, match="churned_90d"):
        update_features(warehouse, "churned_90d = 2", "churned_90d is not null")

    coverage = query(warehouse, "select sum(customers) as n, sum(customers * share_imputed_channel) as imputed"
                                " from core.customer_attribute_coverage")
    assert coverage["n"][0] == PARAMS.customers
    assert 0.3 < float(coverage["imputed"][0]) / PARAMS.customers < 0.5  # sparse_share is 0.4


def _stored_results(settings, suite: str) -> set:
    """The GX validation results stored for a suite (one JSON file per suite and checkpoint run)."""
    return set((docs_dir(settings) / "gx" / "uncommitted" / "validations" / suite).rglob("*.json"))


def _sample(path, **kwargs) -> list:
    """The sample of unexpected values a stored result keeps for the expectation with these kwargs."""
    results = json.loads(path.read_text())["results"]
    (found,) = [r["result"] for r in results if kwargs.items() <= r["expectation_config"]["kwargs"].items()]
    return found["partial_unexpected_list"]


def test_quality_gate_stops_a_null_flood(warehouse, capfd, monkeypatch):
    stats = generate(ShopParams(customers=250, days=60, seed=5, feeds=("orders",)), warehouse.landing_dir)
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    assert claim_batch(warehouse, "run-1") == stats.files["orders"]
    capfd.readouterr()
    with postgres.warehouse(warehouse) as conn:  # one order above 5000 EUR: within the warning's `mostly`
        conn.execute("update raw.orders set amount = 6000 where order_id = (select min(order_id) from raw.orders)")
    before = _stored_results(warehouse, "raw_orders")
    summary = gate(warehouse, "raw_orders", "run-1")["raw_orders"]
    assert summary["failed"] == 0 and summary["passed"] >= 5
    # no progress bar on stderr (a task log shows stderr at error level: issue 20)
    assert "Calculating Metrics" not in capfd.readouterr().err
    # a passing suite is validated for its counts alone, without fetching a sample of the unexpected values
    (passed,) = _stored_results(warehouse, "raw_orders") - before
    assert _sample(passed, column="amount", max_value=5000) == []
    assert scalar(warehouse, "select unexpected_count from ops.dq_results where run_id = 'run-1'"
                             " and kwargs->>'max_value' = '5000'") == 1
    with postgres.warehouse(warehouse) as conn:
        conn.execute("update raw.orders set customer_id = null where order_id % 3 = 0")
        flooded = conn.execute("select count(*) from raw.orders where customer_id is null").fetchone()[0]
    assert 0 < flooded < stats.rows["orders"]
    with pytest.raises(DataQualityError, match=r"raw_orders: expect_column_values_to_not_be_null \{'column': 'customer_id'\}"):
        gate(warehouse, "raw_orders", "run-1")
    row = query(warehouse, "select success, unexpected_count from ops.dq_results where run_id = 'run-1'"
                           " and expectation = 'expect_column_values_to_not_be_null' and kwargs->>'column' = 'customer_id'"
                           " order by id")
    assert row.values.tolist() == [[True, 0], [False, flooded]]
    # The gates build no Data Docs: the run's step after them adds the run's pages, and the index lists only the
    # newest results (GX reads each listed one back on every build).
    monkeypatch.setattr(quality, "DOCS_INDEX_RESULTS", 1)
    with pytest.raises(DataQualityError):
        gate(warehouse, "raw_orders", "run-1")
    newest = max(_stored_results(warehouse, "raw_orders"), key=lambda p: p.stat().st_mtime)
    page = newest.relative_to(docs_dir(warehouse) / "gx" / "uncommitted").with_suffix(".html").as_posix()
    assert page.startswith("validations/raw_orders/run-1/")
    index = quality.docs_index(warehouse)  # the stack's GX project: other runs may have built its index
    assert not index.exists() or page not in index.read_text()
    assert quality.build_docs(warehouse, "run-1") == index
    (listed,) = set(re.findall(r"validations/[^\"\\]+\.html", index.read_text()))
    assert listed == page and (index.parent / listed).exists()
    assert quality.build_docs(warehouse, "run-that-checked-nothing") is None
    assert len(_stored_results(warehouse, "raw_orders")) >= 3  # the older results are kept


def test_feature_gate_checks_the_rows_the_run_wrote_and_the_newest_matured_labels(warehouse):
    # A 14-day label horizon: labels mature within a short history (weekly as-of dates from day 28).
    params = ShopParams(customers=200, days=62, seed=8, feeds=("orders",))
    horizon = ("--vars", "{label_horizon_days: 14}")
    mart_suites = ["mart_customer_features", "mart_customer_labels"]

    def deliver(days):
        generate(params, warehouse.landing_dir, days=days)
        ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
        build(warehouse, *horizon)

    # 40 days: as-of dates 28 and 35, neither label window has passed: the label suite has nothing to check.
    deliver(range(0, 40))
    first = gate(warehouse, mart_suites, "run-1")
    assert first["mart_customer_features"]["failed_critical"] == 0 and first["mart_customer_labels"] == {"skipped": 1}

    deliver(range(40, 60))
    deliver(range(60, 62))  # recomputes only the as-of dates whose features or labels can change: after day 38
    rewritten = query(warehouse, "select as_of_date, bool_and(observed_last_day = (select max(observed_last_day)"
                                 " from ml.customer_features)) as rewritten from ml.customer_features group by 1 order by 1")
    first_day = pd.Timestamp(params.start)
    assert [(d - first_day.date()).days for d in rewritten["as_of_date"]] == [28, 35, 42, 49, 56]
    assert rewritten["rewritten"].tolist() == [False, False, True, True, True]

    # The labels are checked at the newest as-of date whose window has passed: day 42 (42 + 14 <= 61).
    assert gate(warehouse, mart_suites, "run-2")["mart_customer_labels"] == {"passed": 1, "failed": 0, "failed_critical": 0}
    newest_matured = first_day + pd.Timedelta(days=42)
    expected_rate = scalar(warehouse, "select avg(churned_90d) from ml.customer_features where as_of_date = %s",
                           newest_matured.date())
    observed = scalar(warehouse, "select observed_value from ops.dq_results where run_id = 'run-2'"
                                 " and suite = 'mart_customer_labels'")
    assert float(observed) == pytest.approx(float(expected_rate))

    # A bad row this run did not write was checked when it was written; one it wrote fails the gate.
    assert update_features(warehouse, "recency_days = 999", "as_of_date = %s", ((first_day + pd.Timedelta(days=28)).date(),))
    assert gate(warehouse, mart_suites, "run-3")["mart_customer_features"]["failed_critical"] == 0
    day_56 = (first_day + pd.Timedelta(days=56)).date()
    assert update_features(warehouse, "recency_days = 999", "as_of_date = %s", (day_56,))
    # a pair rule (a column of the suite's query): more orders in the active window than in the customer's lifetime
    broken = update_features(warehouse, "lifetime_orders = orders_180d - 1",
                             "as_of_date = %s and customer_id = (select min(customer_id) from ml.customer_features"
                             " where as_of_date = %s)", (day_56, day_56))
    before = _stored_results(warehouse, "mart_customer_features")
    with pytest.raises(DataQualityError) as failed:
        gate(warehouse, mart_suites, "run-4")
    assert "mart_customer_features: expect_column_values_to_be_between {'column': 'recency_days'" in str(failed.value)
    assert (f"expect_column_values_to_be_between {{'column': 'orders_before_active_window', 'min_value': 0}} "
            f"(unexpected {broken}" in str(failed.value))
    # GX checked the rows through a view of the suite's query (`copy: false`), which the gate dropped, failure and all;
    # the suite ran again through it for the sample of values that failed
    (stored,) = _stored_results(warehouse, "mart_customer_features") - before
    assert set(_sample(stored, column="recency_days", max_value=180)) == {999}
    assert scalar(warehouse, "select count(*) from pg_views where schemaname = 'ops'") == 0


def test_a_failed_warning_is_logged_and_recorded_and_does_not_stop_the_run(warehouse, caplog):
    generate(ShopParams(customers=250, days=60, seed=5, feeds=("orders",)), warehouse.landing_dir)
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    claim_batch(warehouse, "run-1")
    with postgres.warehouse(warehouse) as conn:
        # one order in seven above 5000 EUR: the warn-level expectation allows 0.1%, the critical one 100000
        big = conn.execute("update raw.orders set amount = 6000 where order_id % 7 = 0").rowcount
    assert big > 0

    before = _stored_results(warehouse, "raw_orders")
    with caplog.at_level(logging.WARNING, logger="mlscale.data.quality"):
        summary = gate(warehouse, "raw_orders", "run-1")
    # the failed suite ran again for its sample of unexpected values: one stored result, with the sample
    (failed,) = _stored_results(warehouse, "raw_orders") - before
    assert not json.loads(failed.read_text())["success"]
    assert _sample(failed, column="amount", max_value=5000) == [6000] * 20

    assert summary["raw_orders"]["failed"] == 1 and summary["raw_orders"]["failed_critical"] == 0
    rows = query(warehouse, "select expectation, severity, unexpected_count from ops.dq_results"
                            " where run_id = 'run-1' and not success")
    assert rows.values.tolist() == [["expect_column_values_to_be_between", "warning", big]]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "raw_orders FAIL warning" in warned[0] and "'max_value': 5000" in warned[0]


def test_staging_tests_check_the_keys_of_the_claimed_files_or_every_key(warehouse):
    params = ShopParams(customers=100, days=41, seed=6, feeds=("orders",))
    generate(params, warehouse.landing_dir, days=range(0, 40))
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    claim_batch(warehouse, "run-1")
    dbt(warehouse, "build", "--select", "stg_shop__orders")
    publish_batch(warehouse, "run-1")
    # A published order with a channel the accepted_values test rejects (it slipped in before the test existed).
    with postgres.warehouse(warehouse) as conn:
        conn.execute("update raw.orders set channel = 'fax' where order_id = (select min(order_id) from raw.orders)")

    # No file claimed (a manual run): every key is tested, the old order fails.
    with pytest.raises(DbtFailed, match="accepted_values_stg_shop__orders_channel"):
        dbt(warehouse, "test", "--select", "stg_shop__orders")

    # A run that claimed the next day's file tests that file's orders only: they pass.
    generate(params, warehouse.landing_dir, days=range(40, 41))
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    assert claim_batch(warehouse, "run-2") == 1
    output = dbt(warehouse, "test", "--select", "stg_shop__orders")
    assert "accepted_values_stg_shop__orders_channel" in output and "PASS=" in output and "ERROR=0" in output


def test_files_loaded_while_a_run_builds_wait_for_the_next_run_and_its_raw_gate(warehouse):
    """ingest_landing commits files while a warehouse_etl run is between its raw gate and dbt: that run's dbt
    does not read them; the next run claims them, and its raw gate stops a bad one before it reaches a mart."""
    dsn, landing = warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir
    params = ShopParams(customers=100, days=40, seed=7, feeds=("orders",))
    marts = ("run", "--select", "+fct_orders", "+int_customer_days")
    generate(params, landing, days=range(0, 38))
    ingest_landing(dsn, landing)
    assert claim_batch(warehouse, "run-1") == 38
    assert gate(warehouse, "raw_orders", "run-1")["raw_orders"]["failed_critical"] == 0

    # ingest_landing runs now: two more days, one of them with an order far over the raw gate's critical maximum
    generate(params, landing, days=range(38, 40))
    last_day = sorted((landing / "orders").iterdir())[-1]
    header = (last_day / "orders.csv").read_text().splitlines()[0].split(",")
    bad = {"order_id": "990000001", "customer_id": "1", "ordered_at": f"{last_day.name[3:]}T12:00:00+00:00",
           "amount": "250000.00", "channel": "web"}
    (last_day / "typo.csv").write_text(",".join(header) + "\n" + ",".join(bad[c] for c in header) + "\n")
    assert ingest_landing(dsn, landing)["orders"]["files_loaded"] == 3
    unclaimed = "select order_id from raw.orders where _file_sha256 in" \
                " (select sha256 from ops.ingest_files where etl_run_id is null)"
    assert scalar(warehouse, f"select count(*) from ({unclaimed}) as o") > 1

    # run-1's dbt: the marts hold exactly the orders of the files run-1 claimed and checked
    dbt(warehouse, *marts)
    assert scalar(warehouse, f"select count(*) from core.fct_orders where order_id in ({unclaimed})") == 0
    assert scalar(warehouse, "select count(*) from core.fct_orders") == scalar(
        warehouse, "select count(distinct order_id) from raw.orders where _file_sha256 in"
                   " (select sha256 from ops.ingest_files where etl_run_id = 'run-1')")
    assert publish_batch(warehouse, "run-1") == 38

    # run-2 claims the three files; its raw gate fails on the typo before dbt runs
    assert claim_batch(warehouse, "run-2") == 3
    with pytest.raises(DataQualityError, match=r"raw_orders: expect_column_values_to_be_between \{'column': 'amount'"):
        gate(warehouse, "raw_orders", "run-2")
    assert scalar(warehouse, "select count(*) from core.fct_orders where order_id = 990000001") == 0

    # The typo is retracted; run-3 checks the two good files, and the incremental models pick them up
    # although they were loaded before run-1's dbt build ran.
    typo = scalar(warehouse, "select sha256 from ops.ingest_files where path like '%typo.csv'")
    assert retract_file(dsn, typo, "amount typed in cents") == 1
    assert claim_batch(warehouse, "run-3") == 2
    assert gate(warehouse, "raw_orders", "run-3")["raw_orders"]["failed_critical"] == 0
    dbt(warehouse, *marts)
    assert scalar(warehouse, "select count(*) from core.fct_orders") == \
        scalar(warehouse, "select count(distinct order_id) from raw.orders")
    assert str(scalar(warehouse, "select max(activity_date) from intermediate.int_customer_days")) == last_day.name[3:]


def test_source_freshness_passes_warns_then_fails_and_reuses_its_parse(warehouse, caplog):
    generate(ShopParams(customers=50, days=5, seed=4, feeds=("orders",)), warehouse.landing_dir)
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    assert source_freshness(warehouse) == {"shop.orders": "pass"}
    # dbt keeps its parse in a folder of its own, for the next check to re-parse only what changed
    assert (freshness_target(warehouse) / "partial_parse.msgpack").is_file()

    def last_load(hours_ago: int) -> None:
        with postgres.warehouse(warehouse) as conn:
            conn.execute("update raw.orders set _loaded_at = now() - make_interval(hours => %s)", (hours_ago,))

    last_load(30)  # past the 26 h warning, before the 50 h error
    with caplog.at_level(logging.WARNING, logger="mlscale.data.warehouse"):
        assert source_freshness(warehouse) == {"shop.orders": "warn"}
    assert any("freshness shop.orders: warn (last load 30.0 hours ago)" in r.getMessage() for r in caplog.records)
    last_load(51)
    with pytest.raises(StaleSource, match="past their freshness error threshold: shop.orders"):
        source_freshness(warehouse)


def test_batch_scope_skips_when_nothing_new_arrived(warehouse):
    generate(ShopParams(customers=100, days=40, seed=5, feeds=("orders",)), warehouse.landing_dir)
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    assert claim_batch(warehouse, "run-1") > 0
    assert publish_batch(warehouse, "run-1") > 0
    assert claim_batch(warehouse, "run-2") == 0
    assert gate(warehouse, ["raw_orders", "raw_ingest_batch"], "run-2") == {
        "raw_orders": {"skipped": 1}, "raw_ingest_batch": {"skipped": 1}}


def _orders_file(landing, day: int, channel: bool, rows: int = 20) -> None:
    """One day of orders, with or without the optional channel column."""
    folder = landing / "orders" / f"dt=2026-01-{day:02d}"
    folder.mkdir(parents=True)
    lines = [f"{day * 100 + i},{i % 7},2026-01-{day:02d}T10:00:00+00:00,{i + 1}.50" + (",web" if channel else "")
             for i in range(rows)]
    (folder / "orders.csv").write_text("order_id,customer_id,ordered_at,amount" + (",channel" if channel else "")
                                       + "\n" + "\n".join(lines) + "\n")


def test_the_null_flood_gate_judges_a_feed_by_its_own_history(warehouse):
    dsn = warehouse.dsn(warehouse.warehouse_db)
    # A real orders log: customer, time, amount, never a channel. Not a flood: its files always look so.
    for day in range(1, 6):
        _orders_file(warehouse.landing_dir, day, channel=False)
    ingest_landing(dsn, warehouse.landing_dir)
    claim_batch(warehouse, "run-1")
    assert gate(warehouse, "raw_orders_per_file", "run-1")["raw_orders_per_file"]["failed_critical"] == 0
    assert publish_batch(warehouse, "run-1") == 5

    # A feed that delivered channels for weeks and stops from one day on: that day's file fails.
    empty_warehouse(warehouse)
    shutil.rmtree(warehouse.landing_dir / "orders")
    for day in range(1, 21):
        _orders_file(warehouse.landing_dir, day, channel=True)
    ingest_landing(dsn, warehouse.landing_dir)
    claim_batch(warehouse, "run-2")
    gate(warehouse, "raw_orders_per_file", "run-2")
    publish_batch(warehouse, "run-2")
    _orders_file(warehouse.landing_dir, 21, channel=False)
    ingest_landing(dsn, warehouse.landing_dir)
    claim_batch(warehouse, "run-3")
    with pytest.raises(DataQualityError, match=r"raw_orders_per_file: expect_column_values_to_be_between"):
        gate(warehouse, "raw_orders_per_file", "run-3")
    assert query(warehouse, "select success, unexpected_count from ops.dq_results where run_id = 'run-3'"
                            " and suite = 'raw_orders_per_file'").values.tolist() == [[False, 1]]
