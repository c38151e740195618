"""Each kind of connection has one home: code that opens a PostgreSQL connection or builds an MLflow client
anywhere else is how hidden state (an ambient tracking URI, a default mlflow.db) and missing timeouts creep in."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# what may be called in exactly one place: call -> the one file allowed to make it
HOMES = {"psycopg.connect(": "include/mlscale/postgres.py", "MlflowClient(": "include/mlscale/registry.py"}


def _python_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.split() if f != "tests/unit/test_one_home.py"]


@pytest.mark.parametrize("call", sorted(HOMES))
def test_one_home(call):
    callers = {}
    for name in _python_files():
        count = len(re.findall(re.escape(call), (ROOT / name).read_text()))
        if count:
            callers[name] = count
    assert callers == {HOMES[call]: 1}


def test_no_mlflow_db_is_tracked():
    out = subprocess.run(["git", "ls-files", "mlflow.db", "**/mlflow.db"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out == ""
    assert "mlflow.db" in (ROOT / ".gitignore").read_text().split()
