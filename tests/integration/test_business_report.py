"""The KPI marts and the business report on a small real warehouse: every number recomputed independently.

Two Production versions of churn_90d (a weak v1, then a better v2) and one of revenue_90d score matured as-of
dates, so value per version, lift and revenue at risk have real outcomes to judge.
"""

import json
import math
import re

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlscale import postgres, registry
from mlscale.business import reporting
from mlscale.data import quality, warehouse
from mlscale.local import demo
from mlscale.modeling import evaluation, training
from mlscale.production import monitoring, outcomes, promotion, scoring
from mlscale.local.datagen import ShopParams
from mlscale.specs import load_specs
from tests.e2e.conftest import FAST, WEAK, train_version
from tests.helpers import build_shop, drop_registered_model, query

pytestmark = pytest.mark.integration
SPECS = load_specs()
# One configuration, and only the binned-mean baseline: this tests the report's numbers, and on 500 customers
# the model does not beat BG/NBD x Gamma-Gamma (RMSE 296 against 282), so it would not be registered.
REVENUE = SPECS["revenue_90d"].model_copy(update={"search": SPECS["revenue_90d"].search.model_copy(update={"budget": 1}),
                                                  "baselines": SPECS["revenue_90d"].baselines[:1]})


@pytest.fixture(scope="module")
def scored(stack, tmp_path_factory):
    """Shop built; churn v1 (weak) scores two matured as-of dates, v2 the next one and the latest; revenue v1 all."""
    build_shop(stack, tmp_path_factory.mktemp("landing"), ShopParams(customers=500, days=300, seed=57))
    for name in SPECS:
        drop_registered_model(stack, name)
    mlflow.set_tracking_uri(stack.mlflow_uri)
    matured = list(query(stack, "select distinct as_of_date from ml.customer_features where label_matured"
                                " order by 1 desc limit 3")["as_of_date"])[::-1]
    latest = query(stack, "select max(as_of_date) as d from ml.customer_features")["d"][0]

    weak = train_version(stack, WEAK)
    assert promotion.promote(stack, WEAK, weak).decision == "promoted"
    for as_of in matured[:2]:
        scoring.score(stack, WEAK, as_of)
    better = train_version(stack, FAST)
    assert promotion.promote(stack, FAST, better).decision == "promoted"
    for as_of in (matured[2], latest):
        scoring.score(stack, FAST, as_of)
    revenue = train_version(stack, REVENUE)
    assert promotion.promote(stack, REVENUE, revenue).decision == "promoted"
    for as_of in matured:
        scoring.score(stack, REVENUE, as_of)
    reporting.build_kpis(stack, SPECS)
    return stack, matured, latest


def _kpi(settings, table):
    return query(settings, f"select * from kpi.{table}")


def test_model_value_matches_the_training_campaign_rule(scored):
    stack, matured, _ = scored
    value = _kpi(stack, "kpi_model_value").set_index(["model", "as_of_date"])
    assert sorted(value.index) == sorted([(m, d) for m in SPECS for d in matured])  # the latest is not matured
    assert [value.loc[("churn_90d", d), "model_version"] for d in matured] == ["1", "1", "2"]
    for name, spec in SPECS.items():
        economics = training.load_economics(stack, name)
        for as_of in matured:
            value_col = spec.business.value_column or "customer_id"
            rows = query(stack, f"select f.*, p.score from ml.predictions p join ml.customer_features f"
                                f" using (customer_id, as_of_date) where p.model = '{name}' and"
                                f" p.as_of_date = '{as_of}' order by customer_id")
            rows[value_col] = rows[value_col].astype(float)
            expected = evaluation.campaign(spec, economics, rows, rows[spec.label].astype(float).to_numpy(),
                                           rows["score"].to_numpy())
            got = value.loc[(name, as_of)]
            assert got["scored_customers"] == len(rows)
            assert got["targeted_customers"] == expected["targeted"] == math.ceil(0.1 * len(rows))
            assert float(got["profit"]) == pytest.approx(expected["profit"], abs=0.01)
            assert float(got["profit_random"]) == pytest.approx(expected["profit_random"], abs=0.01)
            assert float(got["profit_uplift"]) == pytest.approx(expected["profit_uplift"], abs=0.02)


