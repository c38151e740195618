"""`approval: required`: promote_<model> waits for a person in Airflow's Required Actions, then goes on or stops.

The person is played by this test through the same channel the UI uses: the HITL REST API of a real
Airflow api-server sharing the metadata database with the dag.test() run.
"""

import re
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
import yaml

from mlscale import registry
from mlscale.airflow import dagrun, models_page
from mlscale.local import airflow_ui
from mlscale.config import Settings
from mlscale.specs import SPECS_DIR, load_spec
from tests.e2e.conftest import MODEL, api_server, registry_state, weak_production_and_better_candidate
from tests.helpers import port, query

pytestmark = pytest.mark.e2e
API_PORT = port(8095)  # this xdist worker's own


@pytest.fixture(scope="module")
def api(stack):
    """A real Airflow api-server on the test metadata DB; yields (base URL, bearer token)."""
    with api_server(stack, API_PORT) as (url, password):
        token = requests.post(f"{url}/auth/token", json={"username": airflow_ui.ADMIN_USER, "password": password},
                              timeout=30)
        token.raise_for_status()
        yield url, token.json()["access_token"]


@pytest.fixture
def approval_required(fresh, tmp_path, monkeypatch):
    """The shipped churn_90d spec with approval: required, as the bundle's only spec."""
    data = yaml.safe_load((SPECS_DIR / f"{MODEL}.yml").read_text())
    data["promotion"]["approval"] = "required"
    (tmp_path / f"{MODEL}.yml").write_text(yaml.safe_dump(data))
    assert load_spec(tmp_path / f"{MODEL}.yml").promotion.approval == "required"
    monkeypatch.setenv("MLSCALE_SPECS_DIR", str(tmp_path))
    dagrun.dag_bag.cache_clear()
    yield Settings.from_env()
    dagrun.dag_bag.cache_clear()


class Approver(threading.Thread):
    """Waits for the pending approval of promote_<MODEL>, records what the UI would show, then answers.

    Only an approval asked for after it started counts: a run that was killed while waiting (an interrupted
    test session) leaves its own pending approval in the shared test metadata DB. The task writes its
    approval request before it defers, so for a moment the request exists while the task is still
    `running`; the approver answers once the task is `awaiting_input`, as a person would find it."""

    def __init__(self, api, answer: str, reason: str, dag_id: str = f"promote_{MODEL}"):
        super().__init__(daemon=True)
        self.dag_id = dag_id
        self.url, self.token = api
        self.answer, self.reason, self.seen, self.pending, self.error = answer, reason, None, None, None
        self.started = datetime.now(timezone.utc)

    def run(self):
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                pending = requests.get(f"{self.url}/api/v2/dags/{self.dag_id}/dagRuns/~/hitlDetails",
                                       params={"response_received": "false"}, headers=headers, timeout=30)
                pending.raise_for_status()
                details = [d for d in pending.json()["hitl_details"]
                           if datetime.fromisoformat(d["created_at"]) >= self.started
                           and d["task_instance"]["state"] == "awaiting_input"]
                if details:
                    self.seen = details[0]
                    self.pending = models_page.pending_approvals()  # what the ML models page shows meanwhile
                    ti = self.seen["task_instance"]
                    answer = {"chosen_options": [self.answer]}
                    if self.reason:  # the form's field
                        answer["params_input"] = {"reason": self.reason}
                    requests.patch(f"{self.url}/api/v2/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/"
                                   f"{ti['task_id']}/{ti['map_index']}/hitlDetails",
                                   json=answer, headers=headers, timeout=30).raise_for_status()
                    return
                time.sleep(1)
            raise TimeoutError("no approval awaiting input appeared")
        except Exception as exc:  # reported by the test
            self.error = exc


def _answering(settings, api, answer: str, reason: str, dag_id: str, conf: dict):
    approver = Approver(api, answer, reason, dag_id)
    approver.start()
    run = dagrun.run_dag(settings, dag_id, conf=conf)
    approver.join(timeout=60)
    assert approver.error is None, approver.error
    return run, approver


