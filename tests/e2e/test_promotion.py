"""Promotion, rollback and scoring through Airflow (dag.test) on a real warehouse, MLflow server and PostgreSQL."""

import numpy as np
import pytest

from mlscale import postgres, registry
from mlscale.airflow import dagrun
from mlscale.modeling import artifacts
from mlscale.production import promotion, scoring
from tests.e2e.conftest import (FAST, MODEL, SPEC, WEAK, registry_state, train_version,
                                weak_production_and_better_candidate)
from tests.helpers import query, scalar

pytestmark = pytest.mark.e2e
def _audit(settings):
    return [tuple(r) for r in query(settings, "select to_version, decision, stage, decided_by from"
                                              " ops.model_promotions order by id").itertuples(index=False)]


def _artifact_dir(settings, version):
    """Where the test MLflow server keeps the files of a version."""
    location = registry.client(settings).get_model_version_download_uri(MODEL, version)
    return settings.mlflow_artifacts_dir / location.split("mlflow-artifacts:/", 1)[1]


def test_better_candidate_is_promoted_then_rolled_back(fresh):
    v1, v2 = weak_production_and_better_candidate(fresh)

    run = dagrun.run_dag(fresh, f"promote_{MODEL}", conf={"version": v2})
    assert run.task_states == {"evaluate": "success", "switch": "success"}
    assert registry_state(fresh) == {v2: ("Production", ["production"]), v1: ("Archived", ["previous_production"])}
    row = query(fresh, "select * from ops.model_promotions order by id desc limit 1").iloc[0]
    assert (row.decision, row.from_version, row.to_version, row.airflow_run_id) == ("promoted", v1, v2, run.run_id)
    checks = row.gates["production"]["checks"]
    assert checks["bootstrap"]["passed"] and checks["bootstrap"]["low"] > 0
    assert checks["segments"]["passed"] and checks["margin"]["improvement"] > 0.1
    assert set(row.gates["staging"]["checks"]) == {
        "floor_roc_auc", "ceiling_calibration_error", "signature", "smoke_test", "artifact_sha256", "model_size",
        "batch_latency"}
    assert row.gates["staging"]["checks"]["ceiling_calibration_error"]["passed"]
    assert row.candidate_metrics["roc_auc"] > row.production_metrics["roc_auc"]
    tag = registry.client(fresh).get_model_version(MODEL, v2).tags["promotion"]
    assert tag.startswith("promoted: passed both gates against production v" + v1)

    # (rollback_<model> asks a person first: tests/e2e/test_approval.py runs it through Airflow)
    promotion.rollback(fresh, SPEC, why="v2 mis-scores new customers")
    assert registry_state(fresh) == {v2: ("Archived", []), v1: ("Production", ["production"])}
    assert registry.client(fresh).get_model_version(MODEL, v2).tags["rolled_back"] == f"replaced by v{v1}"
    assert _audit(fresh)[-1][:3] == (v1, "rolled_back", "Production")

    dagrun.run_dag(fresh, f"score_{MODEL}")
    assert query(fresh, "select distinct model_version from ml.predictions")["model_version"].tolist() == [v1]
    # Nothing left to roll back to: the plan fails clearly before anyone is asked, nothing changed.
    failed = dagrun.run_dag(fresh, f"rollback_{MODEL}", conf={"reason": "v1 is slow"}, check=False)
    assert failed.task_states == {"plan": "failed", "confirm": "upstream_failed", "rollback": "upstream_failed"}
    assert registry_state(fresh)[v1] == ("Production", ["production"])


