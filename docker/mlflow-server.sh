#!/usr/bin/env bash
# The MLflow tracking server behind MLflow's basic-auth app, as docker-compose runs it (also run by
# tests/reliability/test_deployment.py against a real PostgreSQL).
#
# Every request needs a login. People get READ on experiments and registered models (default_permission), so
# nobody can move a version's `production` alias or stage from the MLflow UI around the promotion gates; the
# pipeline's account (created by `mlscale mlflow-account`) creates the registered models and so holds MANAGE on
# them. The admin account is created on the first start from MLFLOW_AUTH_ADMIN_PASSWORD (MLflow ships no
# default); the user store lives in MLflow's own database, beside the tracking tables.
#
# Reads: MLFLOW_BACKEND_STORE_URI, MLFLOW_AUTH_ADMIN_USERNAME, MLFLOW_AUTH_ADMIN_PASSWORD,
# MLFLOW_FLASK_SERVER_SECRET_KEY, MLFLOW_ARTIFACTS_DESTINATION; optional MLFLOW_HOST (0.0.0.0), MLFLOW_PORT
# (5000), MLFLOW_ALLOWED_HOSTS (Host headers it answers: the compose name and loopback; add the name people
# use), MLFLOW_AUTH_CONFIG_PATH (where the auth app's configuration is written) and
# MLFLOW_SERVER_ENABLE_JOB_EXECUTION (false: MLflow's job runner, for GenAI judges and trace rollups, which the
# bundle does not use, is not started; BENCHMARKS.md has what it costs).
set -euo pipefail
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (the MLflow database, as its own role)}"
: "${MLFLOW_AUTH_ADMIN_USERNAME:?set MLFLOW_ADMIN_USER in .env}"
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_ADMIN_PASSWORD in .env}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_SECRET_KEY in .env}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION}"
export MLFLOW_AUTH_CONFIG_PATH="${MLFLOW_AUTH_CONFIG_PATH:-/tmp/mlflow-auth.ini}"

umask 077  # the file holds the database URI, password included
cat > "$MLFLOW_AUTH_CONFIG_PATH" <<INI
[mlflow]
default_permission = READ
database_uri = ${MLFLOW_BACKEND_STORE_URI}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI

exec mlflow server --app-name basic-auth \
    --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
    --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
    --host "${MLFLOW_HOST:-0.0.0.0}" --port "${MLFLOW_PORT:-5000}" --workers 1 \
    --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*}"
