"""Time in the warehouse: features never see the future, and customer history is kept as SCD2."""

import concurrent.futures
import time

import pytest

from mlscale import postgres
from mlscale.data import warehouse as warehouse_module
from mlscale.local.datagen import DirtyData, ShopParams, generate
from mlscale.data.ingest import ingest_landing
from tests.helpers import build, query, scalar, update_features

pytestmark = pytest.mark.integration
FEATURES = "ml.customer_features"
LABELS = {"churned_90d", "revenue_next_90d", "label_matured", "observed_last_day"}


def test_shifting_future_events_leaves_features_unchanged(warehouse):
    generate(ShopParams(customers=250, days=150, seed=9), warehouse.landing_dir)
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    build(warehouse)
    cutoff = "2026-04-02"
    before = query(warehouse, f"select * from {FEATURES} where as_of_date <= '{cutoff}' order by as_of_date, customer_id")
    assert len(before) > 500
    assert before["is_imputed_birth_year"].mean() > 0.2  # the imputation rules are exercised

    # Everything from the cutoff on happens 30 days later (and one big order appears on the cutoff day).
    # Deliveries on the cutoff day: every customer delivered before it moves to Japan (a new SCD2 version),
    # and 500 new customers born in 2005, all from email and Japan, would move every imputation statistic.
    with postgres.warehouse(warehouse) as conn:
        for table, column in (("orders", "ordered_at"), ("support_tickets", "created_at"), ("web_sessions", "started_at")):
            conn.execute(f"update raw.{table} set {column} = {column} + interval '30 days' where {column} >= '{cutoff}'")
        conn.execute("insert into raw.orders (order_id, customer_id, ordered_at, amount, _file_sha256, _line_no)"
                     f" select 9000000000000, customer_id, '{cutoff}T12:00:00+00', 9999, 'shift-test', 1 from raw.orders limit 1")
        conn.execute("insert into raw.customers (customer_id, signup_date, country, birth_year, acquisition_channel,"
                     " _file_sha256, _line_no, _delivery_date)"
                     f" select customer_id, signup_date, 'JP', birth_year, acquisition_channel, 'shift-test', 1, '{cutoff}'"
                     f" from raw.customers where _delivery_date < '{cutoff}'")
        conn.execute("insert into raw.customers (customer_id, signup_date, country, birth_year, acquisition_channel,"
                     " _file_sha256, _line_no, _delivery_date)"
                     f" select 100000 + i, '{cutoff}', 'JP', 2005, 'email', 'shift-test', i + 1, '{cutoff}'"
                     " from generate_series(1, 500) as i")
    build(warehouse, "--full-refresh")
    moved = (f"core.dim_customers as d where d.valid_from = '{cutoff}' and exists (select from core.dim_customers as p"
             f" where p.customer_id = d.customer_id and p.valid_to = '{cutoff}' and p.in_customers_feed)")
    assert scalar(warehouse, f"select count(*) from {moved}") > 100
    after = query(warehouse, f"select * from {FEATURES} where as_of_date <= '{cutoff}' order by as_of_date, customer_id")

    features = [c for c in before.columns if c not in LABELS]
    changed = [c for c in features if not before[c].equals(after[c])]
    assert changed == []
    assert not before["revenue_next_90d"].equals(after["revenue_next_90d"])  # the labels did see the change
    # the as-of dates after the deliveries do see them
    later = query(warehouse, f"select f.region from {FEATURES} as f, {moved}"
                             f" and f.customer_id = d.customer_id and f.as_of_date > '{cutoff}'")
    assert len(later) > 100
    assert set(later["region"]) == {"Asia Pacific"}


