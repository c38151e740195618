-- One server, three databases (DESIGN.md): the warehouse, Airflow's metadata, MLflow's backend store.
CREATE DATABASE warehouse;
CREATE DATABASE airflow;
CREATE DATABASE mlflow;