def test_a_candidate_no_better_than_production_is_rejected_and_shadow_scored(fresh):
    v1 = train_version(fresh, FAST)
    assert promotion.promote(fresh, FAST, v1).decision == "promoted"
    v2 = train_version(fresh, FAST)  # same data, same seed: the same model

    run = dagrun.run_dag(fresh, f"promote_{MODEL}", conf={"version": v2})
    assert run.state == "success" and run.task_states == {"evaluate": "success", "switch": "skipped"}
    assert registry_state(fresh) == {v2: ("Staging", ["staging"]), v1: ("Production", ["production"])}
    assert registry.newest_candidate(fresh, MODEL) == v2  # a retried promote run evaluates the same version again
    decision, reason = query(fresh, "select decision, reason from ops.model_promotions order by id desc limit 1").iloc[0]
    assert decision == "rejected"
    assert reason.startswith(f"production gate against production v{v1}: bootstrap: 95% interval of the improvement"
                             " [+0.0000, +0.0000] is not above 0")

    # Champion and challenger both score the latest as-of date; a rerun replaces, never duplicates.
    for attempt in (1, 2):
        dagrun.run_dag(fresh, f"score_{MODEL}")
        counts = query(fresh, "select 'p' as t, model_version, count(*) n, count(distinct customer_id) d from ml.predictions"
                              " group by 2 union all select 's', model_version, count(*), count(distinct customer_id)"
                              " from ml.shadow_predictions group by 2 order by 1")
        active = scalar(fresh, "select count(*) from ml.customer_features where as_of_date ="
                               " (select max(as_of_date) from ml.customer_features)")
        assert counts.values.tolist() == [["p", v1, active, active], ["s", v2, active, active]], attempt
    same = scalar(fresh, "select count(*) from ml.predictions p join ml.shadow_predictions s using (model, as_of_date,"
                         " customer_id) where p.score = s.score")
    assert same == active  # an identical model scores identically

    # Chunked reading changes nothing: 37 rows at a time gives the same scores (to the last bits BLAS
    # may round differently for another batch shape) and the same deciles.
    before = query(fresh, "select customer_id, score, decile from ml.predictions order by customer_id")
    result = scoring.score(fresh, SPEC, chunk_rows=37)
    assert result["production"]["replaced"] == active
    after = query(fresh, "select customer_id, score, decile from ml.predictions order by customer_id")
    assert after["customer_id"].tolist() == before["customer_id"].tolist()
    assert after["decile"].tolist() == before["decile"].tolist()
    assert np.allclose(after["score"], before["score"], rtol=1e-12, atol=1e-15)


def test_a_tampered_artifact_is_refused_by_promotion_and_scoring(fresh):
    v1 = train_version(fresh, FAST)
    assert promotion.promote(fresh, FAST, v1).decision == "promoted"
    v2 = train_version(fresh, FAST)
    skops = next(_artifact_dir(fresh, v2).glob("*.skops"))
    skops.write_bytes(skops.read_bytes() + b"\0")

    run = dagrun.run_dag(fresh, f"promote_{MODEL}", conf={"version": v2})
    assert run.task_states == {"evaluate": "success", "switch": "skipped"}
    reason = scalar(fresh, "select reason from ops.model_promotions order by id desc limit 1")
    assert reason.startswith(f"staging gate: {MODEL} v{v2}: artifact sha256") and "refusing to use it" in reason
    assert registry_state(fresh)[v2] == ("None", []) and registry_state(fresh)[v1] == ("Production", ["production"])

    recorded = registry.client(fresh).get_model_version(MODEL, v1).tags[artifacts.SHA_TAG]
    production = next(_artifact_dir(fresh, v1).glob("*.skops"))
    original = production.read_bytes()
    production.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        run = dagrun.run_dag(fresh, f"score_{MODEL}", check=False)
        assert run.task_states == {"score": "failed"}
        assert scalar(fresh, "select to_regclass('ml.predictions')") is None or \
            scalar(fresh, "select count(*) from ml.predictions") == 0
    finally:
        production.write_bytes(original)

    # A version without a recorded hash (registered before hashes existed) is refused until an operator
    # records one; then it serves again.
    registry.client(fresh).delete_model_version_tag(MODEL, v1, artifacts.SHA_TAG)
    with postgres.warehouse(fresh) as conn:
        conn.execute("delete from ops.model_artifacts where model = %s and version = %s", (MODEL, v1))
    run = dagrun.run_dag(fresh, f"score_{MODEL}", check=False)
    assert run.task_states == {"score": "failed"}
    assert artifacts.record(fresh, MODEL, v1).sha256 == recorded
    assert dagrun.run_dag(fresh, f"score_{MODEL}").task_states == {"score": "success"}