def test_customer_changes_become_scd2_versions(warehouse):
    params = ShopParams(customers=300, days=120, seed=4, dirty=DirtyData(customer_updates=0.5))
    generate(params, warehouse.landing_dir, days=range(0, 60))
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    build(warehouse)
    generate(params, warehouse.landing_dir, days=range(60, 120))
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    build(warehouse)

    dim = query(warehouse, "select * from core.dim_customers order by customer_id, valid_from")
    per_customer = dim.groupby("customer_id")
    assert (per_customer["is_current"].sum() == 1).all()
    changed = per_customer.size()
    changed = changed[changed > 1].index
    assert len(changed) > 10
    for customer in changed[:20]:
        versions = dim[dim["customer_id"] == customer]
        # each version ends where the next begins, and the country of the later delivery is current
        assert versions["valid_to"].iloc[:-1].tolist() == versions["valid_from"].iloc[1:].tolist()
        assert versions["valid_to"].iloc[-1] is None or versions["valid_to"].isna().iloc[-1]
    current = query(warehouse, "select customer_id, country from staging.stg_shop__customers")
    merged = dim[dim["is_current"]].merge(current, on="customer_id", suffixes=("", "_latest"))
    assert (merged["country"].fillna("") == merged["country_latest"].fillna("")).all()


def _checksum(settings, table: str, where: str = "true", without: tuple[str, ...] = ()) -> str:
    """Checksum of the rows, without observed_last_day (the data horizon when the row was computed, which
    a full refresh sets to today's on every row) and the columns `without`."""
    row = "(to_jsonb(t) - 'observed_last_day'" + "".join(f" - '{c}'" for c in without) + ")::text"
    return query(settings, f"select md5(coalesce(string_agg({row}, '|' order by {row}), '')) as c"
                           f" from {table} as t where {where}")["c"][0]


def test_a_new_day_relabels_the_open_weeks_and_equals_a_full_refresh(warehouse):
    """A daily run: the as-of dates whose label window the new days fall in keep the features the last build
    wrote (a marker in one of them survives) and get their labels again; the result equals a full refresh."""
    params = ShopParams(customers=200, days=260, seed=21)
    generate(params, warehouse.landing_dir, days=range(0, 250))
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    build(warehouse)
    open_dates = query(warehouse, f"select distinct as_of_date from {FEATURES} where not label_matured"
                                  " order by 1")["as_of_date"].tolist()
    assert len(open_dates) >= 10  # 13 weeks of label horizon
    marked = open_dates[0]  # its label window ends within the ten new days
    before = query(warehouse, f"select customer_id, revenue_next_90d, observed_last_day from {FEATURES}"
                              f" where as_of_date = '{marked}' order by customer_id")
    assert update_features(warehouse, "pages_30d = -1", "as_of_date = %s", (marked,)) > 0
    # A user's view on the mart: a daily run replaces the mart's view in place and keeps it (a full refresh drops it).
    with postgres.warehouse(warehouse) as conn:
        conn.execute(f"create view public.user_rows_per_date as select as_of_date, count(*) as n from {FEATURES}"
                     " group by as_of_date")

    generate(params, warehouse.landing_dir, days=range(250, 260))
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    build(warehouse)
    assert query(warehouse, "select * from public.user_rows_per_date order by 1").equals(
        query(warehouse, f"select as_of_date, count(*) as n from {FEATURES} group by 1 order by 1"))
    after = query(warehouse, f"select customer_id, pages_30d, revenue_next_90d, observed_last_day from {FEATURES}"
                             f" where as_of_date = '{marked}' order by customer_id")
    # the same rows, their features as the last build wrote them, their labels over the new days
    assert after["customer_id"].tolist() == before["customer_id"].tolist()
    assert (after["pages_30d"] == -1).all()
    assert (after["observed_last_day"] > before["observed_last_day"]).all()
    assert before["revenue_next_90d"].isna().all() and after["revenue_next_90d"].notna().all()
    new_dates = query(warehouse, f"select count(*) as n from {FEATURES} where as_of_date > '{open_dates[-1]}'")["n"][0]
    assert new_dates > 0  # ten days hold a new as-of date, computed in full

    incremental = _checksum(warehouse, FEATURES, without=("pages_30d",))
    build(warehouse, "--full-refresh")
    assert _checksum(warehouse, FEATURES, without=("pages_30d",)) == incremental
    assert scalar(warehouse, f"select count(*) from {FEATURES} where pages_30d = -1") == 0
    assert scalar(warehouse, "select to_regclass('public.user_rows_per_date')") is None


