"""No secret is committed: detect-secrets (Yelp) scans every tracked file with its default plugins. The few
credentials of throwaway services the CI workflow and its tests name carry `# pragma: allowlist secret`."""

import subprocess
from pathlib import Path

from detect_secrets import SecretsCollection
from detect_secrets.settings import default_settings

ROOT = Path(__file__).resolve().parents[2]


def _found(root: Path, files: list[str]) -> dict[str, list[str]]:
    secrets = SecretsCollection(root=str(root))
    with default_settings():
        for name in files:  # one by one: scan_files forks a process pool, which deadlocks in an xdist worker
            secrets.scan_file(name)
    return {path: sorted(s["type"] for s in found) for path, found in secrets.json().items()}


def test_the_repository_holds_no_secret():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert len(files) > 100
    assert _found(ROOT, files) == {}


def test_the_scan_finds_a_committed_key_and_password(tmp_path):
    planted = 'aws_access_key_id = "AKIAZ7QW3XKJ5N2LTR4P"\npassword = "hunter2-horse-battery"\n'  # pragma: allowlist secret
    (tmp_path / "settings.py").write_text(planted)
    assert _found(tmp_path, ["settings.py"]) == {"settings.py": ["AWS Access Key", "Secret Keyword"]}
