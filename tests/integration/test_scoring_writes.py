"""How batch scoring writes: one partition per (model, as-of date), swapped in whole, on a real PostgreSQL."""

from datetime import date

import numpy as np
import psycopg
import pytest

from mlscale import postgres
from mlscale.production import scoring
from tests.helpers import query, scalar

pytestmark = pytest.mark.integration
DAY, NEXT_DAY = date(2026, 3, 1), date(2026, 3, 2)
# ml.predictions as releases before 2026-12-04 created it
UNPARTITIONED_DDL = """
create schema if not exists ml;
create table ml.predictions (
    model text not null, model_version text not null, as_of_date date not null, customer_id bigint not null,
    score double precision not null, decile smallint not null check (decile between 1 and 10),
    scored_at timestamptz not null default now(), primary key (model, as_of_date, customer_id));
"""


def _write(settings, model, as_of, ids, scores, version="1", table="predictions") -> int:
    with postgres.warehouse(settings) as conn, conn.transaction():
        return scoring.write_scores(conn, table, model, version, as_of, np.asarray(ids, dtype=np.int64),
                                    np.asarray(scores, dtype=float))


def _partitions(settings) -> list[tuple[str, str]]:
    """(partition, bound) of ml.predictions, by name."""
    return [tuple(r) for r in query(settings, "select c.relname, pg_get_expr(c.relpartbound, c.oid) as bound"
                                              " from pg_inherits i join pg_class c on c.oid = i.inhrelid"
                                              " where i.inhparent = 'ml.predictions'::regclass order by 1").values]


def test_a_rerun_swaps_the_partition_and_leaves_other_days_alone(warehouse):
    assert _write(warehouse, "churn_90d", DAY, range(1, 21), np.linspace(0, 1, 20)) == 0
    assert _write(warehouse, "churn_90d", NEXT_DAY, [5, 6], [0.1, 0.2]) == 0
    assert _write(warehouse, "revenue_90d", DAY, [5], [120.0]) == 0

    replaced = _write(warehouse, "churn_90d", DAY, range(1, 11), np.linspace(1, 0, 10), version="2")

    assert replaced == 20
    rows = query(warehouse, "select model, model_version, as_of_date::text as d, count(*) as n, min(customer_id) as lo,"
                            " max(decile) as worst from ml.predictions group by 1, 2, 3 order by 1, 3")
    assert rows.values.tolist() == [["churn_90d", "2", "2026-03-01", 10, 1, 10],
                                    ["churn_90d", "1", "2026-03-02", 2, 5, 6],
                                    ["revenue_90d", "1", "2026-03-01", 1, 5, 1]]
    assert _partitions(warehouse) == [
        ("predictions_churn_90d_20260301", "FOR VALUES FROM ('churn_90d', '2026-03-01') TO ('churn_90d', '2026-03-02')"),
        ("predictions_churn_90d_20260302", "FOR VALUES FROM ('churn_90d', '2026-03-02') TO ('churn_90d', '2026-03-03')"),
        ("predictions_revenue_90d_20260301",
         "FOR VALUES FROM ('revenue_90d', '2026-03-01') TO ('revenue_90d', '2026-03-02')")]
    # the swapped-in partition carries the key: a duplicate is refused as before
    with pytest.raises(psycopg.errors.UniqueViolation):
        with postgres.warehouse(warehouse) as conn:
            conn.execute("insert into ml.predictions (model, model_version, as_of_date, customer_id, score, decile)"
                         " values ('churn_90d', '2', '2026-03-01', 1, 0.5, 1)")


