# One image for every mlscale container (Airflow processes, Celery workers, MLflow, one-off setup).
# git: a GitDagBundle (README, *Versioned bundle*) clones the bundle on the dag-processor and the workers.
FROM python:3.11-slim-bookworm

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__COSMOS__ENABLE_TELEMETRY=False \
    DBT_SEND_ANONYMOUS_USAGE_STATS=False

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libpq-dev libmariadb-dev pkg-config curl git \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 50000 mlscale

WORKDIR /opt/mlscale
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

COPY pyproject.toml ./
COPY include ./include
COPY dags ./dags
COPY plugins ./plugins
COPY dbt_project ./dbt_project
COPY docker ./docker
# The dbt manifest Cosmos renders warehouse_etl from is part of the image: every container (dag-processor,
# scheduler, workers) has the same one, built from the same project, with no database needed.
RUN pip install --no-cache-dir --no-deps -e . \
 && mlscale dbt-manifest \
 && mkdir -p "$AIRFLOW_HOME" /opt/mlscale/landing /opt/mlscale/reports /opt/mlscale/.mlscale \
 && chown -R mlscale /opt/mlscale "$AIRFLOW_HOME"

# The bundle's commit, recorded in every MLflow run's lineage (`docker compose build` passes GIT_COMMIT).
ARG GIT_COMMIT=unknown
ENV MLSCALE_GIT_COMMIT=${GIT_COMMIT}

USER mlscale
