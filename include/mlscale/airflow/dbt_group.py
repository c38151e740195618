"""warehouse_etl's dbt task group (Cosmos's watcher mode): its watching tasks start once the build has ended."""

from __future__ import annotations

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import TaskGroup, TriggerRule
from airflow.sdk.bases.operator import BaseOperator

PRODUCER = "dbt_producer_watcher"  # the task Cosmos names for the one `dbt build`


def watch_after_build(group: TaskGroup, gate: BaseOperator) -> None:
    """`gate` >> the group, and the group's first watching tasks wait for the producer to end (`dbt_build_ended`).

    Cosmos starts the watchers beside the producer, polling for their node's status. On the pinned versions that
    races: under the scheduler a reschedule-mode poke can be failed by Airflow itself (apache/airflow#71172), and
    `dag.test()` (the demo, the tests) runs one task at a time, so a deferred watcher picked before the producer
    waits for it forever. `dbt_build_ended` succeeds once the producer ends in any state (failed, or skipped as a
    cleared producer does), so every watcher finds its node's status at its first poke and a failed model still
    fails its own task; the watchers also wait for `gate` (what must pass before dbt builds), so a run that failed
    before the build skips them. Live progress during the build is in the producer's log, which is dbt's."""
    producer = group.children[f"{group.group_id}.{PRODUCER}"]
    first = [task for task in group.get_roots() if task is not producer]
    gate >> group
    ended = EmptyOperator(task_id="dbt_build_ended", trigger_rule=TriggerRule.ALL_DONE,
                          doc_md="The one `dbt build` ended (in any state): the watching tasks read what it reported.")
    producer >> ended >> first
