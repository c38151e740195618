"""The bytes of a registered model: a sha256 recorded at registration and checked before every use."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlscale import ops, postgres, registry
from mlscale.config import Settings

log = logging.getLogger(__name__)

SHA_TAG, BYTES_TAG = "artifact_sha256", "artifact_bytes"
# Where the classes of our own pipeline steps lived before the package was grouped by role (December 2026): the
# skops files of versions registered before name them so, and load only while those paths import.
FORMER_MODULES = {"mlscale.btyd": "mlscale.modeling.btyd", "mlscale.selection": "mlscale.modeling.selection"}


class TamperedArtifact(RuntimeError):
    """A registered model's files no longer hash to what was recorded when it was registered."""


@dataclass(frozen=True)
class Fetched:
    sha256: str
    size_bytes: int
    signature_inputs: dict[str, str]  # input column -> type, from the model's MLmodel file


def tree_sha256(folder: Path) -> tuple[str, int]:
    """sha256 over every file's relative path and content (sorted), and the total size in bytes."""
    h, size = hashlib.sha256(), 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        h.update(path.relative_to(folder).as_posix().encode() + b"\0" + hashlib.sha256(data).digest())
        size += len(data)
    return h.hexdigest(), size


def signature_inputs(model_dir: Path) -> dict[str, str]:
    """Input column -> type of the signature in a model folder's MLmodel file ({} without a signature)."""
    from mlflow.models import Model

    signature = Model.load(str(model_dir)).signature
    return {c.name: getattr(c.type, "name", str(c.type)) for c in signature.inputs.inputs} if signature else {}


@contextlib.contextmanager
def _download(settings: Settings, name: str, version: str) -> Iterator[tuple[Path, Fetched]]:
    """The files of version `version` of `name` in a temporary folder (removed afterwards), and their facts.

    The version's location comes from the settings' registry: MLflow resolves a `models:/` URI with its ambient
    registry URI even when given another."""
    import mlflow

    location = registry.client(settings).get_model_version_download_uri(name, version)
    with tempfile.TemporaryDirectory(prefix=f"mlscale-{name}-v{version}-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp,
                                                         tracking_uri=settings.mlflow_uri))
        sha, size = tree_sha256(local)
        yield local, Fetched(sha, size, signature_inputs(local))


def fetch(settings: Settings, name: str, version: str) -> Fetched:
    """Download the files of a version and hash them (nothing is kept on disk)."""
    with _download(settings, name, version) as (_, fetched):
        return fetched


def record(settings: Settings, name: str, version: str) -> Fetched:
    """Hash a freshly registered version; keep the hash in the warehouse (ops.model_artifacts, what every use
    verifies against) and as version tags (for people reading the registry)."""
    fetched = fetch(settings, name, version)
    client = registry.client(settings)
    client.set_model_version_tag(name, version, SHA_TAG, fetched.sha256)
    client.set_model_version_tag(name, version, BYTES_TAG, str(fetched.size_bytes))
    with postgres.warehouse(settings) as conn:
        ops.ensure(conn, "model_artifacts")
        conn.execute("insert into ops.model_artifacts (model, version, run_id, sha256, size_bytes)"
                     " values (%s, %s, %s, %s, %s) on conflict (model, version) do update set run_id = excluded.run_id,"
                     " sha256 = excluded.sha256, size_bytes = excluded.size_bytes, recorded_at = now()",
                     (name, version, registry.version_run_id(settings, name, version), fetched.sha256,
                      fetched.size_bytes))
    return fetched


def _recorded_sha(settings: Settings, name: str, version: str) -> str:
    """The hash recorded at registration: the warehouse's copy. Someone who can write to MLflow can replace a
    version's files and its tag together, not this copy; a tag that disagrees with it is itself a finding. A
    version registered before the copy existed has only its tag, which is used with a warning."""
    registered = registry.client(settings).get_model_version(name, version)
    tag = registered.tags.get(SHA_TAG)
    with postgres.warehouse(settings) as conn:
        ops.ensure(conn, "model_artifacts")
        row = conn.execute("select run_id, sha256 from ops.model_artifacts where model = %s and version = %s",
                           (name, version)).fetchone()
    if row is not None:
        run_id, recorded = row
        if registered.run_id != run_id:
            raise TamperedArtifact(f"{name} v{version} now comes from run {registered.run_id}, but the hash "
                                   f"recorded at registration is of run {run_id}'s files: the registry's version "
                                   f"was replaced; refusing to use it")
        if tag is not None and tag != recorded:
            raise TamperedArtifact(f"{name} v{version}: its {SHA_TAG} tag {tag} differs from {recorded}, the hash the "
                                   "warehouse recorded at registration: the tag was changed; refusing to use it")
        return recorded
    if not tag:
        raise TamperedArtifact(f"{name} v{version} has no recorded hash: it was not registered by mlscale training "
                               f"(or before hashes were recorded); if you trust its files, record their hash with "
                               f"`mlscale record-artifact {name} {version}`")
    log.warning("%s v%s: its hash is recorded only as an MLflow tag (registered before ops.model_artifacts); "
                "`mlscale record-artifact %s %s` records it in the warehouse if you trust its files",
                name, version, name, version)
    return tag


def _verify(name: str, version: str, fetched: Fetched, recorded: str) -> None:
    if fetched.sha256 != recorded:
        raise TamperedArtifact(f"{name} v{version}: artifact sha256 {fetched.sha256} differs from {recorded} "
                               "recorded at registration; refusing to use it")


def fetch_verified(settings: Settings, name: str, version: str) -> Fetched:
    """Download a version and check its hash against the one recorded at registration."""
    recorded = _recorded_sha(settings, name, version)
    fetched = fetch(settings, name, version)
    _verify(name, version, fetched, recorded)
    return fetched


def former_module_paths() -> None:
    """Make the former module paths of our pipeline steps import (the modules they moved to)."""
    for former, current in FORMER_MODULES.items():
        sys.modules.setdefault(former, importlib.import_module(current))


@contextlib.contextmanager
def quiet_module_probe() -> Iterator[None]:
    """While skops saves or loads a model (MLflow imports skops then). To name the module of an object without
    `__module__` (numpy's and scipy's ufuncs, which skops lists when it is imported) it reads that name from every
    loaded module; in an Airflow task those include Airflow's deprecated-import shims, each of which warns (1,160
    warnings in one train_ task log, before its real lines). They say nothing about the model: ignored here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The `airflow\.", category=FutureWarning)
        yield


def load_verified(settings: Settings, name: str, version: str):
    """The scikit-learn model of a version, loaded from the very files whose hash was checked."""
    import mlflow.sklearn

    former_module_paths()
    recorded = _recorded_sha(settings, name, version)
    with _download(settings, name, version) as (folder, fetched):
        _verify(name, version, fetched, recorded)
        log.info("%s v%s: artifact sha256 %s verified (%d bytes)", name, version, fetched.sha256[:12], fetched.size_bytes)
        with quiet_module_probe():
            return mlflow.sklearn.load_model(str(folder)), fetched
