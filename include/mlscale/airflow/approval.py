"""The human approval step of promote_<model>: Airflow's ApprovalOperator, with the answer kept in XCom.

On Reject, ApprovalOperator skips its downstream tasks by raising, so its return value never reaches
XCom; the task that audits the rejection still needs to know who rejected. This subclass pushes the
response (chosen option, who, when) under the key `response` before deciding.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

RESPONSE_KEY = "response"


class RecordedApprovalOperator(ApprovalOperator):
    """ApprovalOperator whose response is in XCom (key `response`) whether the answer is Approve or Reject."""

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        if "error" not in event:
            context["ti"].xcom_push(key=RESPONSE_KEY, value={
                "chosen_options": event["chosen_options"], "responded_by_user": event["responded_by_user"],
                "responded_at": str(event["responded_at"])})
        return super().execute_complete(context, event)


def responder(ti) -> str:
    """Name of the person who answered the `approve` task of this run."""
    response = ti.xcom_pull(task_ids="approve", key=RESPONSE_KEY)
    if not response:
        raise LookupError("the approve task recorded no response")
    user = response["responded_by_user"]
    return (user.get("name") or user.get("id")) if isinstance(user, dict) else str(user)
