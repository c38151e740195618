"""The model card: a Markdown page for people deciding whether to trust and use a model version."""

from __future__ import annotations

from mlscale.specs import ModelSpec


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _uninformative(features: list[str]) -> str:
    if not features:
        return "Every feature varies in the training rows."
    return (f"**Without information in the training rows** (never observed or constant, so the model cannot use "
            f"them; usually an optional feed that is not delivered): {', '.join(features)}.")


def _search(facts: dict) -> str:
    lines = []
    if facts["not_tried"]:
        lines.append(f"The search's time budget left {len(facts['not_tried'])} configuration(s) untried: "
                     f"{'; '.join(facts['not_tried'])}.")
    if facts["excluded"]:
        lines.append("Excluded although better on the primary metric, for their validation log loss: "
                     f"{'; '.join(facts['excluded'])}.")
    return "".join(f"\n{line}" for line in lines)


def _calibration(facts: dict) -> str:
    losses = facts["calibration_log_loss"]
    if not losses:
        return ""
    measured = ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
    chosen = facts["calibration"]
    return (f"\nProbabilities: {'recalibrated by ' + chosen if chosen else 'not recalibrated'} (held-out validation "
            f"log loss: {measured}; see plots/calibration_curve.png).")


def render(spec: ModelSpec, facts: dict) -> str:
    """Markdown for one training run; `facts` is what training measured (see training.fit_and_log)."""
    metrics = facts["metrics"]
    business, cur = facts["business"], facts["currency"]
    segments = [[s["segment"], s["value"], s["rows"], _fmt(s["label_mean"]), _fmt(s["metrics"].get(spec.primary_metric, "n/a"))]
                for s in facts["segments"]]
    top_features = sorted(facts["importance"], key=lambda r: -r["importance_mean"])[:8]
    share = facts["train_sample_share"]
    sample = f", a sample of {share:.1%} of the customers (split.max_train_rows)" if share < 1 else ""
    verdict = ("registered as a candidate for promotion" if facts["registered"]
               else f"**not registered**: {facts['reason']}")
    return f"""# Model card: {spec.name}

{spec.description}

**Outcome of this run:** {verdict}.

## Intended use
{spec.intended_use.strip()}

## Data
- Source: `{spec.table}` (dbt invocation `{facts['lineage'].get('dbt_invocation_id', 'unknown')}`), label `{spec.label}`.
- Training as-of dates {facts['train_as_of_min']} to {facts['train_as_of_max']} ({facts['train_rows']} rows{sample});
  test as-of date {facts['test_as_of']} ({facts['test_rows']} rows), at least {spec.split.gap_days} days
  after the last training as-of date so no label window overlaps.
- Training data digest (sha256): `{facts['lineage']['train_sha256']}`; code: `{facts['lineage']['git_commit']}`.

## Features
Numeric: {', '.join(spec.features.numeric)}.
Categorical: {', '.join(spec.features.categorical) or 'none'}.
Missing numerics are imputed with the training median; missing categories become `unknown`.
{_uninformative(facts['uninformative_features'])}

## Model
`{facts['candidate']}` with {facts['params'] or 'default parameters'}, chosen by validation
`{spec.primary_metric}` among {facts['configurations']} configurations of {', '.join(c.name for c in spec.candidates)}.
{_search(facts)}{_calibration(facts)}

## Test metrics
The model against each baseline of its spec on the same test rows; it has to beat the strongest
({facts['baseline']}).

{_table(['metric', 'model', *facts['baselines']], [[k, _fmt(v), *(_fmt(b['metrics'][k]) for b in facts['baselines'].values())]
                                                   for k, v in metrics.items()])}

## Business value (test as-of date)
A campaign on the top {spec.business.top_k_share:.0%} of customers by expected gain ({int(business['targeted'])} customers):
the model expected {business['expected_profit']:.2f} {cur}; acting on it earned {business['profit']:.2f} {cur}
once the labels matured, against {business['profit_random']:.2f} {cur} when the same number is picked at
random (uplift {business['profit_uplift']:+.2f} {cur}). Economics: dbt seed `model_economics`.

## Segments
{_table(['segment', 'value', 'rows', 'label mean', spec.primary_metric], segments)}

## Most important features (permutation, test)
{_table(['feature', f'drop in {spec.primary_metric}'], [[r['feature'], _fmt(r['importance_mean'])] for r in top_features])}

## Limitations
{chr(10).join(f'- {item}' for item in spec.limitations) or '- none recorded'}
- Performance is measured on one as-of date; it degrades as customer behaviour drifts (see monitoring).
"""
