"""An event stream (Redis Streams) as a source: micro-batches into raw.<feed>, delivered at least once, loaded once.

A consumer group reads the stream. Each batch becomes one delivery in the feed's CSV format (plus the event
ids) and goes through `ingest.load_delivery` (contract, quarantine, ledger) in one PostgreSQL transaction that
first drops the events whose id raw.<feed> already holds; only after it commits are the events acknowledged
(XACK), the ones that broke the contract first copied to the dead-letter stream with the reason. A consumer
that dies between the load and the acknowledgement leaves its events pending: the next run claims those idle
longer than `claim_idle_seconds` (XAUTOCLAIM) and finds them loaded, so nothing is lost and nothing loaded twice.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import socket
import time
from datetime import datetime, timezone

import redis

from mlscale import postgres
from mlscale.config import Settings
from mlscale.data.contract import Column, Feed, load_contract
from mlscale.data.ingest import ensure_tables
from mlscale.sources import Source, SourceUnavailable, connection, load_batch

log = logging.getLogger(__name__)

EVENT_ID = "event_id"  # the field every event carries: unique per event, kept in raw.<feed>._event_id


def client(settings: Settings, src: Source) -> redis.Redis:
    """A Redis client for the source's Airflow connection (host, port, password; schema or extra `db`)."""
    conn = connection(settings, src.connection)
    db = int(conn.extra_dejson.get("db", conn.schema or 0))
    return redis.Redis(host=conn.host or "127.0.0.1", port=conn.port or 6379, db=db, password=conn.password or None,
                       username=conn.login or None, socket_connect_timeout=settings.pg_connect_timeout,
                       socket_timeout=60, decode_responses=True)


def _unavailable(src: Source, exc: Exception) -> SourceUnavailable:
    return SourceUnavailable(f"source {src.name}: Redis at Airflow connection {src.connection} did not answer "
                             f"({exc}); events stay in stream {src.stream} (nothing is acknowledged before it is "
                             "loaded); the next run catches up")


def publish(r: redis.Redis, src: Source, events: list[dict[str, str]]) -> int:
    """Append events (each a dict of string fields with its event_id) to the source's stream; return how many."""
    pipe = r.pipeline(transaction=False)
    for i, event in enumerate(events, 1):
        pipe.xadd(src.stream, event)
        if i % 1000 == 0:
            pipe.execute()
    pipe.execute()
    return len(events)


def frame_events(frame, feed: Feed) -> list[dict[str, str]]:
    """Rows of a feed (the generator's) as events: string fields, and an event id made of the feed and its key."""
    events = []
    for row in frame.to_dict("records"):
        event = {c: "" if v is None or v != v else str(v) for c, v in row.items()}
        event[EVENT_ID] = f"{feed.name}-" + "-".join(event[k] for k in feed.key)
        events.append(event)
    return events


