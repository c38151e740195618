"""Airflow glue: asset URIs and default_args for the DAG files, the approval step, running DAGs through dag.test(),
the ML models page. Everything else in mlscale runs without Airflow."""
