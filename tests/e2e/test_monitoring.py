"""monitor_<model> through Airflow on a real warehouse and MLflow: no drift, injected drift, scheduled retraining."""

import mlflow
import pytest
import yaml

from mlscale import postgres, registry
from mlscale.airflow import dagrun
from mlscale.modeling import training
from mlscale.production import promotion
from mlscale.local.datagen import Drift, ShopParams, generate
from mlscale.data.ingest import ingest_landing
from mlscale.specs import Features, SPECS_DIR
from mlscale.data.warehouse import run_etl
from tests.e2e.conftest import MODEL, WEAK, registry_state
from tests.helpers import AIRFLOW_SHOP, drop_registered_model, query

# Under xdist one worker runs the module, in file order (tests/conftest.py): the scheduled-retraining test
# starts from the Production version the price-drift test promoted.
pytestmark = pytest.mark.e2e
SHOP = AIRFLOW_SHOP  # the shop of the `shop` fixture
# A weak model on spend and age: registered (it beats the mean), clearly worse than the shipped spec,
# and its inputs move when prices do.
SPENDY = WEAK.model_copy(update={"features": Features(numeric=["amount_30d", "age"])})


def _retrain_events(settings):
    """extra of every `<MODEL>_retrain` Asset event in the Airflow metadata DB, oldest first."""
    with postgres.database(settings, settings.airflow_db) as conn:
        return [r[0] for r in conn.execute("select e.extra from asset_event e join asset a on a.id = e.asset_id"
                                           " where a.name = %s order by e.id", (f"{MODEL}_retrain",))]


def _land(settings, folder, days: range) -> None:
    """More days of the shop, in a world where prices tripled on the day after the `shop` fixture's last."""
    drifted = ShopParams(customers=SHOP.customers, days=SHOP.days, seed=SHOP.seed,
                         drift=Drift(data_drift_day=SHOP.days, price_increase=2.0))
    generate(drifted, folder, days)
    ingest_landing(settings.dsn(settings.warehouse_db), folder)
    run_etl(settings, f"test-days-{days.start}-{days.stop}")


def _decisions(settings):
    return query(settings, "select as_of_date, subject, breach, detail from ops.model_monitoring"
                           " where check_name = 'decision' order by id")


@pytest.fixture(scope="module")
def spendy_production(shop):
    """SPENDY v1 in Production, trained before any drift; no monitoring history."""
    drop_registered_model(shop, MODEL)
    with postgres.warehouse(shop) as conn:
        conn.execute("drop table if exists ops.model_monitoring")
    version = training.train(shop, SPENDY)["version"]
    assert promotion.promote(shop, SPENDY, version).decision == "promoted"
    return shop


def test_no_drift_triggers_nothing(spendy_production):
    events_before = len(_retrain_events(spendy_production))
    run = dagrun.run_dag(spendy_production, f"monitor_{MODEL}")

    assert run.task_states == {"monitor": "success", "request_retrain": "skipped", "record_decision": "success"}
    checks = query(spendy_production, "select check_name, subject, value, breach from ops.model_monitoring"
                                      f" where airflow_run_id = '{run.run_id}'")
    psi = checks[checks.check_name == "feature_psi"].set_index("subject")["value"]
    assert set(psi.index) == {"amount_30d", "age"}  # what the Production version uses
    assert (psi < 0.01).all() and not checks.breach.any()  # the population it was trained to score, unchanged
    assert len(_retrain_events(spendy_production)) == events_before
    monitoring_run = mlflow.search_runs(experiment_names=[f"{MODEL}_monitoring"], max_results=1).iloc[0]
    assert monitoring_run["tags.mlscale.retrain"] == "false" and monitoring_run["metrics.breaches"] == 0


def test_price_drift_triggers_retraining_and_a_new_production_version(spendy_production, tmp_path):
    settings = spendy_production
    # Five more weeks land, with prices tripled from their first day: spend features shift.
    _land(settings, tmp_path, range(SHOP.days, SHOP.days + 35))

    run = dagrun.run_dag(settings, f"monitor_{MODEL}")
    assert run.task_states == {"monitor": "success", "request_retrain": "success", "record_decision": "success"}
    decision = _decisions(settings).iloc[-1]
    assert decision.breach and "PSI of amount_30d" in decision.detail
    assert _retrain_events(settings)[-1] == {"model": MODEL, "production_version": "1",
                                             "as_of_date": str(decision.as_of_date), "reason": decision.detail}

    # The retrain event triggers train_ (the scheduler would; here it is run next), and its candidate promote_.
    assert dagrun.run_dag(settings, f"train_{MODEL}").task_states == {"train": "success"}
    # run by hand (dag.test), train_ still names the request it answers: the retrain asset's newest event
    assert registry.client(spendy_production).get_model_version(MODEL, "2").tags["mlscale.retrain_reason"] == decision.detail
    assert dagrun.run_dag(settings, f"promote_{MODEL}").task_states == {"evaluate": "success", "switch": "success"}
    assert registry_state(spendy_production) == {"2": ("Production", ["production"]), "1": ("Archived", ["previous_production"])}

    # The new version is monitored against its own reference: the drifted population is its normal.
    run = dagrun.run_dag(settings, f"monitor_{MODEL}")
    assert run.task_states == {"monitor": "success", "request_retrain": "skipped", "record_decision": "success"}
    assert not _decisions(settings).iloc[-1].breach


def test_scheduled_retraining_whose_candidate_fails_leaves_production_untouched(spendy_production, tmp_path,
                                                                               monkeypatch):
    settings = spendy_production
    # The shipped spec with a one-day age limit and no cooldown: every monitor run asks for a retrain.
    data = yaml.safe_load((SPECS_DIR / f"{MODEL}.yml").read_text())
    data["monitoring"].update(max_model_age_days=1, min_days_between_retrains=0)
    (tmp_path / f"{MODEL}.yml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("MLSCALE_SPECS_DIR", str(tmp_path))
    production_before = registry_state(spendy_production)
    _land(settings, tmp_path / "landing", range(SHOP.days + 35, SHOP.days + 42))  # a week later

    run = dagrun.run_dag(settings, f"monitor_{MODEL}")
    assert run.task_states == {"monitor": "success", "request_retrain": "success", "record_decision": "success"}
    assert "trained on data up to" in _retrain_events(settings)[-1]["reason"]

    # Same data, same spec: the candidate is no better than Production, so the gates reject it.
    assert dagrun.run_dag(settings, f"train_{MODEL}").task_states == {"train": "success"}
    assert registry.client(spendy_production).get_model_version(MODEL, "3").tags["mlscale.retrain_reason"] == \
        _retrain_events(settings)[-1]["reason"]
    run = dagrun.run_dag(settings, f"promote_{MODEL}")
    assert run.task_states == {"evaluate": "success", "switch": "skipped"}
    after = registry_state(spendy_production)
    assert after["2"] == production_before["2"] == ("Production", ["production"])
    assert after["3"] == ("Staging", ["staging"])