def test_rows_months_late_reach_the_features_without_a_full_refresh(warehouse):
    """Orders of a day 100 days back and customer moves of a day 210 days back arrive with the next days: the
    incremental build equals a full refresh, and as-of dates that can see neither the new days nor the late
    rows are left alone."""
    params = ShopParams(customers=200, days=260, seed=12)
    generate(params, warehouse.landing_dir, days=range(0, 250))
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    build(warehouse)
    first_as_of = query(warehouse, f"select min(as_of_date) as d from {FEATURES}")["d"][0]
    # A marker on the first as-of date (before the late day's label window): a bounded run keeps it.
    assert update_features(warehouse, "tenure_days = -1", "as_of_date = %s", (first_as_of,)) > 0

    generate(params, warehouse.landing_dir, days=range(250, 253))
    late_day = sorted((warehouse.landing_dir / "orders").iterdir())[150]  # 100 days before the new ones
    original = (late_day / "orders.csv").read_text().splitlines()
    late = [original[0]] + [f"9{line}" for line in original[1:]]  # the same orders again under new ids
    (late_day / "late_delivery.csv").write_text("\n".join(late) + "\n")
    # and 30 customers moved to Japan 210 days back (a late SCD2 version; no late order reaches that far)
    move_day = sorted((warehouse.landing_dir / "orders").iterdir())[40]
    movers = query(warehouse, "select customer_id, signup_date, birth_year, acquisition_channel"
                              f" from staging.stg_shop__customers where delivered_at < '{move_day.name[3:]}'"
                              " order by customer_id limit 30")
    assert len(movers) == 30
    moves = warehouse.landing_dir / "customers" / move_day.name / "late_delivery.csv"
    moves.parent.mkdir(exist_ok=True)
    movers.assign(country="JP")[["customer_id", "signup_date", "country", "birth_year", "acquisition_channel"]] \
        .astype({"birth_year": "Int64"}).to_csv(moves, index=False)
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    build(warehouse)
    moved = query(warehouse, f"select distinct f.region from {FEATURES} as f join core.dim_customers as d"
                             f" on d.customer_id = f.customer_id and d.valid_from = '{move_day.name[3:]}'"
                             f" and d.country = 'JP' where f.as_of_date > d.valid_from")
    assert moved["region"].tolist() == ["Asia Pacific"]
    assert query(warehouse, "select count(*) as n from core.fct_orders where order_id >= 9000000000")["n"][0] == \
        len(late) - 1
    assert query(warehouse, f"select count(*) as n from {FEATURES} where tenure_days = -1")["n"][0] > 0
    rest = f"as_of_date > '{first_as_of}'"
    incremental = {t: _checksum(warehouse, t, rest if t == FEATURES else "true")
                   for t in ("intermediate.int_customer_days", FEATURES)}

    build(warehouse, "--full-refresh")
    assert {t: _checksum(warehouse, t, rest if t == FEATURES else "true") for t in incremental} == incremental


