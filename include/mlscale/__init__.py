"""mlscale: the logic behind the mlscale Airflow bundle (ingest, quality, training, registry, scoring)."""
