"""The checks a candidate version must pass: Staging (on its own) and Production (against the incumbent)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlscale.modeling import evaluation
from mlscale.modeling.artifacts import Fetched
from mlscale.modeling.judging import predict
from mlscale.specs import ModelSpec, improvement

SEED = 11


@dataclass
class Gate:
    passed: bool
    checks: dict = field(default_factory=dict)  # check name -> {"passed": bool, ...details}
    reason: str = ""

    def as_dict(self) -> dict:
        return {"passed": self.passed, "checks": self.checks, "reason": self.reason}


def _gate(checks: dict) -> Gate:
    failed = [f"{name}: {c['why']}" for name, c in checks.items() if not c["passed"]]
    return Gate(passed=not failed, checks=checks, reason="; ".join(failed))


def signature_check(spec: ModelSpec, inputs: dict[str, str], mart_columns: dict[str, str]) -> dict:
    """The model's input signature is the spec's features, and the mart still has each with a compatible type."""
    problems = []
    if list(inputs) != spec.feature_names:
        problems.append(f"inputs {list(inputs)} are not the spec's features {spec.feature_names}")
    numeric_types = {"integer", "bigint", "smallint", "numeric", "double precision", "real"}
    for col in spec.feature_names:
        db_type = mart_columns.get(col)
        if db_type is None:
            problems.append(f"{spec.table} has no column {col!r} any more")
        elif (col in spec.features.numeric) != (db_type in numeric_types):
            problems.append(f"{spec.table}.{col} is {db_type}, the model expects {inputs.get(col, '?')}")
    return {"passed": not problems, "why": "; ".join(problems) or "matches", "inputs": inputs}


LATENCY_REPEATS = 5


def batch_latency_ms(spec: ModelSpec, model, rows: pd.DataFrame, n: int) -> float:
    """The best of five timings of scoring `n` rows (the holdout repeated if it is smaller) on one thread.

    The model's own cost per core, whatever else the machine is doing. With its default threads, a
    gradient-boosting model waits at every OpenMP barrier for a thread that another process has pushed
    off its core: measured on 2 cores with a test suite running alongside, the best of five was 117 ms
    and then 3467 ms for the same model, against 88-96 ms on one thread. Other work only adds to a
    single-threaded timing, so the best of five is the model's cost, as timeit reports it.
    """
    from threadpoolctl import threadpool_limits

    batch = rows[spec.feature_names]
    batch = pd.concat([batch] * (n // len(batch) + 1), ignore_index=True).head(n)
    timings = []
    with threadpool_limits(limits=1):
        for _ in range(LATENCY_REPEATS):
            t0 = time.perf_counter()
            predict(spec, model, batch)
            timings.append((time.perf_counter() - t0) * 1000)
    return min(timings)


CEILING_SAMPLES, CEILING_CONFIDENCE = 500, 0.95


def ceiling_check(metric: str, y: np.ndarray, scores: np.ndarray, ceiling: float) -> dict:
    """A lower-is-better metric against its ceiling, allowing for the holdout's size: the candidate fails when
    even the low end of the 95% bootstrap interval of the metric is above the ceiling, i.e. when the holdout
    shows it is worse, not when the holdout is too small to tell. Calibration error needs this: estimated in
    10 bins it is biased upward on few rows (a calibrated model can score over 0.05 on 300 rows)."""
    rng = np.random.default_rng(SEED)
    value = evaluation.metric(metric, y, scores)
    draws = []
    for _ in range(CEILING_SAMPLES):
        idx = rng.integers(0, len(y), len(y))
        draws.append(evaluation.metric(metric, y[idx], scores[idx]))
    # the basic (reverse percentile) interval: resampling adds binning noise of its own, so the draws sit
    # above the estimate and their plain percentiles would be shifted up with them
    q_low, q_high = np.quantile(draws, [(1 - CEILING_CONFIDENCE) / 2, 1 - (1 - CEILING_CONFIDENCE) / 2])
    low, high = max(2 * value - q_high, 0.0), 2 * value - q_low
    ok = bool(low <= ceiling)
    return {"passed": ok, "value": value, "ceiling": ceiling, "low": float(low), "high": float(high),
            "why": f"{metric}={value:.4f} (95% interval [{low:.4f}, {high:.4f}]) "
                   f"{'within' if ok else 'above'} ceiling {ceiling}"}


def staging(spec: ModelSpec, model, fetched: Fetched, holdout: pd.DataFrame, scores: np.ndarray,
            metrics: dict[str, float], mart_columns: dict[str, str]) -> Gate:
    """Floors and ceilings, signature, smoke test (it loaded and scored the holdout), verified artifact, size and latency budgets."""
    gate = spec.promotion.staging
    checks = {}
    for metric, floor in gate.min_metrics.items():
        ok = improvement(metric, metrics[metric], floor) >= 0
        checks[f"floor_{metric}"] = {"passed": ok, "value": metrics[metric], "floor": floor,
                                     "why": f"{metric}={metrics[metric]:.4f} {'meets' if ok else 'worse than'} floor {floor}"}
    y = holdout[spec.label].to_numpy(dtype=float)
    for metric, ceiling in gate.max_metrics.items():
        checks[f"ceiling_{metric}"] = ceiling_check(metric, y, scores, ceiling)
    checks["signature"] = signature_check(spec, fetched.signature_inputs, mart_columns)
    finite = bool(np.isfinite(scores).all()) and len(scores) == len(holdout)
    checks["smoke_test"] = {"passed": finite, "rows": len(holdout),
                            "why": "loaded from the registry and scored the holdout" if finite else "non-finite or missing scores"}
    checks["artifact_sha256"] = {"passed": True, "sha256": fetched.sha256, "why": "matches the hash recorded at registration"}
    size_mb = fetched.size_bytes / 2**20
    checks["model_size"] = {"passed": size_mb <= gate.max_model_mb, "mb": round(size_mb, 3), "budget_mb": gate.max_model_mb,
                            "why": f"{size_mb:.2f} MB vs budget {gate.max_model_mb} MB"}
    ms = batch_latency_ms(spec, model, holdout, gate.latency_rows)
    checks["batch_latency"] = {"passed": ms <= gate.max_batch_ms, "ms": round(ms, 1), "rows": gate.latency_rows,
                               "budget_ms": gate.max_batch_ms,
                               "why": f"{ms:.0f} ms for {gate.latency_rows} rows vs budget {gate.max_batch_ms:.0f} ms"}
    return _gate(checks)


def paired_bootstrap(spec: ModelSpec, y: np.ndarray, candidate: np.ndarray, reference: np.ndarray,
                     samples: int, confidence: float) -> dict[str, float]:
    """Interval of the candidate's improvement over the reference on the primary metric, resampling rows in pairs."""
    rng = np.random.default_rng(SEED)
    metric = spec.primary_metric
    y, candidate, reference = (np.asarray(a, dtype=float) for a in (y, candidate, reference))

    def on_resample(scores):
        if metric == "roc_auc":  # the same values, from the resample's row counts (evaluation.WeightedRocAuc)
            auc = evaluation.WeightedRocAuc(y, scores)
            return lambda idx: auc(np.bincount(idx, minlength=len(y)))
        return lambda idx: evaluation.metric(metric, y[idx], scores[idx])

    cand, ref = on_resample(candidate), on_resample(reference)
    diffs = []
    for _ in range(samples):
        idx = rng.integers(0, len(y), len(y))
        if spec.task == "classification" and len(np.unique(y[idx])) < 2:
            continue
        diffs.append(improvement(metric, cand(idx), ref(idx)))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return {"low": float(low), "high": float(high), "mean": float(np.mean(diffs)), "samples": len(diffs)}