def test_lift_and_gain_per_version(scored):
    stack, _, _ = scored
    lift = _kpi(stack, "kpi_model_lift")
    rows = query(stack, "select p.model_version, p.decile, f.churned_90d::float8 as y from ml.predictions p"
                        " join ml.customer_features f using (customer_id, as_of_date)"
                        " where p.model = 'churn_90d' and f.label_matured")
    for version, g in rows.groupby("model_version"):
        mine = lift[(lift["model"] == "churn_90d") & (lift["model_version"] == version)].set_index("decile")
        assert list(mine.index) == list(range(1, 11))
        top = g[g["decile"] == 1]
        assert float(mine.loc[1, "lift"]) == pytest.approx(top["y"].mean() / g["y"].mean(), abs=1e-4)
        assert float(mine.loc[10, "cumulative_gain"]) == 1.0
        assert int(mine["customers"].sum()) == len(g)
    # The better version ranks churners higher than the weak one.
    top = lift[(lift["model"] == "churn_90d") & (lift["decile"] == 1)].set_index("model_version")["lift"]
    assert float(top["2"]) > float(top["1"]) > 1.0


def test_daily_kpis_and_retention_match_the_orders(scored):
    stack, _, _ = scored
    orders = query(stack, "select customer_id, order_date, amount::float8 as amount from core.fct_orders")
    daily = _kpi(stack, "kpi_daily").set_index("day")
    days = pd.date_range(orders["order_date"].min(), orders["order_date"].max()).date
    assert list(daily.index) == list(days)
    by_day = orders.groupby("order_date")
    assert np.allclose(daily["revenue"].astype(float), by_day["amount"].sum().reindex(days, fill_value=0), atol=0.01)
    assert (daily["buyers"] == by_day["customer_id"].nunique().reindex(days, fill_value=0)).all()
    firsts = orders.groupby("customer_id")["order_date"].min()
    assert (daily["new_customers"] == firsts.value_counts().reindex(days, fill_value=0)).all()
    for day in days[::17]:  # active: an order in the 30 days up to and including the day, counted by brute force
        window = orders[(orders["order_date"] > day - pd.Timedelta(days=30)) & (orders["order_date"] <= day)]
        assert daily.loc[day, "active_customers"] == window["customer_id"].nunique(), day

    cohorts = _kpi(stack, "kpi_retention_cohorts")
    orders["cohort"] = orders["customer_id"].map(firsts).map(lambda d: d.replace(day=1))
    orders["month"] = orders["order_date"].map(lambda d: d.replace(day=1))
    first_cohort = orders["cohort"].min()
    mine = orders[orders["cohort"] == first_cohort]
    size = mine["customer_id"].nunique()
    for month, g in mine.groupby("month"):
        n = (month.year - first_cohort.year) * 12 + month.month - first_cohort.month
        row = cohorts[(cohorts["cohort_month"] == first_cohort) & (cohorts["months_since_first_order"] == n)].iloc[0]
        assert (row["cohort_customers"], row["ordering_customers"]) == (size, g["customer_id"].nunique())
        assert float(row["retention_rate"]) == pytest.approx(g["customer_id"].nunique() / size, abs=1e-4)


