"""The bytes of a registered model: a sha256 recorded at registration and checked before every use."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SHA_TAG, BYTES_TAG = "artifact_sha256", "artifact_bytes"


class TamperedArtifact(RuntimeError):
    """A registered model's files no longer hash to what was recorded when it was registered."""


@dataclass(frozen=True)
class Fetched:
    path: Path  # local copy of the model directory
    sha256: str
    size_bytes: int


def tree_sha256(folder: Path) -> tuple[str, int]:
    """sha256 over every file's relative path and content (sorted), and the total size in bytes."""
    h, size = hashlib.sha256(), 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        h.update(path.relative_to(folder).as_posix().encode() + b"\0" + hashlib.sha256(data).digest())
        size += len(data)
    return h.hexdigest(), size


def fetch(name: str, version: str, dst: Path | None = None) -> Fetched:
    """Download the files of `models:/<name>/<version>` and hash them."""
    import mlflow

    dst = dst or Path(tempfile.mkdtemp(prefix=f"mlscale-{name}-v{version}-"))
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(dst)))
    sha, size = tree_sha256(local)
    return Fetched(local, sha, size)


def record(name: str, version: str) -> Fetched:
    """Hash a freshly registered version and keep the hash and size as version tags."""
    import mlflow

    fetched = fetch(name, version)
    client = mlflow.MlflowClient()
    client.set_model_version_tag(name, version, SHA_TAG, fetched.sha256)
    client.set_model_version_tag(name, version, BYTES_TAG, str(fetched.size_bytes))
    return fetched


def fetch_verified(name: str, version: str) -> Fetched:
    """Download a version and check its hash against the one recorded at registration."""
    import mlflow

    recorded = mlflow.MlflowClient().get_model_version(name, version).tags.get(SHA_TAG)
    if not recorded:
        raise TamperedArtifact(f"{name} v{version} has no {SHA_TAG} tag: it was not registered by mlscale training "
                               f"(or before hashes were recorded); if you trust its files, record their hash with "
                               f"`mlscale record-artifact {name} {version}`")
    fetched = fetch(name, version)
    if fetched.sha256 != recorded:
        raise TamperedArtifact(f"{name} v{version}: artifact sha256 {fetched.sha256} differs from {recorded} "
                               "recorded at registration; refusing to use it")
    return fetched


def load_verified(name: str, version: str):
    """The scikit-learn model of a version, loaded from the very files whose hash was checked."""
    import mlflow.sklearn

    fetched = fetch_verified(name, version)
    log.info("%s v%s: artifact sha256 %s verified (%d bytes)", name, version, fetched.sha256[:12], fetched.size_bytes)
    return mlflow.sklearn.load_model(str(fetched.path)), fetched
