"""Benchmark: end-to-end batch scoring keeps at least 0.8 of the throughput of bare model.predict.

Re-uses the warehouse of bench/training_scale.py (built if missing), trains and promotes a churn_90d
version on it, then copies the customers of the latest as-of date into bench.scoring_features with
fresh ids until it holds the requested rows. It times, on the same rows:
  bare:       the model's predict_proba on a DataFrame already in memory (the model already loaded);
  end to end: scoring.score — what score_<model> runs: download and verify the artifact, load it,
              stream the rows out of PostgreSQL, score in chunks, rank deciles, COPY a new partition of
              ml.predictions and swap it in.
and prints rows per second of each and their ratio (target: end to end at least 0.8 of bare).
Uses its own databases (suffix _bench) and MLflow port 5077. Usage:
    .venv/bin/python bench/scoring_throughput.py [--rows 500000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import training_scale  # noqa: F401  (sets the _bench environment before mlscale reads it)


from mlscale import postgres, registry
from mlscale.local import services
from mlscale.modeling import features, judging, training
from mlscale.production import promotion, scoring
from mlscale.modeling.artifacts import load_verified  # noqa: E402
from mlscale.config import Settings  # noqa: E402
from mlscale.specs import load_specs  # noqa: E402

TABLE = "bench.scoring_features"


def production_version(settings: Settings, spec) -> str:
    """Train and promote a version on the real mart unless one is in Production already."""
    version = registry.alias_version(settings, spec.name, "production")
    if version:
        return version
    fast = spec.model_copy(update={"search": spec.search.model_copy(update={"budget": 1})})
    trained = training.train(settings, fast, tags={"mlscale.trigger": "bench"})
    decision = promotion.promote(settings, fast, trained["version"])
    if decision.decision != "promoted":
        raise SystemExit(f"could not promote a version to benchmark: {decision.reason}")
    return decision.version


def fill(settings: Settings, rows: int) -> int:
    """bench.scoring_features: the latest as-of date's customers, copied with fresh ids up to `rows` rows."""
    with postgres.warehouse(settings) as conn:
        latest, per_copy = conn.execute("select as_of_date, count(*) from ml.customer_features"
                                        " group by 1 order by 1 desc limit 1").fetchone()
        cols = [r[0] for r in conn.execute("select column_name from information_schema.columns where table_schema"
                                           " = 'ml' and table_name = 'customer_features' order by ordinal_position")]
        others = ", ".join(f"f.{c}" for c in cols if c != "customer_id")
        conn.execute("create schema if not exists bench")
        conn.execute(f"drop table if exists {TABLE}")
        conn.execute(f"create table {TABLE} as select * from ml.customer_features with no data")
        conn.execute(f"insert into {TABLE} select f.customer_id + c::bigint * 100000000, {others}"
                     f" from ml.customer_features f, generate_series(0, %s) c where f.as_of_date = %s"
                     f" order by 1 limit %s", (-(-rows // per_copy) - 1, latest, rows))
        conn.execute(f"analyze {TABLE}")
        return conn.execute(f"select count(*) from {TABLE}").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    settings = Settings.from_env()
    postgres.ensure_databases(settings, [settings.warehouse_db, settings.mlflow_db])
    services.build_dbt_manifest(settings)
    with services.mlflow_while(settings):  # stops the server if it started it
        training_scale.build_base(settings)
        base_spec = load_specs()["churn_90d"]
        version = production_version(settings, base_spec)
        n = fill(settings, args.rows)
        spec = base_spec.model_copy(update={"table": TABLE})
        as_of = features.latest_as_of(settings, spec)

        model, _ = load_verified(settings, spec.name, version)
        frame = features.at(settings, spec, as_of)[spec.feature_names]
        bare, end_to_end = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            judging.predict(spec, model, frame)
            bare.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            result = scoring.score(settings, spec, as_of)
            end_to_end.append(time.perf_counter() - t0)
            assert result["rows"] == n, result
        b, e = statistics.median(bare), statistics.median(end_to_end)
        print(f"{n} rows, churn_90d v{version}, median of {args.repeats}:")
        print(f"  bare predict_proba (in memory)  {b:6.2f}s  {n / b:>10,.0f} rows/s  (runs {min(bare):.2f}-{max(bare):.2f}s)")
        print(f"  end to end (scoring.score)      {e:6.2f}s  {n / e:>10,.0f} rows/s  "
              f"(runs {min(end_to_end):.2f}-{max(end_to_end):.2f}s)")
        print(f"ratio end-to-end / bare throughput: {b / e:.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