def test_churn_rate_and_revenue_at_risk(scored):
    stack, matured, latest = scored
    features = query(stack, "select as_of_date, churned_90d, amount_90d::float8 as amount_90d, customer_id"
                            " from ml.customer_features")
    churn = _kpi(stack, "kpi_churn_rate").set_index("as_of_date")
    for as_of in matured:
        rows = features[features["as_of_date"] == as_of]
        assert churn.loc[as_of, "active_customers"] == len(rows)
        assert float(churn.loc[as_of, "churn_rate"]) == pytest.approx(rows["churned_90d"].mean(), abs=1e-4)
    assert latest not in churn.index  # its outcome is not known yet

    risk = _kpi(stack, "kpi_revenue_at_risk").set_index("as_of_date")
    assert sorted(risk.index) == sorted([*matured, latest])
    preds = query(stack, "select as_of_date, customer_id, score from ml.predictions where model = 'churn_90d'")
    joined = preds.merge(features, on=["as_of_date", "customer_id"])
    at_latest = joined[joined["as_of_date"] == latest]
    churners = at_latest[at_latest["score"] >= 0.5]
    assert risk.loc[latest, "predicted_churners"] == len(churners)
    assert float(risk.loc[latest, "revenue_at_risk"]) == pytest.approx(churners["amount_90d"].sum(), abs=0.01)
    assert float(risk.loc[latest, "expected_revenue_at_risk"]) == pytest.approx(
        (at_latest["score"] * at_latest["amount_90d"]).sum(), abs=0.01)
    assert risk.loc[latest, "model_version"] == "2"


def test_report_has_every_section_with_the_marts_numbers(scored, tmp_path):
    stack, _, _ = scored
    out = reporting.report(stack, SPECS, tmp_path, build=False)
    page = (tmp_path / reporting.FILENAME).read_text()
    for heading in ("Business KPIs", "Retention by first-order month", "Model churn_90d", "Model revenue_90d",
                    "Versions", "Value delivered per version", "Lift and gain", "Promotion history"):
        assert f">{heading}<" in page, heading
    # Plots inline: 4 KPI plots, and per model its metric per version, value per version, lift and gain.
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', page)) == 4 + 3 * len(SPECS)
    assert "<script" not in page and 'src="http' not in page  # self-contained

    value = _kpi(stack, "kpi_model_value")
    uplift = value.groupby(["model", "model_version"])["profit_uplift"].sum().astype(float)
    for (model, version), total in uplift.items():
        assert f"<td>v{version}</td>" in page
        assert f"<td>{total:,.2f}</td>" in page, (model, version, total)
    for model, total in value.groupby("model")["profit_uplift"].sum().astype(float).items():
        assert f'Value added by {model}</div><div class="value">{total:,.0f} EUR' in page
    daily = _kpi(stack, "kpi_daily").sort_values("day")
    assert out["summary"]["revenue_30d"] == pytest.approx(float(daily["revenue"].astype(float).tail(30).sum()), abs=0.01)
    assert f"{out['summary']['revenue_30d']:,.0f} EUR" in page
    assert "<b>v2</b>" in page and "promoted" in page  # churn Production and its promotion history

    # Data quality: before any check, the section says so; then the mart gates run twice, for real.
    assert "No data-quality check has run yet" in page
    for run_id in ("report-1", "report-2"):
        quality.gate(stack, quality.suites(stack, "mart"), run_id)
    reporting.report(stack, SPECS, tmp_path, build=False)
    page = (tmp_path / reporting.FILENAME).read_text()
    dq = query(stack, "select suite, count(*) filter (where success) as passed, count(*) filter (where not success)"
                      " as failed, count(*) filter (where not success and severity = 'critical') as critical,"
                      " count(*) as checks from ops.dq_results where run_id = 'report-2' group by suite order by suite")
    assert list(dq["suite"]) == ["mart_customer_features", "mart_customer_labels"]
    for r in dq.itertuples():
        assert f"<b>{r.suite}</b>: {r.passed} passed, {r.failed} failed ({r.critical} critical)" in page, r.suite
        section = page.split(f'id="dq-{r.suite}"')[1].split("</details>")[0]
        assert section.count("<tr>") == r.checks + 1 and section.count('<span title="') == 2  # header; two runs

    run = registry.client(stack).get_run(out["run_id"])
    assert run.data.metrics["revenue_30d"] == pytest.approx(out["summary"]["revenue_30d"])
    assert [a.path for a in registry.client(stack).list_artifacts(out["run_id"])] == [reporting.FILENAME]


