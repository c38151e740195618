"""
### ingest_landing — raw files into `raw.*`

**Owner:** Data Engineer · **Schedule:** daily, and by hand after a delivery.

Loads every new CSV under `landing/<feed>/dt=YYYY-MM-DD/` into `raw.<feed>` with PostgreSQL COPY,
one transaction per file. A sha256 ledger (`ops.ingest_files`) makes re-deliveries and reruns no-ops.
Rows that break the contract (`include/contracts/landing.yml`) go to `ops.quarantine` with file,
line and reason; the rest of the file still loads. A file missing a required column is rejected
whole, recorded in the ledger, and fails the run.

**Produces:** the `raw.orders` and `raw.customers` assets, which trigger `warehouse_etl`.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from mlscale.assets import RAW_CUSTOMERS, RAW_ORDERS, dag_args


@dag(**dag_args(
    "data_engineer",
    schedule="@daily",
    tags=["data-engineer", "ingest"],
    doc_md=__doc__,
))
def ingest_landing():
    @task(outlets=[RAW_ORDERS, RAW_CUSTOMERS])
    def load_landing_files() -> dict:
        """COPY new landing files into raw.*; fail (without retries) when a file was rejected."""
        from airflow.sdk.exceptions import AirflowFailException

        from mlscale.config import settings
        from mlscale.ingest import IngestRejected, ingest_landing

        s = settings()
        try:
            return ingest_landing(s.dsn(s.warehouse_db), s.landing_dir)
        except IngestRejected as exc:
            raise AirflowFailException(str(exc)) from exc

    load_landing_files()


ingest_landing()