def test_the_binary_copy_carries_every_value_exactly(warehouse):
    model, ids = "churn_ünicode", [3, 2**62 + 1, 1]  # a name of multi-byte characters, an id beyond 32 bits
    scores = [1 / 3, 5e-324, 0.1 + 0.2]  # full precision, the smallest subnormal
    assert _write(warehouse, model, date(1999, 12, 31), ids, scores, version="12") == 0  # a day before 2000-01-01

    rows = query(warehouse, "select model, model_version, as_of_date::text as d, customer_id, score, decile,"
                            " scored_at is not null as stamped from ml.predictions order by customer_id")
    assert rows.values.tolist() == [[model, "12", "1999-12-31", 1, 0.1 + 0.2, 4, True],  # 3 rows: deciles 1, 4, 7
                                    [model, "12", "1999-12-31", 3, 1 / 3, 1, True],
                                    [model, "12", "1999-12-31", 2**62 + 1, 5e-324, 7, True]]
    assert _write(warehouse, model, date(1999, 12, 31), [], []) == 3  # no rows: an empty partition replaces them
    assert scalar(warehouse, "select count(*) from ml.predictions") == 0


def test_tied_scores_get_deciles_by_customer_whatever_the_order_they_arrive_in(warehouse):
    ids = np.arange(1, 21)
    shuffled = np.random.default_rng(7).permutation(ids)
    _write(warehouse, "churn_90d", DAY, shuffled, np.full(20, 0.5))  # every score tied

    deciles = query(warehouse, "select customer_id, decile from ml.predictions order by customer_id")
    assert deciles["decile"].tolist() == [d for d in range(1, 11) for _ in range(2)]


def test_a_failed_write_keeps_the_previous_scores(warehouse):
    _write(warehouse, "churn_90d", DAY, [1, 2, 3], [0.1, 0.2, 0.3])

    with pytest.raises(psycopg.errors.UniqueViolation):  # customer 2 twice: the new partition's key refuses it
        _write(warehouse, "churn_90d", DAY, [1, 2, 2], [0.9, 0.8, 0.7], version="2")

    kept = query(warehouse, "select customer_id, model_version, score from ml.predictions order by 1")
    assert kept.values.tolist() == [[1, "1", 0.1], [2, "1", 0.2], [3, "1", 0.3]]
    assert [name for name, _ in _partitions(warehouse)] == ["predictions_churn_90d_20260301"]
    assert scalar(warehouse, "select count(*) from pg_class where relname like '%\\_new'") == 0


def test_a_long_model_name_gets_a_short_distinct_partition_name(warehouse):
    long_a, long_b = "a" * 60 + "_churn", "a" * 60 + "_revenue"
    _write(warehouse, long_a, DAY, [1], [0.5])
    _write(warehouse, long_b, DAY, [1], [0.5])
    _write(warehouse, long_a, DAY, [1, 2], [0.5, 0.6])

    names = [name for name, _ in _partitions(warehouse)]
    assert len(names) == 2 and len(set(names)) == 2
    assert all(len(n) <= scoring.PARTITION_NAME_MAX for n in names)
    assert query(warehouse, "select model, count(*) as n from ml.predictions group by 1 order by 1").values.tolist() \
        == [[long_a, 2], [long_b, 1]]


def test_an_unpartitioned_table_of_an_earlier_release_is_moved_into_partitions(warehouse):
    with postgres.warehouse(warehouse) as conn:
        conn.execute(UNPARTITIONED_DDL)
        conn.execute("insert into ml.predictions (model, model_version, as_of_date, customer_id, score, decile)"
                     " values ('churn_90d', '1', '2026-03-01', 1, 0.9, 1), ('churn_90d', '1', '2026-03-01', 2, 0.1, 10),"
                     " ('churn_90d', '1', '2026-03-02', 1, 0.4, 1)")
    assert scalar(warehouse, "select relkind::text from pg_class where oid = 'ml.predictions'::regclass") == "r"

    scoring.create_tables(warehouse)

    assert scalar(warehouse, "select relkind::text from pg_class where oid = 'ml.predictions'::regclass") == "p"
    assert [name for name, _ in _partitions(warehouse)] == ["predictions_churn_90d_20260301",
                                                            "predictions_churn_90d_20260302"]
    moved = query(warehouse, "select as_of_date::text as d, customer_id, score from ml.predictions order by 1, 2")
    assert moved.values.tolist() == [["2026-03-01", 1, 0.9], ["2026-03-01", 2, 0.1], ["2026-03-02", 1, 0.4]]
    assert _write(warehouse, "churn_90d", NEXT_DAY, [1, 3], [0.3, 0.6]) == 1  # and scoring goes on as usual
