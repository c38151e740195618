"""The registry under faults and misuse (RELIABILITY.md), against the real MLflow server through a link the tests
cut: a switch cut off between its MLflow calls is finished by its retry, and a rollback puts back only a
version that served in Production, unless forced with a reason that the audit keeps."""

import dataclasses

import pytest
from mlflow.exceptions import MlflowException

from mlscale import ops, postgres, registry
from mlscale.modeling import artifacts
from mlscale.production import promotion
from mlscale.registry import RegistryError
from tests.e2e.conftest import SPEC
from tests.helpers import query
from tests.reliability.conftest import CuttableLink, Stopwatch, register_tiny_version

pytestmark = pytest.mark.reliability
MODEL = SPEC.model_copy(update={"name": "reliability_model"})


@pytest.fixture(scope="module")
def link(stack):
    """The MLflow server of the test stack, reached through a link the tests cut; one try per MLflow request,
    so a call fails as soon as the link is down. Its registered model and audit rows start empty."""
    link = CuttableLink(stack.mlflow_port)
    yield dataclasses.replace(stack, mlflow_port=link.port, mlflow_retries=0), link
    link.close()
    registry.client(stack)  # the stack's request retries again for the tests that follow in this process


@pytest.fixture
def empty(link):
    settings, _ = link
    registry.forget(settings, MODEL.name)
    with postgres.warehouse(settings) as conn:
        ops.ensure(conn, "model_promotions")
        conn.execute("delete from ops.model_promotions where model = %s", (MODEL.name,))
    return link


def _state(settings) -> dict[str, tuple[str, list[str]]]:
    return {v["version"]: (v["stage"], v["aliases"]) for v in registry.registry_state(settings, MODEL.name)}


def _gates_passed(settings, version: str) -> promotion.Decision:
    """What `evaluate` leaves for the switch when both gates pass: the version in Staging, a pending decision."""
    client = registry.client(settings)
    promotion._transition(client, MODEL.name, version, "Staging")
    client.set_registered_model_alias(MODEL.name, "staging", version)
    return promotion.Decision(MODEL.name, version, "pending", "Staging", "gates passed (reliability test)",
                              registry.alias_version(settings, MODEL.name, "production"))


def _promoted(settings, version: str) -> None:
    assert promotion.switch(settings, MODEL, _gates_passed(settings, version)).decision == "promoted"


def test_a_switch_cut_off_between_its_mlflow_calls_is_finished_by_its_retry(empty, monkeypatch):
    settings, link = empty
    v1, v2 = register_tiny_version(settings, MODEL.name), register_tiny_version(settings, MODEL.name)
    _promoted(settings, v1)
    decision = _gates_passed(settings, v2)

    settle = promotion._settle

    def link_cut_after_the_alias_moved(*args):
        link.cut()
        settle(*args)

    monkeypatch.setattr(promotion, "_settle", link_cut_after_the_alias_moved)
    with pytest.raises(MlflowException, match="API request .* failed"):
        promotion.switch(settings, MODEL, decision)
    monkeypatch.undo()

    with Stopwatch() as recovery:
        link.restore()
        # cut off midway: the alias, which scoring serves, already names v2; the stages are those of before
        assert _state(settings) == {v2: ("Staging", ["production", "staging"]), v1: ("Production", [])}
        retried = promotion.switch(settings, MODEL, decision)
    assert retried.decision == "promoted" and retried.stage == "Production"
    assert _state(settings) == {v2: ("Production", ["production"]), v1: ("Archived", ["previous_production"])}
    audit = query(settings, "select coalesce(from_version, 'none') as from_version, to_version, decision"
                            f" from ops.model_promotions where model = '{MODEL.name}' order by id")
    assert list(audit.itertuples(index=False, name=None)) == [("none", v1, "promoted"), (v1, v2, "promoted")]
    assert recovery.seconds < 10  # the retry, once MLflow answers again


