"""What a person needs to decide, as the Markdown body of the request Airflow shows under *Required Actions*.

`approval_request` (promote_<model>'s `approve` task), from the pending decision and the two versions' MLflow
runs: both versions, each metric with its direction and the gate's threshold, the holdout, the training
windows, what changed (parameters, features), the campaign profit on the holdout and links.
`rollback_request` (rollback_<model>'s `confirm` task): the version serving and the one going back, side by
side (data, test metrics, when each served), and the checks already passed."""

from __future__ import annotations

from mlscale import ops, postgres, registry
from mlscale.config import Settings
from mlscale.specs import ModelSpec, better

# Run params that describe how a version was made, in the order shown; the estimator's own are model__*.
TRAINING_PARAMS = ("candidate", "calibration", "features", "btyd_features", "table", "label", "train_as_of_min",
                   "train_as_of_max", "train_rows", "test_as_of", "gap_days", "search_budget", "configurations")


def _cell(text) -> str:
    """A value for a Markdown table cell: no pipe or line break can break the table."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _threshold(spec: ModelSpec, metric: str) -> str:
    staging, production = spec.promotion.staging, spec.promotion.production
    rules = []
    if metric == spec.primary_metric:
        rules.append(f"Production gate: at least {production.min_improvement:+g} over the reference, "
                     f"{production.bootstrap.confidence:.0%} interval above 0, no segment worse by more than "
                     f"{production.segment_tolerance:g}")
    if metric in staging.min_metrics:
        rules.append(f"Staging floor {staging.min_metrics[metric]:g}")
    if metric in staging.max_metrics:
        rules.append(f"Staging ceiling {staging.max_metrics[metric]:g}")
    return "; ".join(rules) or "shown, not gated"


def _run(settings: Settings, model: str, version: str | None) -> dict | None:
    if version is None:
        return None
    client = registry.client(settings)
    mv = client.get_model_version(model, version)
    run = client.get_run(mv.run_id)
    return {"version": version, "run_id": mv.run_id, "experiment_id": run.info.experiment_id,
            "params": run.data.params, "metrics": run.data.metrics, "tags": mv.tags or {}}


def _window(params: dict) -> str:
    """A version's training window, from its run's params."""
    return f"{params.get('train_as_of_min', '?')} to {params.get('train_as_of_max', '?')}"


def _changes(candidate: dict, production: dict | None) -> list[str]:
    if production is None:
        return ["No Production version yet: this would be the first (it was compared with the strongest baseline)."]
    old, new = production["params"], candidate["params"]
    lines = []
    old_features, new_features = ({f for f in p.get("features", "").split(",") if f} for p in (old, new))
    dropped, added = sorted(old_features - new_features), sorted(new_features - old_features)
    if added or dropped:
        lines.append(f"- features: added {', '.join(added) or 'none'}; removed {', '.join(dropped) or 'none'}")
    keys = [k for k in TRAINING_PARAMS if k != "features"] + sorted(
        k for k in set(old) | set(new) if k.startswith("model__"))
    for key in keys:
        if old.get(key) != new.get(key):
            lines.append(f"- {key}: {old.get(key, '(not set)')} → {new.get(key, '(not set)')}")
    return lines or ["- nothing in the training parameters: the same recipe on newer data"]


def approval_request(settings: Settings, spec: ModelSpec, decision, models_page_url: str) -> str:
    """The Markdown body of the approval request for a pending `decision` (promotion.Decision)."""
    gate = decision.gates["production"]
    candidate = _run(settings, spec.name, decision.version)
    production = _run(settings, spec.name, decision.previous_production)
    reference = f"Production v{production['version']}" if production else gate["against"]
    lines = [
        f"**{spec.name} v{decision.version}** passed the Staging and Production gates and waits in Staging "
        f"(scored in shadow). **Approve** makes it Production in place of "
        f"{'v' + production['version'] if production else 'nothing (no version serves yet)'}; **Reject** keeps "
        "Production as it is. Either way, say why in *reason*: it goes into the audit (`ops.model_promotions`).",
        "",
        f"Both scored on the same holdout: the latest matured as-of date **{gate['holdout_as_of']}**, "
        f"**{gate['holdout_rows']:,}** customers whose outcome is known.",
        "",
        f"| metric | better | gate | candidate v{decision.version} | {_cell(reference)} |",
        "|---|---|---|---|---|",
    ]
    for metric, value in decision.candidate_metrics.items():
        ref = decision.production_metrics.get(metric)
        lines.append(f"| {metric} | {better(metric)} | "
                     f"{_cell(_threshold(spec, metric))} | {value:.4f} | {'' if ref is None else f'{ref:.4f}'} |")
    campaign = gate.get("campaign")
    if campaign:
        c, r = campaign["candidate"], campaign["reference"]
        lines += ["", f"**Campaign on the holdout** (top {spec.business.top_k_share:.0%} by expected gain, economics "
                      f"from the dbt seed `model_economics`, in {campaign['currency']}): profit over random targeting "
                      f"{c['profit_uplift']:,.0f} with v{decision.version}, {r['profit_uplift']:,.0f} with "
                      f"{_cell(reference)} ({c['targeted']:,.0f} customers contacted)."]
    lines += ["", "**Gate checks**"]
    for stage in ("staging", "production"):
        for name, check in decision.gates.get(stage, {}).get("checks", {}).items():
            lines.append(f"- {stage} · {name}: {'passed' if check.get('passed') else 'FAILED'}, "
                         f"{_cell(check.get('why', ''))}")
    lines += ["", f"**Training window**: as-of dates {_window(candidate['params'])}, "
                  f"{candidate['params'].get('train_rows', '?')} rows"
                  + (f" (Production v{production['version']}: {_window(production['params'])}, "
                     f"{production['params'].get('train_rows', '?')} rows)" if production else "") + ".",
              "", "**What changed**", *_changes(candidate, production), "", "**Links**",
              _links(settings, spec.name, candidate, f"v{decision.version}")]
    if production:
        lines.append(_links(settings, spec.name, production, f"Production v{production['version']}"))
    lines.append(f"- [The ML models page]({models_page_url}) (stage history, monitoring, data quality)")
    return "\n".join(lines)


def _links(settings: Settings, model: str, facts: dict, label: str) -> str:
    return (f"- [{label} in the MLflow registry]({registry.version_url(settings.mlflow_uri, model, facts['version'])})"
            f" · [its training run]({registry.run_url(settings.mlflow_uri, facts['experiment_id'], facts['run_id'])})")


def rollback_request(settings: Settings, spec: ModelSpec, plan, reason: str, models_page_url: str) -> str:
    """The Markdown body of the confirmation a rollback asks for (plan: promotion.RollbackPlan; reason: why, as
    given when it was triggered)."""
    now, back = _run(settings, spec.name, plan.current), _run(settings, spec.name, plan.target)
    with postgres.warehouse(settings) as conn:
        history = ops.promotions(conn, spec.name)
    served = {v: ", ".join(f"{r.decision.replace('_', ' ')} {r.decided_at:%Y-%m-%d %H:%M}" for r in rows.itertuples())
              for v, rows in history[history["decision"].isin(["promoted", "rolled_back"])].groupby("to_version")} \
        if len(history) else {}
    lines = [
        f"**Roll back {spec.name}**: Production **v{plan.current}** goes out (archived, tagged `rolled_back`) and "
        f"**v{plan.target}** serves again. **Approve** does it now; **Reject** leaves Production as it is.",
        "", f"Reason given: *{_cell(reason)}* (recorded with the decision in `ops.model_promotions` and the "
            "versions' `promotion` tags).",
        "", f"| | serving now: v{plan.current} | going back: v{plan.target} |", "|---|---|---|",
        f"| trained on data to | {now['tags'].get('mlscale.data_as_of', '?')} | "
        f"{back['tags'].get('mlscale.data_as_of', '?')} |",
        f"| training window | {_window(now['params'])} | {_window(back['params'])} |",
        f"| model | {_cell(now['params'].get('candidate', '?'))} | {_cell(back['params'].get('candidate', '?'))} |",
        f"| served in Production | {served.get(plan.current, 'never')} | {served.get(plan.target, 'never')} |",
    ]
    for key in sorted(k for k in now["metrics"] if k.startswith("test_") and "/" not in k):
        metric = key.removeprefix("test_")
        other = back["metrics"].get(key)
        lines.append(f"| test {metric} ({better(metric)} is better; each on its own test date) | {now['metrics'][key]:.4f} | "
                     f"{'' if other is None else f'{other:.4f}'} |")
    lines += ["", "**Checked before anything changes**"]
    lines += [f"- {name}: {_cell(check['why'])}" for name, check in plan.checks.items()]
    lines += ["", "**Links**", _links(settings, spec.name, now, f"v{plan.current} (serving now)"),
              _links(settings, spec.name, back, f"v{plan.target} (going back)"),
              f"- [The ML models page]({models_page_url}) (stage history, monitoring)"]
    return "\n".join(lines)
