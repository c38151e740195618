"""Data Engineer: landing contract, COPY ingest with its ledger and quarantine, Great Expectations gates, the
warehouse_etl run's bookkeeping, real public orders logs."""
