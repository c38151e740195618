"""Tooling for one machine: the local services (PostgreSQL cluster, MLflow, Airflow processes), setup, the synthetic
shop, the demo and the replay."""
