"""Benchmark: parsing the bundle costs about what parsing one trivial DAG costs.

The scheduler's DAG processor re-parses every file of the bundle every `min_file_process_interval`
and gives up on a file after `dagbag_import_timeout`; the factories (one set of DAGs per model spec)
and Cosmos (one task per dbt node, rendered from the manifest) must keep that cheap. Each parse runs
in a fresh process (tests/dags/parse_bundle.py: databases and network blocked) so imports count as
they do for the DAG processor. Prints the median seconds of the bundle and of a folder holding one
trivial DAG (the baseline: DagBag start-up and a minimal DAG), their ratio, the bundle's DAG count,
and the bundle's share of Airflow's dagbag_import_timeout (target: under 2 s on 2 cores). Needs the
dbt manifest (`make setup` builds it). Usage:
    .venv/bin/python bench/dag_parse.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARSE = ROOT / "tests" / "dags" / "parse_bundle.py"
TRIVIAL = '''
from airflow.sdk import dag, task


@dag(schedule=None)
def trivial():
    @task
    def hello():
        return 1

    hello()


trivial()
'''


def parse(folder: Path) -> dict:
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = subprocess.run([sys.executable, str(PARSE), str(folder)], env=env, capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "trivial.py").write_text(TRIVIAL)
        runs = {"trivial DAG": [], "bundle": []}
        for _ in range(args.repeats):  # interleaved, so both see the same machine load
            for name, folder in (("trivial DAG", Path(tmp)), ("bundle", ROOT / "dags")):
                result = parse(folder)
                if result["import_errors"]:
                    sys.exit(f"{name}: import errors {result['import_errors']}")
                runs[name].append((result["seconds"], len(result["dags"])))
    medians = {name: statistics.median(s for s, _ in values) for name, values in runs.items()}
    for name, values in runs.items():
        print(f"{name:12s} {values[0][1]:3d} DAGs  median {medians[name]:.3f} s  "
              f"(runs: {', '.join(f'{s:.3f}' for s, _ in values)})")
    print(f"ratio bundle / trivial DAG: {medians['bundle'] / medians['trivial DAG']:.2f}")
    from airflow.configuration import conf

    timeout = conf.getfloat("core", "dagbag_import_timeout")
    print(f"bundle / dagbag_import_timeout ({timeout:.0f} s): {medians['bundle'] / timeout:.3f}"
          f"  (target: under 2 s: {'met' if medians['bundle'] < 2 else 'NOT met'})")


if __name__ == "__main__":
    main()
