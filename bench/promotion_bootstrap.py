"""Benchmark: the production gate's paired bootstrap of ROC AUC against scikit-learn's roc_auc_score on the same
resamples.

`gates.paired_bootstrap` scores each resample's ROC AUC from its row counts against one sort of the scores
(`evaluation.WeightedRocAuc`); the baseline scores the same resamples (the gate's seed) with `roc_auc_score`, as the
gate did before. Prints, per holdout size, both CPU times, their ratio and the largest difference between the two
intervals' ends (they must agree to 1e-12). No database or server. Usage:
    .venv/bin/python bench/promotion_bootstrap.py [--rows 3000 30000] [--samples 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from mlscale.production import gates  # noqa: E402
from mlscale.specs import load_specs  # noqa: E402


def sklearn_interval(y, candidate, reference, samples: int, confidence: float) -> tuple[float, float]:
    rng = np.random.default_rng(gates.SEED)
    diffs = []
    for _ in range(samples):
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(y[idx])) < 2:
            continue
        diffs.append(roc_auc_score(y[idx], candidate[idx]) - roc_auc_score(y[idx], reference[idx]))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[3000, 30000])
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    spec = load_specs()["churn_90d"]
    print(f"{'rows':>7} {'roc_auc_score s':>16} {'gate s':>7} {'ratio':>6} {'max |diff|':>11}")
    for n in args.rows:
        rng = np.random.default_rng(0)
        y = (rng.random(n) < 0.3).astype(float)
        candidate, reference = rng.random(n) + 0.3 * y, np.round(rng.random(n) + 0.2 * y, 2)  # the reference has ties
        started = time.process_time()
        want = sklearn_interval(y, candidate, reference, args.samples, 0.95)
        baseline = time.process_time() - started
        started = time.process_time()
        got = gates.paired_bootstrap(spec, y, candidate, reference, args.samples, 0.95)
        fast = time.process_time() - started
        diff = max(abs(got["low"] - want[0]), abs(got["high"] - want[1]))
        print(f"{n:>7} {baseline:>16.2f} {fast:>7.2f} {baseline / fast:>6.1f} {diff:>11.1e}")


if __name__ == "__main__":
    main()