def test_approval_waits_then_promotes_on_approve(approval_required, api):
    settings = approval_required
    v1, v2 = weak_production_and_better_candidate(settings)

    run, approver = _answering(settings, api, "Approve", "beats v1 on every segment", f"promote_{MODEL}", {"version": v2})
    # What the approver saw under Required Actions while the task waited (in `awaiting_input`, or the
    # approver would have timed out and _answering failed): what the decision needs.
    seen, body = approver.seen, approver.seen["body"]
    assert seen["task_instance"]["task_id"] == "approve"
    assert seen["subject"] == f"Promote {MODEL} v{v2} to Production?"
    assert seen["options"] == ["Approve", "Reject"] and list(seen["params"]) == ["reason"]
    client = registry.client(settings)
    runs = {v: client.get_model_version(MODEL, v).run_id for v in (v1, v2)}
    assert f"in place of v{v1}" in body and f"| metric | better | gate | candidate v{v2} | Production v{v1} |" in body
    assert "| roc_auc | higher | Production gate: at least +" in body and "| log_loss | lower |" in body
    assert re.search(r"latest matured as-of date \*\*\d{4}-\d{2}-\d{2}\*\*, \*\*[\d,]+\*\* customers", body)
    assert "**Campaign on the holdout**" in body and "profit over random targeting" in body
    assert "**Training window**: as-of dates" in body and f"(Production v{v1}: " in body
    assert "**What changed**" in body and "production · bootstrap: passed" in body
    for version, run_id in runs.items():  # MLflow links open its classic (machine-learning) view
        assert f"#/models/{MODEL}/versions/{version}?workflowType=machine_learning)" in body
        assert f"/runs/{run_id}?workflowType=machine_learning)" in body
    assert "/plugin/ml-models)" in body
    # Meanwhile the ML models page shows the pending request, with a link to it.
    assert approver.pending[MODEL]["subject"] == seen["subject"]
    assert approver.pending[MODEL]["link"].endswith("/tasks/approve/required_actions")
    approve = dagrun.dag_bag(str(settings.root / "dags")).get_dag(f"promote_{MODEL}").get_task("approve")
    assert approve.execution_timeout == timedelta(days=7)  # a person's week, not the 2 hours of other tasks
    assert run.task_states == {"evaluate": "success", "approve": "success", "switch": "success",
                               "record_rejection": "skipped"}
    assert registry_state(approval_required) == {v2: ("Production", ["production"]), v1: ("Archived", ["previous_production"])}
    decision, decided_by, reason = query(settings, "select decision, decided_by, reason from ops.model_promotions"
                                                   " order by id desc limit 1").iloc[0]
    assert (decision, decided_by) == ("promoted", airflow_ui.ADMIN_USER)
    assert reason.endswith(f"; approved by {airflow_ui.ADMIN_USER}: beats v1 on every segment")
    assert models_page.pending_approvals() == {}  # answered: nothing pending

    # Rolling back asks too: both versions side by side, the checks already made, and why.
    run, approver = _answering(settings, api, "Approve", "", f"rollback_{MODEL}",
                               {"reason": "v2 mis-scores new customers"})
    assert run.task_states == {"plan": "success", "confirm": "success", "rollback": "success"}
    seen, body = approver.seen, approver.seen["body"]
    assert seen["subject"] == f"Roll back {MODEL} from v{v2} to v{v1}?"
    assert "Reason given: *v2 mis-scores new customers*" in body
    assert f"| | serving now: v{v2} | going back: v{v1} |" in body and "| test roc_auc (higher is better" in body
    assert re.search(rf"\| served in Production \| promoted \d{{4}}-.* \| promoted \d{{4}}-", body)
    assert "- served_before: " in body and "- artifact_sha256: matches the hash recorded at registration" in body
    assert registry_state(approval_required) == {v1: ("Production", ["production"]), v2: ("Archived", [])}
    row = query(settings, "select decision, decided_by, reason, gates from ops.model_promotions"
                          " order by id desc limit 1").iloc[0]
    assert (row.decision, row.decided_by) == ("rolled_back", airflow_ui.ADMIN_USER)
    assert row.reason == f"rolled back from v{v2} to v{v1} by {airflow_ui.ADMIN_USER}: v2 mis-scores new customers"
    assert set(row.gates["rollback"]["checks"]) == {"served_before", "artifact_sha256"}
    tags = registry.client(settings).get_model_version(MODEL, v1).tags  # v1: promoted, replaced, rolled back to
    assert tags["promotion.1"].startswith("promoted: ") and tags["promotion.2"].startswith("rolled_back: ")


def test_approval_rejected_keeps_production(approval_required, api):
    settings = approval_required
    v1, v2 = weak_production_and_better_candidate(settings)

    run, _ = _answering(settings, api, "Reject", "the campaign team is not ready for new scores", f"promote_{MODEL}",
                      {"version": v2})
    assert run.state == "success"
    assert run.task_states == {"evaluate": "success", "approve": "success", "switch": "skipped",
                               "record_rejection": "success"}
    assert registry_state(approval_required) == {v2: ("Staging", ["staging"]), v1: ("Production", ["production"])}
    decision, decided_by, reason = query(settings, "select decision, decided_by, reason from ops.model_promotions"
                                                   " order by id desc limit 1").iloc[0]
    assert (decision, decided_by) == ("rejected", airflow_ui.ADMIN_USER)
    assert reason.startswith(f"rejected by {airflow_ui.ADMIN_USER} at the approval step: the campaign team is "
                             "not ready for new scores (gates had passed: ")
    tag = registry.client(settings).get_model_version(MODEL, v2).tags["promotion"]
    assert tag.startswith("rejected: rejected by") and "not ready for new scores" in tag


def _listening(port_number: int) -> set[str]:
    """The local addresses with a TCP socket listening on `port_number` (from /proc/net/tcp and tcp6)."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port_number:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                if len(raw) == 4:
                    addresses.add(".".join(str(b) for b in reversed(raw)))
                else:
                    addresses.add("::" if raw == bytes(16) else raw.hex())
    return addresses


def test_the_api_server_listens_on_loopback_only(api):
    """`make up` binds Airflow's UI to 127.0.0.1 (MLSCALE_AIRFLOW_HOST to change it), not every interface."""
    assert _listening(API_PORT) == {"127.0.0.1"}
