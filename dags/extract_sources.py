"""
DAG factory over the sources in `include/contracts/sources.yml`: each source gets an `extract_<source>` DAG
that loads it into the same `raw.*` tables as `ingest_landing`, through the same landing contract, quarantine
and ledger. Adding a source to the file adds its DAG.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from mlscale.airflow.assets import dag_args, failing_on, table_asset
from mlscale.sources import Source, load_sources

DATABASE_DOC = """
### extract_{name} — the operational database `{name}` into `raw.*`

**Owner:** Data Engineer · **Schedule:** `{schedule}` · **Connection:** `{connection}` (an Airflow Connection;
when it is not defined, the embedded SQLite file under `.mlscale/`).

One task per table ({tables}), in that order. Each reads the rows changed since its committed cursor
(`ops.extract_cursors`) minus a {overlap}-minute overlap, in pages of {batch} rows ordered by (cursor, key);
each page loads through the landing contract (bad rows to `ops.quarantine`) and the ledger in one
transaction that also moves the cursor. A rerun is idempotent; a source that does not answer fails the task
with the reason, and the next run resumes from the last committed page. Soft-deleted orders and lines arrive
with their `deleted_at` and become tombstones (`is_deleted`) in staging and `fct_orders`.

**Produces:** the `raw.<feed>` asset of each table that loaded rows (`raw.orders` triggers `warehouse_etl`); a
table with nothing new is *skipped*.
"""

STREAM_DOC = """
### extract_{name} — the event stream `{stream}` into `raw.{feed}`

**Owner:** Data Engineer · **Schedule:** `{schedule}` · **Connection:** `{connection}` (Redis; when it is not
defined, Redis at 127.0.0.1:6379).

Consumer group `{group}` reads the stream in micro-batches of {batch} events until none is left. Each batch
loads in one transaction, skipping event ids already in `raw.{feed}`; events are acknowledged only after it
committed, those that broke the contract first copied to `{dead_letter}` with the reason. Events a dead consumer
left pending for over {idle} s are claimed first.

**Produces:** the `raw.{feed}` asset when events loaded; the next `warehouse_etl` run builds on them.
"""


def _dag_args(src: Source, doc: str) -> dict:
    return dag_args("data_engineer", dag_id=f"extract_{src.name}", schedule=src.schedule,
                    tags=["data-engineer", "ingest", "source"], doc_md=doc)


def database_dag(src: Source):
    @dag(**_dag_args(src, DATABASE_DOC.format(
        name=src.name, schedule=src.schedule, connection=src.connection, tables=", ".join(t.table for t in src.tables),
        overlap=src.overlap_minutes, batch=src.batch_rows)))
    def extract_database():
        previous = None
        for spec in src.tables:
            @task(task_id=f"extract_{spec.table}", outlets=[table_asset("raw", spec.feed)])
            def extract_table(table: str = spec.table) -> dict:
                """Load the table's changed rows into raw.<feed>; skip (no asset event) when none loaded."""
                from airflow.sdk.exceptions import AirflowSkipException

                from mlscale.config import settings
                from mlscale.sources import ExtractFailed, source
                from mlscale.sources.database import extract_tables

                with failing_on(ExtractFailed):
                    result = extract_tables(settings(), source(src.name), [table])[table]
                if not result["rows_loaded"]:
                    raise AirflowSkipException(f"no changed rows in {src.name}.{table}")
                return result

            current = extract_table()
            if previous is not None:
                previous >> current
            previous = current

    return extract_database()


def stream_dag(src: Source):
    @dag(**_dag_args(src, STREAM_DOC.format(
        name=src.name, schedule=src.schedule, connection=src.connection, stream=src.stream, feed=src.feed,
        group=src.group, batch=src.batch_events, dead_letter=src.dead_letter, idle=src.claim_idle_seconds)))
    def extract_stream():
        @task(outlets=[table_asset("raw", src.feed)])
        def consume_events() -> dict:
            """Load the stream's new and abandoned events; skip (no asset event) when none loaded."""
            from airflow.sdk.exceptions import AirflowSkipException

            from mlscale.config import settings
            from mlscale.sources import source
            from mlscale.sources.stream import consume

            totals = consume(settings(), source(src.name))
            if not totals["rows_loaded"]:
                raise AirflowSkipException(f"no new events in {src.stream}")
            return totals

        consume_events()

    return extract_stream()


for _src in load_sources().values():
    (database_dag if _src.kind == "database" else stream_dag)(_src)