def test_two_promotions_at_once_one_wins_the_other_aborts(fresh):
    v1 = train_version(fresh, WEAK)
    assert promotion.promote(fresh, WEAK, v1).decision == "promoted"
    v2, v3 = train_version(fresh, FAST), train_version(fresh, FAST)
    # Both are evaluated against Production v1 and both pass. Staging holds one challenger, the one aliased
    # `staging`: staging v3 archived v2, so the registry, the alias and the ML models page agree.
    first, second = promotion.evaluate(fresh, SPEC, v2), promotion.evaluate(fresh, SPEC, v3)
    assert (first.decision, second.decision) == ("pending", "pending")
    assert registry_state(fresh) == {v3: ("Staging", ["staging"]), v2: ("Archived", []),
                                     v1: ("Production", ["production"])}

    # ... while another promotion holds the model's lock, the switch aborts (through Airflow too).
    with promotion.promotion_lock(fresh, MODEL) as held:
        assert held
        blocked = promotion.switch(fresh, SPEC, promotion.decision_from_dict(promotion.decision_dict(first)))
        run = dagrun.run_dag(fresh, f"promote_{MODEL}", conf={"version": v3}, check=False)
    assert blocked.decision == "aborted" and "holds the lock; nothing changed" in blocked.reason
    assert run.task_states == {"evaluate": "success", "switch": "failed"}
    assert registry_state(fresh)[v1] == ("Production", ["production"])

    # The first switch wins; the second finds Production changed since its evaluation and aborts.
    assert promotion.switch(fresh, SPEC, second).decision == "promoted"
    lost = promotion.switch(fresh, SPEC, first)
    assert lost.decision == "aborted"
    assert lost.reason == (f"Production is now v{v3}, but v{v2} was evaluated against v{v1}; nothing changed "
                           "(promote it again to re-evaluate)")
    assert registry_state(fresh) == {v3: ("Production", ["production"]), v2: ("Archived", []),
                                     v1: ("Archived", ["previous_production"])}
    assert [(v, d) for v, d, _, _ in _audit(fresh)] == [
        (v1, "promoted"), (v2, "aborted"), (v3, "aborted"), (v3, "promoted"), (v2, "aborted")]


def test_a_runs_conf_sets_the_params_of_that_run_only(fresh):
    """Airflow merges a run's conf into the DAG's own Param objects, in place: in one process a later run of the
    same DAG object would start from it (a promote run after one given a version evaluated that version again).
    dagrun.run_dag names every param on each run, the declared value unless the conf says otherwise."""
    first = dagrun.run_dag(fresh, f"score_{MODEL}", conf={"as_of_date": "2026-05-07"}, check=False)
    second = dagrun.run_dag(fresh, f"score_{MODEL}", check=False)
    assert first.task_states == second.task_states == {"score": "skipped"}  # no Production version yet
    with postgres.database(fresh, fresh.airflow_db) as conn:
        confs = dict(conn.execute("select run_id, conf from dag_run where run_id in (%s, %s)",
                                  (first.run_id, second.run_id)).fetchall())
    assert confs == {first.run_id: {"as_of_date": "2026-05-07"}, second.run_id: {"as_of_date": None}}


def test_scoring_before_any_promotion_skips_with_the_reason(fresh):
    """A new deployment's first daily score_ run, before promote_ made a Production version: nothing to score, and
    not an error (the run succeeds, its task is skipped and says why)."""
    run = dagrun.run_dag(fresh, f"score_{MODEL}", check=False)

    assert run.state == "success" and run.task_states == {"score": "skipped"}
    with pytest.raises(scoring.NoProductionVersion, match=f"promote_{MODEL} promotes one"):
        scoring.score(fresh, SPEC)
    # Nothing written: on a worker where no earlier test of this module scored, the table does not exist yet.
    with postgres.warehouse(fresh) as conn:
        if postgres.table_exists(conn, "ml.predictions"):
            assert conn.execute("select count(*) from ml.predictions").fetchone()[0] == 0
