"""Evaluation plots as matplotlib Figures (no pyplot state; safe in workers and tests)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def _axes(title: str, xlabel: str, ylabel: str):
    fig = Figure(figsize=(5, 4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def classification(y: np.ndarray, model_scores: np.ndarray, baseline_scores: np.ndarray,
                   before_calibration: np.ndarray | None = None) -> dict[str, Figure]:
    """ROC, precision-recall and reliability curves of the model, with the baseline for reference (and, on the
    reliability diagram, the model's probabilities before calibration)."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    figs = {}
    fig, ax = _axes("ROC curve (test)", "false positive rate", "true positive rate")
    for name, s in (("model", model_scores), ("baseline", baseline_scores)):
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", label="random")
    ax.legend()
    figs["roc_curve.png"] = fig

    fig, ax = _axes("Precision-recall curve (test)", "recall", "precision")
    for name, s in (("model", model_scores), ("baseline", baseline_scores)):
        precision, recall, _ = precision_recall_curve(y, s)
        ax.plot(recall, precision, label=name)
    ax.axhline(float(np.mean(y)), color="k", linestyle=":", label="prevalence")
    ax.legend()
    figs["pr_curve.png"] = fig

    fig, ax = _axes("Reliability diagram (test)", "mean predicted probability", "observed rate")
    curves = [("model", model_scores), ("baseline", baseline_scores)]
    if before_calibration is not None:
        curves.insert(1, ("model before calibration", before_calibration))
    for name, s in curves:
        observed, predicted = calibration_curve(y, s, n_bins=10, strategy="quantile")
        ax.plot(predicted, observed, marker="o", label=name)
    ax.plot([0, 1], [0, 1], "k:", label="perfect")
    ax.legend()
    figs["calibration_curve.png"] = fig
    return figs


def regression(y: np.ndarray, model_scores: np.ndarray, baseline_scores: np.ndarray) -> dict[str, Figure]:
    """Predicted against actual, and the residual distribution of model and baseline."""
    figs = {}
    fig, ax = _axes("Predicted vs actual (test)", "actual", "predicted")
    ax.scatter(y, model_scores, s=4, alpha=0.3, label="model")
    top = float(max(np.max(y), np.max(model_scores)))
    ax.plot([0, top], [0, top], "k:", label="perfect")
    ax.legend()
    figs["predicted_vs_actual.png"] = fig

    fig, ax = _axes("Residuals (test)", "actual - predicted", "rows")
    for name, s in (("model", model_scores), ("baseline", baseline_scores)):
        ax.hist(y - s, bins=50, alpha=0.5, label=name)
    ax.legend()
    figs["residuals.png"] = fig
    return figs


def importance(rows: list[dict], metric: str) -> Figure:
    """Horizontal bars of permutation importance (mean drop of `metric`, with its std)."""
    rows = sorted(rows, key=lambda r: r["importance_mean"])
    fig = Figure(figsize=(6, 0.25 * len(rows) + 1.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.barh([r["feature"] for r in rows], [r["importance_mean"] for r in rows],
            xerr=[r["importance_std"] for r in rows])
    ax.set(title="Permutation importance (test)", xlabel=f"drop in {metric} when shuffled")
    return fig
