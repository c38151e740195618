#!/usr/bin/env bash
# Runs once, when the postgres container initialises an empty data directory (/docker-entrypoint-initdb.d);
# tests/reliability/test_deployment.py runs it against a real server with names of its own.
#
# One database and one login role per service, each with rights on its own database only:
#   warehouse  (WAREHOUSE_USER)  ingest, dbt, Great Expectations, training, scoring: owns the warehouse
#   airflow    (AIRFLOW_DB_USER) Airflow's metadata database
#   mlflow     (MLFLOW_DB_USER)  MLflow's tracking store and its auth app's user store
# and WAREHOUSE_READER_USER, read-only on the warehouse (SELECT on every table and view the warehouse role
# creates, now or later): the Airflow api-server's "ML models" page reads the warehouse as this role.
# PUBLIC may connect to none of the three. Passwords come from .env; POSTGRES_USER stays the superuser only
# for this script and the operator.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-postgres}" \
    -v warehouse_db="${WAREHOUSE_DB:-warehouse}" -v airflow_db="${AIRFLOW_DB:-airflow}" -v mlflow_db="${MLFLOW_DB:-mlflow}" \
    -v warehouse_user="${WAREHOUSE_USER:?}" -v warehouse_password="${WAREHOUSE_PASSWORD:?}" \
    -v reader_user="${WAREHOUSE_READER_USER:?}" -v reader_password="${WAREHOUSE_READER_PASSWORD:?}" \
    -v airflow_user="${AIRFLOW_DB_USER:?}" -v airflow_password="${AIRFLOW_DB_PASSWORD:?}" \
    -v mlflow_user="${MLFLOW_DB_USER:?}" -v mlflow_password="${MLFLOW_DB_PASSWORD:?}" <<'SQL'
create role :"warehouse_user" login password :'warehouse_password';
create role :"reader_user" login password :'reader_password';
create role :"airflow_user" login password :'airflow_password';
create role :"mlflow_user" login password :'mlflow_password';

create database :"warehouse_db" owner :"warehouse_user";
create database :"airflow_db" owner :"airflow_user";
create database :"mlflow_db" owner :"mlflow_user";
revoke all on database :"warehouse_db" from public;
revoke all on database :"airflow_db" from public;
revoke all on database :"mlflow_db" from public;
grant connect on database :"warehouse_db" to :"reader_user";

\connect :"warehouse_db"
-- What the warehouse role creates (schemas raw, staging, marts, ml, kpi, ops, ...; dbt's tables and views,
-- rebuilt on every run) is readable by the reader role, and only readable.
alter default privileges for role :"warehouse_user" grant usage on schemas to :"reader_user";
alter default privileges for role :"warehouse_user" grant select on tables to :"reader_user";
grant usage on schema public to :"reader_user";
SQL