def test_the_vacuum_after_a_build_takes_dead_rows_and_analyzes_new_ones_past_autovacuums_thresholds(warehouse):
    # autovacuum off on the tables, so their dead rows and missing statistics wait for this step whatever the server
    with postgres.warehouse(warehouse) as conn:
        conn.execute("create schema marts")  # a schema of the warehouse: the next test's fixture drops it
        for table in ("relabelled", "barely_touched", "loaded"):
            conn.execute(f"create table marts.{table} (id int primary key, v text) with (autovacuum_enabled = off)")
            conn.execute(f"insert into marts.{table} select g, 'x' from generate_series(1, 10000) g")
    with postgres.warehouse(warehouse) as conn:  # after the inserts' commit, or they count after it
        conn.execute("analyze marts.relabelled, marts.barely_touched")  # "loaded": 10,000 rows never analyzed
    with postgres.warehouse(warehouse) as conn:
        conn.execute("delete from marts.relabelled where id <= 6000")  # 6,000 dead beside 4,000 live: past 850
        conn.execute("delete from marts.barely_touched where id <= 500")  # 500 dead beside 9,500 live: under both
    stats = "select n_dead_tup, last_vacuum is not null as vacuumed, last_analyze is not null as analyzed" \
            " from pg_stat_user_tables where relname = '{}'"
    for _ in range(100):  # a backend reports its counts when it ends, which may be a moment after the connection
        if scalar(warehouse, "select sum(n_dead_tup) + sum(n_mod_since_analyze) from pg_stat_user_tables"
                             " where schemaname = 'marts'") == 6500 + 6500 + 10000:  # dead + written
            break
        time.sleep(0.1)

    # a temporary table of another session, past both thresholds: not this step's (nor autovacuum's) to take
    with postgres.warehouse(warehouse) as other:  # open until the end: its temporary table lives with it
        other.execute("create temp table scratch as select g as id from generate_series(1, 10000) g")
        other.execute("delete from scratch where id <= 6000")
        other.commit()
        for _ in range(100):  # an open session reports its counts within a second or so of its commit
            if scalar(warehouse, "select n_dead_tup from pg_stat_user_tables where relname = 'scratch'") == 6000:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the temporary table's dead rows were never reported")

        done = warehouse_module.vacuum_and_analyze(warehouse)

        assert done.index("marts.relabelled") < done.index("marts.loaded")  # vacuums first, then the analyzes
        assert "marts.barely_touched" not in done
        assert query(warehouse, stats.format("relabelled")).values.tolist() == [[0, True, True]]
        assert query(warehouse, stats.format("loaded")).values.tolist() == [[0, False, True]]
        assert query(warehouse, stats.format("barely_touched")).values.tolist() == [[500, False, True]]  # the test's own
        assert scalar(warehouse, "select n_distinct from pg_stats where tablename = 'loaded' and attname = 'id'") == -1
        assert warehouse_module.vacuum_and_analyze(warehouse) == []  # nothing left past the thresholds
        assert not [t for t in done if t.endswith(".scratch")]


def test_a_table_dropped_while_the_vacuum_waits_for_it_is_skipped(warehouse):
    # Another session (a quality gate dropping its copy, a dbt run its temporary relation) holds a table the vacuum
    # listed and drops it while the vacuum waits for its lock: the vacuum carries on with the rest.
    with postgres.warehouse(warehouse) as conn:
        conn.execute("create schema marts")  # a schema of the warehouse: the next test's fixture drops it
        for table in ("gone", "kept"):
            conn.execute(f"create table marts.{table} (id int) with (autovacuum_enabled = off)")
            conn.execute(f"insert into marts.{table} select g from generate_series(1, 10000) g")
    for _ in range(100):  # the inserts' counts are reported when their backend ends
        if scalar(warehouse, "select sum(n_mod_since_analyze) from pg_stat_user_tables where schemaname = 'marts'") \
                == 20000:
            break
        time.sleep(0.1)
    with postgres.warehouse(warehouse) as holder:
        holder.execute("lock table marts.gone in access exclusive mode")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            vacuum = pool.submit(warehouse_module.vacuum_and_analyze, warehouse)
            for _ in range(300):
                if scalar(warehouse, "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
                                     " and query ilike 'analyze %%gone%%'"):
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"the vacuum never waited for marts.gone: {vacuum.result(timeout=60)}")
            holder.execute("drop table marts.gone")
            holder.commit()
            done = vacuum.result(timeout=60)
    assert "marts.kept" in done and "marts.gone" not in done
    assert scalar(warehouse, "select last_analyze is not null from pg_stat_user_tables where relname = 'kept'")
