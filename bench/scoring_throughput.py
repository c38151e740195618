"""Benchmark: end-to-end batch scoring keeps at least 0.8 of the throughput of bare model.predict.

Re-uses the warehouse of bench/training_scale.py (built if missing), trains and promotes a churn_90d
version on it, then copies the customers of the latest as-of date into bench.scoring_features with
fresh ids until it holds the requested rows. It times, on the same rows:
  bare:       the model's predict_proba on a DataFrame already in memory (the model already loaded), both on
              the whole frame and on the same frame in scoring's chunks; the faster of the two is the baseline
              (the model's own transforms, e.g. the BG/NBD inputs, run faster on chunks that fit in cache);
  end to end: scoring.score — what score_<model> runs: download and verify the artifact, load it,
              stream the rows out of PostgreSQL, score in chunks, rank deciles, COPY a new partition of
              ml.predictions and swap it in.
and prints rows per second of each and their ratio (target: end to end at least 0.8 of bare). It also prints the
CPU time end to end takes, in this process and in the machine's PostgreSQL processes (read from /proc: a local
server), and the wall time that CPU allows at best on this machine's cores: no overlap of reading, predicting and
writing can make end to end faster than that.
Uses its own databases (suffix _bench) and MLflow port 5077. Usage:
    .venv/bin/python bench/scoring_throughput.py [--rows 500000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import time
from pathlib import Path

import training_scale  # noqa: F401  (sets the _bench environment before mlscale reads it)


from mlscale import postgres, registry
from mlscale.local import services
from mlscale.modeling import features, training
from mlscale.production import promotion, scoring
from mlscale.modeling.artifacts import load_verified  # noqa: E402
from mlscale.config import Settings  # noqa: E402
from mlscale.specs import load_specs  # noqa: E402

TABLE = "bench.scoring_features"


def postgres_cpu() -> float | None:
    """CPU seconds used so far by this machine's PostgreSQL processes, with the backends that have ended (counted
    in the postmaster's children); None when no PostgreSQL process is visible (a remote server)."""
    ticks, seen = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            if text[text.index("(") + 1:text.rindex(")")] == "postgres":
                utime, stime, cutime, cstime = text[text.rindex(")") + 2:].split()[11:15]
                ticks, seen = ticks + int(utime) + int(stime) + int(cutime) + int(cstime), True
    return ticks / os.sysconf("SC_CLK_TCK") if seen else None


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
        bare, chunked, end_to_end, cpu, predict_cpu = [], [], [], [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            model.predict_proba(frame)
            bare.append(time.perf_counter() - t0)
            t0, cpu0 = time.perf_counter(), own_cpu()
            for start in range(0, n, scoring.CHUNK_ROWS):
                model.predict_proba(frame.iloc[start:start + scoring.CHUNK_ROWS])
            chunked.append(time.perf_counter() - t0)
            predict_cpu.append(own_cpu() - cpu0)
            t0, cpu0, pg0 = time.perf_counter(), own_cpu(), postgres_cpu()
            result = scoring.score(settings, spec, as_of)
            end_to_end.append(time.perf_counter() - t0)
            cpu.append((own_cpu() - cpu0, postgres_cpu() - pg0 if pg0 is not None else None))
            assert result["rows"] == n, result
        print(f"{n} rows, churn_90d v{version}, median of {args.repeats}:")
        for label, runs in (("bare predict_proba, whole frame", bare),
                            (f"bare predict_proba, {scoring.CHUNK_ROWS:,}-row chunks", chunked),
                            ("end to end (scoring.score)", end_to_end)):
            m = statistics.median(runs)
            print(f"  {label:<40} {m:6.2f}s  {n / m:>10,.0f} rows/s  (runs {min(runs):.2f}-{max(runs):.2f}s)")
        b, e = min(statistics.median(bare), statistics.median(chunked)), statistics.median(end_to_end)
        print(f"ratio end-to-end / faster bare throughput: {b / e:.2f} (target >= 0.8)")
        own = statistics.median(c for c, _ in cpu)
        if all(pg is not None for _, pg in cpu):
            server, cores = statistics.median(pg for _, pg in cpu), os.cpu_count()
            floor = (own + server) / cores
            print(f"end to end needs {own:.2f}s of CPU here and {server:.2f}s in PostgreSQL: at best {floor:.2f}s on"
                  f" {cores} cores, a ratio of at most {b / floor:.2f}")
        else:
            print(f"end to end needs {own:.2f}s of CPU here (PostgreSQL's processes are not on this machine)")
        print(f"(the chunked bare prediction alone needs {statistics.median(predict_cpu):.2f}s of CPU)")


if __name__ == "__main__":
    main()