def test_rollback_puts_back_only_a_version_that_served_unless_forced_with_a_reason(empty):
    settings, _ = empty
    v1, v2, v3 = (register_tiny_version(settings, MODEL.name) for _ in range(3))
    _promoted(settings, v1)
    _promoted(settings, v2)
    # v3 passed the gates, and a person rejected it
    promotion.reject(settings, MODEL, _gates_passed(settings, v3), decided_by="alice", why="too slow on mobile")

    for force in (None, "  "):
        with pytest.raises(RegistryError, match=f"v{v3} never served in Production"):
            promotion.rollback(settings, MODEL, v3, force=force, why="v2 is slow")
    for why in (None, " "):  # a rollback is a person's decision: no reason, no rollback
        with pytest.raises(RegistryError, match=f"say why {MODEL.name} is rolled back"):
            promotion.rollback(settings, MODEL, v1, why=why)
    assert registry.alias_version(settings, MODEL.name, "production") == v2  # nothing changed

    plan = promotion.plan_rollback(settings, MODEL)  # what the rollback_ DAG shows a person first
    assert (plan.current, plan.target, plan.force) == (v2, v1, "")
    assert plan.checks["artifact_sha256"]["sha256"] == artifacts.fetch_verified(settings, MODEL.name, v1).sha256
    back = promotion.rollback(settings, MODEL, decided_by="bob", why="v2 mis-scores new customers", plan=plan)
    assert (back.decision, back.previous_production, back.reason) == (
        "rolled_back", v2, f"rolled back from v{v2} to v{v1} by bob: v2 mis-scores new customers")
    assert back.gates == {"rollback": {"passed": True, "checks": plan.checks}}  # recorded, not "no gates"
    assert _state(settings)[v1] == ("Production", ["production"])
    # Carried out again, the plan changes nothing (a retry after a failure midway would finish it instead).
    with pytest.raises(RegistryError, match=f"v{v1} is already Production: this rollback was carried out"):
        promotion.rollback(settings, MODEL, why="again", plan=plan)

    forced = promotion.rollback(settings, MODEL, v3, decided_by="carol", why="v1 and v2 both mis-score new customers",
                                force="incident 7")
    assert forced.reason == (f"rolled back from v{v1} to v{v3} by carol: v1 and v2 both mis-score new customers; "
                             "forced, though it never served in Production: incident 7")
    assert forced.gates["rollback"]["checks"]["served_before"]["why"] == f"v{v3} never served in Production; " \
                                                                        "forced: incident 7"
    last = query(settings, "select to_version, decision, decided_by, reason, gates from ops.model_promotions"
                           f" where model = '{MODEL.name}' order by id desc limit 1").iloc[0]
    assert (last.to_version, last.decision, last.decided_by, last.reason) == (v3, "rolled_back", "carol", forced.reason)
    assert set(last.gates["rollback"]["checks"]) == {"served_before", "artifact_sha256"}
    assert _state(settings)[v3] == ("Production", ["production"])
    # Every decision about a version stays on it: v1 was promoted, then rolled back to.
    tags = registry.client(settings).get_model_version(MODEL.name, v1).tags
    assert tags["promotion.1"].startswith("promoted: ") and tags["promotion.2"] == f"rolled_back: {back.reason}"
    assert tags["promotion"] == tags["promotion.2"] and "promotion.3" not in tags


def test_files_and_tag_replaced_together_in_mlflow_are_refused_against_the_warehouses_hash(empty):
    """Someone who can write to MLflow swaps a version's model file and sets its artifact_sha256 tag to match:
    the hash the warehouse recorded at registration still tells. A tag changed alone is refused too."""
    settings, _ = empty
    version = register_tiny_version(settings, MODEL.name)
    recorded = artifacts.fetch_verified(settings, MODEL.name, version).sha256
    client = registry.client(settings)
    location = client.get_model_version_download_uri(MODEL.name, version)
    model_file = next((settings.mlflow_artifacts_dir / location.split("mlflow-artifacts:/", 1)[1]).glob("*.skops"))
    original = model_file.read_bytes()
    model_file.write_bytes(original + b"\0")
    try:
        swapped = artifacts.fetch(settings, MODEL.name, version).sha256
        client.set_model_version_tag(MODEL.name, version, artifacts.SHA_TAG, swapped)
        with pytest.raises(artifacts.TamperedArtifact, match=f"tag {swapped} differs from {recorded}"):
            artifacts.load_verified(settings, MODEL.name, version)
    finally:
        model_file.write_bytes(original)
    with pytest.raises(artifacts.TamperedArtifact, match="the tag was changed"):
        artifacts.fetch_verified(settings, MODEL.name, version)  # the files are back; the tag still lies
    client.set_model_version_tag(MODEL.name, version, artifacts.SHA_TAG, recorded)
    assert artifacts.fetch_verified(settings, MODEL.name, version).sha256 == recorded
