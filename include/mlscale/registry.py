"""Read-only lookups in the MLflow model registry: versions, aliases, tags. Scoring, monitoring, reporting and
promotion (`mlscale.production.promotion`) read the registry through these.

Every client is built from the settings' tracking URI (`client`), never from MLflow's ambient default,
which outside a configured environment is a `mlflow.db` file in the working directory.
"""

from __future__ import annotations

import os

from mlscale import postgres
from mlscale.config import Settings


class RegistryError(RuntimeError):
    """A registry operation cannot run as asked (no such version, nothing to roll back to, ...)."""


def client(settings: Settings):
    """An MLflow client of the settings' tracking server, for tracking and for the model registry; its requests
    time out and retry as the settings say (MLflow reads both from the environment on every request)."""
    import mlflow

    os.environ.update(settings.mlflow_http_env())
    return mlflow.MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)


def not_found(exc) -> bool:
    """True when an MlflowException says that what was asked for does not exist (no such model, alias or
    artifact); False for every other failure (a server down or timing out), which callers must not read as
    'nothing there'."""
    return getattr(exc, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def alias_version(settings: Settings, name: str, alias: str) -> str | None:
    """The version behind `alias`, or None when the model or the alias does not exist (any other error raises)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client(settings).get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if not_found(exc):
            return None
        raise


def forget(settings: Settings, name: str) -> None:
    """Delete registered model `name`, all its versions and their recorded hashes (a replay starts from an
    empty registry)."""
    mlflow_client = client(settings)
    if mlflow_client.search_registered_models(f"name='{name}'"):
        mlflow_client.delete_registered_model(name)
    with postgres.warehouse(settings) as conn:
        if postgres.table_exists(conn, "ops.model_artifacts"):
            conn.execute("delete from ops.model_artifacts where model = %s", (name,))


def version_tags(settings: Settings, name: str, version: str) -> dict[str, str]:
    """The tags of a registered version (test metrics, training range, artifact hash, lineage)."""
    return dict(client(settings).get_model_version(name, version).tags)


def version_run_id(settings: Settings, name: str, version: str) -> str:
    """The MLflow run that logged a registered version."""
    return client(settings).get_model_version(name, version).run_id


def newest_candidate(settings: Settings, name: str) -> str:
    """The most recently registered version, if it is not (or no longer) in Production or Archived.

    A version staged by an earlier attempt stays the candidate, so a retried promotion evaluates the same version.
    """
    versions = client(settings).search_model_versions(f"name='{name}'")
    if not versions:
        raise RegistryError(f"model {name} has no registered version; run train_{name} first")
    newest = max(versions, key=lambda v: int(v.version))
    if newest.current_stage in ("Production", "Archived"):
        raise RegistryError(f"the newest version of {name}, v{newest.version}, is already {newest.current_stage}: "
                            f"nothing awaits promotion (pass a version to promote another one)")
    return str(newest.version)


def model_versions(settings: Settings, name: str) -> list:
    """Every version of `name` (MLflow ModelVersion, aliases included), newest first."""
    mlflow_client = client(settings)
    found = sorted(mlflow_client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version))
    return [mlflow_client.get_model_version(name, v.version) for v in found]  # search results omit aliases


def registry_state(settings: Settings, name: str) -> list[dict]:
    """Every version of `name` with its stage and aliases, newest first."""
    return [{"version": str(v.version), "stage": v.current_stage, "aliases": sorted(v.aliases or [])}
            for v in model_versions(settings, name)]


def ui_url(mlflow_uri: str, route: str) -> str:
    """A page of the MLflow UI in its classic machine-learning view, where the registry is. MLflow 3's UI opens in
    its GenAI view unless the link says otherwise (`workflowType`) or the browser chose before (its localStorage
    key `mlflow.workflowType`, set by the "GenAI | Model training" switch at the top left)."""
    return f"{mlflow_uri}/#/{route}?workflowType=machine_learning"


def run_url(mlflow_uri: str, experiment_id: str, run_id: str) -> str:
    return ui_url(mlflow_uri, f"experiments/{experiment_id}/runs/{run_id}")


def version_url(mlflow_uri: str, model: str, version: str) -> str:
    return ui_url(mlflow_uri, f"models/{model}/versions/{version}")
