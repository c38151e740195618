"""Benchmark: the daily `dbt build` of two revisions of the dbt project on the same days, interleaved round by round.

A figure that moved between two commits (a daily run slower after a change to the models, say) on a machine whose
speed drifts within the hour cannot be told from noise by running one tree, then the other. This builds the same
generated shop's history once per revision (each revision's `dbt_project/` and `include/` from `git archive`, the
Python code of this checkout), then lands the same new day in both and times a bare daily `dbt build` of each (as
`mlscale etl` runs it: claim, build, vacuum, publish), alternating which goes first. Prints each round, the medians,
and the nodes whose median time moved most (dbt's per-node times, `run_results.json`).
Own databases (suffixes _bench_rev_base and _bench_rev_head, dropped at the end), temporary folders (removed). Usage:
    .venv/bin/python bench/dbt_revisions.py --base 1e8d7af [--head HEAD] [--rounds 6] [--customers 3000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

from mlscale import postgres  # noqa: E402
from mlscale.config import ROOT, Settings  # noqa: E402
from mlscale.data import warehouse  # noqa: E402
from mlscale.data.ingest import ingest_landing  # noqa: E402
from mlscale.local.datagen import ShopParams, generate  # noqa: E402
from mlscale.local.demo import output_to  # noqa: E402


def checkout(rev: str, into: Path) -> str:
    """The revision's files in `into` (git archive: no worktree in this repository's metadata); its short hash."""
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], check=True, capture_output=True,
                          text=True).stdout.strip()


def daily_build(settings: Settings, run_id: str) -> tuple[float, dict[str, float]]:
    """claim, `dbt build`, vacuum, publish: the build's seconds and dbt's seconds per node."""
    warehouse.claim_batch(settings, run_id)
    t0 = time.monotonic()
    warehouse.dbt(settings, "build")
    seconds = time.monotonic() - t0
    warehouse.vacuum_and_analyze(settings)
    warehouse.publish_batch(settings, run_id)
    results = json.loads((warehouse.target_path(settings) / "run_results.json").read_text())["results"]
    return seconds, {r["unique_id"]: r["execution_time"] for r in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the revision to compare against")
    parser.add_argument("--head", default="HEAD")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--customers", type=int, default=ShopParams.customers, help="the shop's customers (300 days)")
    args = parser.parse_args()
    shop = ShopParams(customers=args.customers)
    with tempfile.TemporaryDirectory(prefix="mlscale-bench-rev-") as tmp:
        tmp = Path(tmp)
        trees, revs = {}, {}
        for name, rev in (("base", args.base), ("head", args.head)):
            revs[name] = checkout(rev, tmp / name)
            trees[name] = Settings.from_env({
                **os.environ, "MLSCALE_ROOT": str(tmp / name), "MLSCALE_DB_SUFFIX": f"_bench_rev_{name}",
                "MLSCALE_LANDING_DIR": str(tmp / f"landing_{name}"), "MLSCALE_STATE_DIR": str(tmp / "state")})
        try:
            measure(trees, revs, shop, args.rounds, tmp / "bench_dbt_revisions.log")
        finally:
            for settings in trees.values():
                postgres.drop_databases(settings, [settings.warehouse_db])


def measure(trees: dict[str, Settings], revs: dict[str, str], shop: ShopParams, rounds: int, log: Path) -> None:
    for name, settings in trees.items():
        postgres.ensure_databases(settings, [settings.warehouse_db])
        warehouse.drop_schemas(settings)
        t0 = time.monotonic()
        with output_to(log):
            generate(shop, settings.landing_dir, progress_every=0)
            ingest_landing(settings.dsn(settings.warehouse_db), settings.landing_dir)
            daily_build(settings, "history")
        print(f"{name} ({revs[name]}): {shop.customers:,} customers, {shop.days} days built in "
              f"{time.monotonic() - t0:.0f} s", flush=True)
    totals: dict[str, list[float]] = {name: [] for name in trees}
    nodes: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    for r in range(rounds):
        day = shop.days + r
        for settings in trees.values():
            with output_to(log):
                generate(dataclasses.replace(shop, days=day + 1), settings.landing_dir, days=range(day, day + 1),
                         progress_every=0)
                ingest_landing(settings.dsn(settings.warehouse_db), settings.landing_dir)
        order = list(trees) if r % 2 == 0 else list(trees)[::-1]  # neither always first
        line = []
        for name in order:
            with output_to(log):
                seconds, per_node = daily_build(trees[name], f"day-{day}")
            totals[name].append(seconds)
            for node, s in per_node.items():
                nodes[name].setdefault(node, []).append(s)
            line.append(f"{name} {seconds:.1f} s")
        print(f"round {r + 1} (day {day}): {', '.join(line)}", flush=True)

    med = statistics.median
    for name in trees:
        print(f"{name} ({revs[name]}): daily dbt build median {med(totals[name]):.2f} s "
              f"({' / '.join(f'{s:.1f}' for s in totals[name])}); dbt's node times summed "
              f"{sum(med(v) for v in nodes[name].values()):.1f} s")
    print(f"head / base: {med(totals['head']) / med(totals['base']):.3f}")
    moved = sorted(((med(nodes["head"].get(k, [0.0])) - med(v), k) for k, v in nodes["base"].items()), reverse=True)
    print("nodes whose median moved most (head - base):")
    for delta, node in moved[:5] + moved[-3:]:
        print(f"  {delta:+.2f} s  {node}")
    if added := sorted(set(nodes["head"]) - set(nodes["base"])):
        print(f"only in head: {added}")


if __name__ == "__main__":
    main()
