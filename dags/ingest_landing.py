"""
### ingest_landing — raw files into `raw.*`

**Owner:** Data Engineer · **Schedule:** daily, and by hand after a delivery.

Loads every new CSV under `landing/<feed>/dt=YYYY-MM-DD/` into `raw.<feed>` with PostgreSQL COPY,
one transaction per file. A sha256 ledger (`ops.ingest_files`) makes re-deliveries and reruns no-ops.
Rows that break the contract (`include/contracts/landing.yml`) go to `ops.quarantine` with file,
line and reason; the rest of the file still loads. A file that cannot be read in its feed's format (bytes
not in its encoding, a field over the CSV parser's limit, a quote never closed, a required column missing)
is rejected whole, recorded in the ledger, and fails the run; so does a file in a folder that is not a day
(`dt=2024-13-45`) or a link out of the landing folder (no ledger row: moved, it loads). Files whose name
starts with `.` or `_` are still being written and wait until renamed.

**Produces:** the `raw.orders` and `raw.customers` assets, which trigger `warehouse_etl`, when rows were
loaded; a run with nothing new is *skipped* and triggers nothing.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from mlscale.airflow.assets import RAW_CUSTOMERS, RAW_ORDERS, dag_args, failing_on


@dag(**dag_args(
    "data_engineer",
    schedule="@daily",
    tags=["data-engineer", "ingest"],
    doc_md=__doc__,
))
def ingest_landing():
    @task(outlets=[RAW_ORDERS, RAW_CUSTOMERS])
    def load_landing_files() -> dict:
        """COPY new landing files into raw.*; fail (without retries) when a file was rejected, skip (no asset
        event, so no warehouse_etl run) when no row was loaded."""
        from airflow.sdk.exceptions import AirflowSkipException

        from mlscale.config import settings
        from mlscale.data.ingest import IngestRejected, ingest_landing

        s = settings()
        with failing_on(IngestRejected):
            summary = ingest_landing(s.dsn(s.warehouse_db), s.landing_dir)
        if not any(counts["rows_loaded"] for counts in summary.values()):
            raise AirflowSkipException(f"no new rows under {s.landing_dir}: nothing for warehouse_etl")
        return summary

    load_landing_files()


ingest_landing()