def first_version(spec: ModelSpec, holdout: pd.DataFrame, candidate: np.ndarray, baseline: np.ndarray,
                  baseline_name: str) -> Gate:
    """With no Production yet: the candidate must beat the baseline on the same holdout rows."""
    metric = spec.primary_metric
    y = holdout[spec.label].to_numpy()
    cand_m, base_m = evaluation.metric(metric, y, candidate), evaluation.metric(metric, y, baseline)
    delta = improvement(metric, cand_m, base_m)
    return _gate({"beats_baseline": {"passed": delta > 0, "candidate": cand_m, "reference": base_m, "improvement": delta,
                                     "why": f"{metric} {cand_m:.4f} vs {baseline_name} {base_m:.4f}: "
                                            f"improvement {delta:+.4f} {'>' if delta > 0 else '<='} 0"}})


def production(spec: ModelSpec, holdout: pd.DataFrame, candidate: np.ndarray, reference: np.ndarray,
               reference_name: str) -> Gate:
    """Beat current Production on the same holdout rows: by the margin, significantly, and in every segment."""
    gate = spec.promotion.production
    metric = spec.primary_metric
    y = holdout[spec.label].to_numpy()
    cand_m, ref_m = evaluation.metric(metric, y, candidate), evaluation.metric(metric, y, reference)
    delta = improvement(metric, cand_m, ref_m)
    checks = {"margin": {"passed": delta >= gate.min_improvement, "candidate": cand_m, "reference": ref_m,
                         "improvement": delta, "margin": gate.min_improvement,
                         "why": f"{metric} {cand_m:.4f} vs {reference_name} {ref_m:.4f}: improvement {delta:+.4f} "
                                f"{'>=' if delta >= gate.min_improvement else '<'} margin {gate.min_improvement}"}}
    boot = paired_bootstrap(spec, y, candidate, reference, gate.bootstrap.samples, gate.bootstrap.confidence)
    checks["bootstrap"] = {"passed": boot["low"] > 0, **boot, "confidence": gate.bootstrap.confidence,
                           "why": f"{gate.bootstrap.confidence:.0%} interval of the improvement "
                                  f"[{boot['low']:+.4f}, {boot['high']:+.4f}] {'is' if boot['low'] > 0 else 'is not'} above 0"}
    cand_seg = {(r["segment"], r["value"]): r["metrics"] for r in evaluation.by_segment(spec, holdout, y, candidate)}
    ref_seg = {(r["segment"], r["value"]): r["metrics"] for r in evaluation.by_segment(spec, holdout, y, reference)}
    drops = {f"{s}={v}": -improvement(metric, cand_seg[(s, v)][metric], ref_seg[(s, v)][metric])
             for (s, v) in cand_seg if cand_seg[(s, v)] and ref_seg.get((s, v))}
    worst = max(drops.items(), key=lambda kv: kv[1], default=(None, 0.0))
    ok = worst[1] <= gate.segment_tolerance
    checks["segments"] = {"passed": ok, "drops": drops, "tolerance": gate.segment_tolerance,
                          "why": (f"largest drop {worst[1]:+.4f} ({worst[0]}) "
                                  f"{'within' if ok else 'exceeds'} tolerance {gate.segment_tolerance}")
                          if worst[0] else "no segment large enough to compare"}
    return _gate(checks)
