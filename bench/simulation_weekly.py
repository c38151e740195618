"""Benchmark: a 26-step weekly simulation (`make simulate`) finishes within 30 minutes on 2 cores.

Runs exactly `mlscale simulate --days 182 --step weekly` (its own `*_sim` databases, MLflow on port
+66) and prints the total time against the 30-minute target (ratio), where the time went (history and
first model, plain steps, steps with a retrain, the label tail) and the realised metric of both
policies. Usage:
    .venv/bin/python bench/simulation_weekly.py [--days 182] [--customers 3000]
"""

from __future__ import annotations

import argparse

from mlscale.config import settings
from mlscale.local.setup import setup
from mlscale.local.simulation import Scenario, replay_settings, simulate
from mlscale.specs import load_specs

TARGET_MINUTES = 30.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=182)
    parser.add_argument("--customers", type=int, default=3000)
    args = parser.parse_args()
    s = setup(replay_settings(settings()))
    spec = load_specs()["churn_90d"]
    outcome = simulate(s, spec, Scenario(customers=args.customers, days=args.days), s.root / "reports" / "simulation")
    t = outcome.table
    retrained = t["retrain"].astype(bool)
    steps = t["seconds"].sum()
    minutes = outcome.seconds / 60
    metric = spec.primary_metric
    print(f"\nsimulation: {len(t)} weekly steps, {args.customers} customers")
    print(f"  total             {minutes:6.1f} min   target {TARGET_MINUTES:.0f} min   ratio {minutes / TARGET_MINUTES:.2f}")
    print(f"  history + v1      {(outcome.seconds - steps) / 60:6.1f} min   (includes the label tail and judging)")
    print(f"  plain steps       {t.loc[~retrained, 'seconds'].mean():6.1f} s each ({(~retrained).sum()})")
    print(f"  retrain steps     {t.loc[retrained, 'seconds'].mean() if retrained.any() else 0:6.1f} s each ({retrained.sum()})")
    print(f"  realised {metric}, last quarter: rolling {outcome.rolling_final:.4f}, frozen {outcome.frozen_final:.4f}")


if __name__ == "__main__":
    main()