def test_dbt_docs_document_the_kpi_marts_and_the_report_exposure(scored):
    stack, _, _ = scored
    # A dbt command without vars after the KPI builds with the campaigns as vars: its folder kept the project's
    # saved parse (dbt parses the whole project again for vars other than the parse's; warehouse.target_path).
    assert "Unable to do partial parsing" not in warehouse.dbt(stack, "ls", "--select", "kpi_daily")
    docs = reporting.dbt_docs(stack, SPECS)
    page = docs.read_text()
    for name in ("kpi_daily", "kpi_churn_rate", "kpi_retention_cohorts", "kpi_revenue_at_risk", "kpi_model_value",
                 "kpi_model_lift", "exposure.mlscale.business_report"):
        assert name in page, name
    catalog = json.loads((docs.parent / "catalog.json").read_text())
    manifest = json.loads((docs.parent / "manifest.json").read_text())
    for node, entry in catalog["nodes"].items():
        if node.startswith("model.mlscale.kpi_"):  # every built column is documented
            documented = manifest["nodes"][node]["columns"]
            assert set(entry["columns"]) == set(documented), node
            assert all(c["description"] for c in documented.values()), node
            assert manifest["nodes"][node]["description"], node


def test_the_demo_summary_reads_the_ledger_the_promotions_and_the_predictions(scored):
    stack, matured, latest = scored
    text = demo.summary(stack, [], "a generated shop")
    ledger = query(stack, "select feed, count(*) as files, sum(rows_loaded) as loaded from ops.ingest_files"
                          " where status = 'loaded' group by feed")
    assert len(ledger) == 6
    for r in ledger.itertuples():
        assert f"  {r.feed:<16} {r.loaded:>9} rows from {r.files} files, 0 quarantined, 0 files rejected" in text
    promotions = text.split("latest promotion decisions (ops.model_promotions):\n")[1].split("\n\n")[0].splitlines()
    # newest first (at most four): the three promotions the fixture made
    assert [line.split(":")[0] for line in promotions] == [
        "  revenue_90d v1 promoted -> Production", "  churn_90d v2 promoted -> Production",
        "  churn_90d v1 promoted -> Production"]
    assert "latest monitoring decision per model (ops.model_monitoring; MLflow experiments <model>_monitoring):\n  none" in text
    assert f"  churn_90d v2 as-of {latest}: " in text  # the newest predictions


def test_monitoring_judges_realised_performance_on_the_matured_predictions_view(scored):
    stack, matured, _ = scored
    assert outcomes.built_for(stack) == outcomes.campaigns(SPECS)  # the KPI build recorded the models it covers
    newest = query(stack, "select p.score, f.churned_90d from ml.predictions p"
                          " join ml.customer_features f using (customer_id, as_of_date)"
                          f" where p.model = 'churn_90d' and p.as_of_date = '{matured[2]}'")
    check = monitoring.realised_check(stack, FAST, production="2")
    assert check.check_name == "realised_roc_auc" and check.subject == f"v2 as-of {matured[2]}"
    assert check.value == pytest.approx(roc_auc_score(newest["churned_90d"], newest["score"]))
    assert f"({len(newest)} customers, labels now matured)" in check.detail
    stale = monitoring.realised_check(stack, FAST, production="3")  # v2's predictions once v3 serves
    assert stale.value == check.value and not stale.breach and "v2 is no longer Production" in stale.detail

    # A spec whose campaign differs from the one the view was built for rebuilds it; a dropped view is rebuilt.
    wider = FAST.model_copy(update={"business": FAST.business.model_copy(update={"top_k_share": 0.2})})
    assert len(outcomes.matured(stack, wider)) == len(query(
        stack, "select 1 from ml.predictions p join ml.customer_features f using (customer_id, as_of_date)"
               " where p.model = 'churn_90d' and f.label_matured"))
    assert outcomes.built_for(stack)["churn_90d"]["top_k_share"] == 0.2
    assert set(query(stack, f"select distinct top_k_share from {outcomes.VIEW} where model = 'churn_90d'")
               ["top_k_share"]) == {0.2}
    with postgres.warehouse(stack) as conn:
        conn.execute(f"drop view {outcomes.VIEW}")
    assert outcomes.matured(stack, FAST)["model_version"].tolist().count("2") == len(newest)
    assert outcomes.built_for(stack) == outcomes.campaigns(SPECS)
