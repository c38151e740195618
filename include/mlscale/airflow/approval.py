"""The human approval steps of promote_<model> and rollback_<model>: Airflow's ApprovalOperator, with the
answer kept in XCom.

On Reject, ApprovalOperator skips its downstream tasks by raising, so its return value never reaches
XCom; the task that audits the rejection still needs to know who rejected and why. This subclass pushes the
response (chosen option, who, when, the form's `reason`) under the key `response` before deciding.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param

RESPONSE_KEY = "response"
REQUEST_KEY = "approval_request"  # XCom of the task before the approval: the request's Markdown body (review)
NO_REASON = "no reason given"
# The form under a promotion's request: why, for the audit (ops.model_promotions, the version's `promotion` tag).
# A HITL form field needs a valid default (Airflow resolves the task's params when it starts, before anyone
# answers), so it cannot be required: an empty answer is recorded as "no reason given".
REASON = {"reason": Param("", type="string", title="Reason",
                          description="Why you approve or reject: recorded with the decision in the audit")}


class RecordedApprovalOperator(ApprovalOperator):
    """ApprovalOperator whose response is in XCom (key `response`) whether the answer is Approve or Reject."""

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        if "error" not in event:
            context["ti"].xcom_push(key=RESPONSE_KEY, value={
                "chosen_options": event["chosen_options"], "responded_by_user": event["responded_by_user"],
                "responded_at": str(event["responded_at"]), "params_input": event.get("params_input") or {}})
        return super().execute_complete(context, event)


def answer(ti, task_id: str = "approve") -> tuple[str, str]:
    """Who answered the approval task `task_id` of this run, and the reason they gave."""
    response = ti.xcom_pull(task_ids=task_id, key=RESPONSE_KEY)
    if not response:
        raise LookupError(f"the {task_id} task recorded no response")
    user = response["responded_by_user"]
    who = (user.get("name") or user.get("id")) if isinstance(user, dict) else str(user)
    return who, (response.get("params_input", {}).get("reason") or "").strip() or NO_REASON
