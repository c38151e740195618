"""Reading a spec's feature rows: the query it sends, and how the COPY stream's CSV becomes typed columns."""

import io
import threading
from datetime import date

import numpy as np
import pandas as pd
import pytest

from mlscale.modeling import features
from mlscale.specs import load_specs

SPEC = load_specs()["churn_90d"]


def test_the_labelled_query_sends_numbers_as_they_are_and_keeps_only_matured_labels():
    query = features.labelled_query(SPEC).as_string()
    assert query.startswith('select customer_id, as_of_date, "tenure_days", "recency_days", ')
    assert '"region"::text as "region"' in query and '"last_order_gap_days", "region"' in query
    assert "float8" not in query and '"acquisition_channel"::text as "acquisition_channel", "churned_90d" from' in query
    assert query.endswith(' from "ml"."customer_features" where "churned_90d" is not null'
                          " order by as_of_date, customer_id")
    # a window: the test date and the training dates through train_through, as literals (logged as lineage)
    window = features.Window(date(2026, 7, 23), date(2026, 4, 24))
    assert features.labelled_query(SPEC, window).as_string().endswith(
        """ where "churned_90d" is not null and (as_of_date = '2026-07-23'::date or (as_of_date <= '2026-04-24'::date))"""
        " order by as_of_date, customer_id")
    # a sample of a quarter of the customers: of the training side only, 16,384 of 65,536 hash buckets
    sampled = features.labelled_query(SPEC, features.Window(date(2026, 7, 23), date(2026, 4, 24), 0.25)).as_string()
    assert sampled.endswith("""(as_of_date = '2026-07-23'::date or (as_of_date <= '2026-04-24'::date and """
                            "(hashint8(customer_id::int8) & 65535) < 16384)) order by as_of_date, customer_id")
    at = features._at_query(SPEC, date(2026, 7, 23)).as_string()
    assert "churned_90d" not in at and at.endswith("where as_of_date = '2026-07-23'::date order by customer_id")


def test_the_copy_stream_parses_while_blocks_arrive_and_types_the_columns():
    header = ",".join(["customer_id", "as_of_date", *SPEC.features.numeric, *SPEC.features.categorical, SPEC.label])
    n_num = len(SPEC.features.numeric)
    row1 = ",".join(["7", "2026-07-23", *["1.5"] * n_num, "Europe", "", "1"])  # a missing channel
    row2 = ",".join(["8", "2026-07-23", "", *["2"] * (n_num - 1), "", "paid_search", "0"])  # missing tenure, region
    text = f"{header}\n{row1}\n{row2}\n".encode()
    blocks = [text[i:i + 7] for i in range(0, len(text), 7)]  # COPY sends arbitrary slices of the CSV
    frame = pd.read_csv(io.BufferedReader(features._CopyStream(blocks), buffer_size=64), **features._csv_options(SPEC))
    assert frame["customer_id"].tolist() == [7, 8] and frame["customer_id"].dtype == np.int64
    assert frame["as_of_date"].tolist() == [pd.Timestamp("2026-07-23")] * 2
    assert frame["tenure_days"].tolist()[0] == 1.5 and np.isnan(frame["tenure_days"].tolist()[1])
    assert all(frame[c].dtype == np.float64 for c in SPEC.features.numeric)
    assert frame["region"].tolist()[0] == "Europe" and pd.isna(frame["region"].tolist()[1])
    assert pd.isna(frame["acquisition_channel"].tolist()[0]) and frame["acquisition_channel"].tolist()[1] == "paid_search"
    assert frame[SPEC.label].tolist() == [1.0, 0.0]


def test_the_receiver_joins_blocks_into_pieces_in_order(monkeypatch):
    monkeypatch.setattr(features, "PIECE_BYTES", 10)
    blocks = [f"row {i}\n".encode() for i in range(100)]  # a COPY's rows, 6 or 7 bytes each
    cancelled = []
    with features.received(iter(blocks), lambda: cancelled.append(1)) as pieces:
        got = list(pieces)
    assert b"".join(got) == b"".join(blocks) and 30 < len(got) < 60  # two rows or so per piece
    assert all(len(p) >= 10 for p in got[:-1]) and cancelled == []  # read to the end: nothing to cancel


def test_the_receiver_hands_its_error_to_the_reader_after_what_it_received(monkeypatch):
    monkeypatch.setattr(features, "PIECE_BYTES", 1)

    def blocks():
        yield b"a,1\n"
        yield b"b,2\n"
        raise ConnectionError("server closed the connection unexpectedly")

    with features.received(blocks(), lambda: None) as pieces:
        assert next(pieces) == b"a,1\n" and next(pieces) == b"b,2\n"
        with pytest.raises(ConnectionError, match="closed the connection"):
            next(pieces)


def test_a_reader_that_leaves_early_cancels_the_query_and_stops_the_receiver(monkeypatch):
    monkeypatch.setattr(features, "PIECE_BYTES", 1)
    cancel = threading.Event()

    def endless():  # a COPY far longer than the reader wants; after a cancel the server ends it with an error
        while True:
            if cancel.is_set():
                raise RuntimeError("canceling statement due to user request")
            yield b"row\n"

    before = threading.active_count()
    with pytest.raises(ValueError, match="bad row"):
        with features.received(endless(), cancel.set) as pieces:
            next(pieces)
            raise ValueError("bad row")  # e.g. pandas refuses what it parsed
    assert cancel.is_set() and threading.active_count() == before  # the receiver has ended
