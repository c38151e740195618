"""The Dockerfile's build step that writes the dbt manifest, run as the image runs it (no Docker engine here)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_docker_compose import DOCKERFILE_ENV

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_the_manifest_step_builds_from_the_copied_project_alone_and_needs_no_database(tmp_path):
    """What the Dockerfile copies (without what .dockerignore leaves out), its ENV, no PostgreSQL that answers:
    `mlscale dbt-manifest` writes the manifest Cosmos renders warehouse_etl from."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    image = tmp_path / "opt-mlscale"
    image.mkdir()
    for source in re.findall(r"^COPY (\S+) \./\S*$", dockerfile, re.M):
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, image / source,
                            ignore=lambda folder, names: [n for n in names if any(
                                Path(folder, n).relative_to(ROOT).match(pattern) for pattern in ignored)])
        else:
            shutil.copy2(ROOT / source, image / source)
    assert not list(image.glob("dbt_project/target*")), "a local dbt target folder reached the image"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "MLSCALE_ROOT": str(image),
           # nothing listens on port 1: a step that needed the database would fail here
           "MLSCALE_PG_DSN": "postgresql://nobody@127.0.0.1:1/postgres",
           **DOCKERFILE_ENV}
    env = {k: v for k, v in env.items() if not v.startswith("$")}  # build args are not set at this step
    done = subprocess.run([sys.executable, "-m", "mlscale.cli", "dbt-manifest"], env=env, cwd=image,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    manifest = json.loads((image / "dbt_project" / "target" / "manifest.json").read_text())
    models = {node["name"] for node in manifest["nodes"].values() if node["resource_type"] == "model"}
    assert {"stg_shop__orders", "customer_features"} <= models
    assert manifest["metadata"]["project_name"] == "mlscale"
    assert not list((image / "dbt_project" / "target").glob(".parse-*"))  # dbt's own folder, renamed from
