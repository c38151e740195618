"""Values reach SQL as values (RELIABILITY.md): a run id with a quote and a statement in it goes through the
quality gate, whose query GX takes as text, as a literal, and into its Data Docs as a file name; a schema whose name holds a quote is dropped by name."""

import dataclasses
import re
from urllib.parse import unquote

import pytest
from psycopg import sql

from mlscale import postgres
from mlscale.data.ingest import ingest_landing
from mlscale.data import quality
from mlscale.data.quality import gate
from mlscale.data.warehouse import claim_batch, drop_schemas
from mlscale.local.datagen import ShopParams, generate
from tests.helpers import scalar

pytestmark = pytest.mark.reliability
HOSTILE_RUN_ID = "manual__2026-12-03T00:00:00+00:00'); drop table ops.ingest_files; /* ../ */ --"


def test_a_run_id_with_a_quote_is_a_value_in_the_quality_gates_query(warehouse):
    stats = generate(ShopParams(customers=120, days=30, seed=9, feeds=("orders",)), warehouse.landing_dir)
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    assert claim_batch(warehouse, HOSTILE_RUN_ID) == stats.files["orders"]

    assert gate(warehouse, "raw_orders", HOSTILE_RUN_ID)["raw_orders"]["failed_critical"] == 0
    # the suite checked exactly the rows of the files this run claimed, and the ledger is intact
    assert scalar(warehouse, "select observed_value from ops.dq_results where run_id = %s"
                             " and expectation = 'expect_table_row_count_to_be_between'",
                  HOSTILE_RUN_ID) == str(stats.rows["orders"])
    assert scalar(warehouse, "select count(*) from ops.ingest_files where etl_run_id = %s",
                  HOSTILE_RUN_ID) == stats.files["orders"]
    # GX files its results under the run's name, which may not hold a slash: the Data Docs page of the run's result
    # is inside the site, not in a folder the id names.
    index = quality.build_docs(warehouse, HOSTILE_RUN_ID)
    name = "manual__2026-12-03T00:00:00+00:00____drop_table_ops.ingest_files_____.._____--"
    pages = {unquote(p) for p in re.findall(r"validations/raw_orders/[^\"\\]+\.html", index.read_text())}
    pages = {p for p in pages if p.split("/")[2] == name}  # the index's links are URL-encoded
    assert pages and all((index.parent / p).is_file() and (index.parent / p).resolve().is_relative_to(index.parent)
                         for p in pages), pages


def test_a_schema_whose_name_holds_a_quote_is_dropped_with_the_rest(stack):
    settings = dataclasses.replace(stack, db_suffix=f"{stack.db_suffix}_hostile")
    postgres.ensure_databases(settings, [settings.warehouse_db])
    odd = 'we"ird; drop database postgres; --'
    with postgres.warehouse(settings) as conn:
        conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(odd)))
        conn.execute("create schema if not exists plain")
    drop_schemas(settings)
    assert scalar(settings, "select count(*) from pg_namespace where nspname in (%s, 'plain')", odd) == 0
    with postgres.server(settings, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(settings.warehouse_db)))