def ensure_group(r: redis.Redis, src: Source) -> None:
    """The consumer group, reading from the start of the stream (created with the stream if missing)."""
    try:
        r.xgroup_create(src.stream, src.group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _stream_feed(feed: Feed) -> Feed:
    """The feed with the event id as one more required column (raw.<feed>._event_id)."""
    return dataclasses.replace(feed, columns=(*feed.columns, Column("_event_id", "text", True)))


def ensure_event_ids(conn, feed: Feed) -> None:
    """raw.<feed>._event_id and its unique index: an event id is loaded once, whatever the stream redelivers."""
    conn.execute(f'alter table raw."{feed.name}" add column if not exists _event_id text')
    conn.execute(f'create unique index if not exists "{feed.name}_event_id_idx" on raw."{feed.name}" (_event_id)'
                 " where _event_id is not null")
    conn.commit()


def _read(r: redis.Redis, src: Source, consumer: str) -> list[tuple[str, dict]]:
    """The next batch: events a dead consumer left pending (idle long enough) first, then new ones."""
    _, claimed, _ = r.xautoclaim(src.stream, src.group, consumer, min_idle_time=src.claim_idle_seconds * 1000,
                                 start_id="0-0", count=src.batch_events)
    if claimed:
        log.info("%s: claimed %d event(s) a consumer left unacknowledged", src.name, len(claimed))
        return claimed
    read = r.xreadgroup(src.group, consumer, {src.stream: ">"}, count=src.batch_events)
    return read[0][1] if read else []


def _ack(r: redis.Redis, src: Source, ids: list[str]) -> None:
    r.xack(src.stream, src.group, *ids)


def _batch_csv(feed: Feed, events: list[tuple[str, dict]]) -> tuple[bytes, dict[int, str]]:
    """The events as a CSV delivery, and the line each event starts on (to name the events quarantined)."""
    names = [c.name for c in feed.columns]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    line, lines = 2, {}
    for entry_id, fields in events:
        start = out.tell()
        writer.writerow([fields.get(EVENT_ID if n == "_event_id" else n, "") for n in names])
        lines[line] = entry_id
        line += out.getvalue().count("\n", start)
    return out.getvalue().encode(), lines


def consume(settings: Settings, src: Source, consumer: str | None = None, max_batches: int | None = None) -> dict:
    """Load the stream's new (and abandoned) events into raw.<feed> batch by batch until none is left."""
    t0 = time.monotonic()
    consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
    feed = _stream_feed(load_contract()[src.feed])
    r = client(settings, src)
    totals = {"batches": 0, "events": 0, "rows_loaded": 0, "duplicates": 0, "dead_lettered": 0}
    try:
        ensure_group(r, src)
        with postgres.warehouse(settings) as conn:
            ensure_tables(conn, load_contract())
            ensure_event_ids(conn, feed)
            while max_batches is None or totals["batches"] < max_batches:
                events = _read(r, src, consumer)
                if not events:
                    break
                loaded, duplicates, dead = load_events(conn, src, feed, events)
                for entry_id, fields, reason in dead:
                    r.xadd(src.dead_letter, {**fields, "_reason": reason, "_source_id": entry_id,
                                             "_source_stream": src.stream})
                _ack(r, src, [entry_id for entry_id, _ in events])
                totals["batches"] += 1
                totals["events"] += len(events)
                totals["rows_loaded"] += loaded
                totals["duplicates"] += duplicates
                totals["dead_lettered"] += len(dead)
                log.info("%s: batch %d: %d event(s), %d loaded, %d already loaded, %d dead-lettered", src.name,
                         totals["batches"], len(events), loaded, duplicates, len(dead))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise _unavailable(src, exc) from exc
    log.info("consumed %s in %.1f s: %s", src.name, time.monotonic() - t0, totals)
    return totals


def load_events(conn, src: Source, feed: Feed, events: list[tuple[str, dict]]) -> tuple[int, int, list]:
    """One batch in one transaction: (rows loaded, events already loaded, [(id, fields, reason)] to dead-letter)."""
    dead = [(entry_id, fields, f"no {EVENT_ID} field") for entry_id, fields in events if not fields.get(EVENT_ID)]
    with_id = {fields[EVENT_ID]: (entry_id, fields) for entry_id, fields in events if fields.get(EVENT_ID)}
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"stream {src.stream}",))
        seen = {row[0] for row in conn.execute(
            f'select _event_id from raw."{feed.name}" where _event_id = any(%s)', (list(with_id),))}
        fresh = [pair for event_id, pair in with_id.items() if event_id not in seen]
        duplicates = len(events) - len(dead) - len(fresh)
        if not fresh:
            return 0, duplicates, dead
        body, lines = _batch_csv(feed, fresh)
        label = f"{src.name}:{src.stream} {fresh[0][0]}..{fresh[-1][0]}"
        delivered = datetime.fromtimestamp(int(fresh[-1][0].split("-")[0]) / 1000, timezone.utc).date()
        res = load_batch(conn, feed, body, label, delivered)  # raises before anything is acknowledged
        by_id = dict(fresh)
        for line_no, reason in conn.execute("select line_no, reason from ops.quarantine where file_sha256 = %s",
                                            (res.sha256,)):
            dead.append((lines[line_no], by_id[lines[line_no]], reason))
    return res.rows_loaded, duplicates, dead
