"""Load landing files into raw.* with COPY: a sha256 ledger makes it idempotent, bad rows go to quarantine."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql

from mlscale import ops, postgres
from mlscale.data.contract import PARSERS, Feed, load_contract

log = logging.getLogger(__name__)


class IngestRejected(RuntimeError):
    """One or more files broke the contract and were rejected whole."""


class IngestInterrupted(RuntimeError):
    """The connection to PostgreSQL was lost while a file loaded: its transaction rolled back, files loaded
    before it are kept; the next run loads it (and the rest) again."""


class FileRejected(Exception):
    """A landing file that cannot be read in its feed's format: rejected whole; the message says why and what to do."""


@dataclass
class ParsedFile:
    """What parsing a landing file found besides the rows `records` yields."""

    quarantined: list[tuple[int, str, str]] = field(default_factory=list)  # (line_no, raw_text, reason)
    extra_columns: list[str] = field(default_factory=list)


@dataclass
class FileResult:
    feed: str
    path: str
    sha256: str
    status: str  # loaded | skipped | rejected
    rows_loaded: int = 0
    rows_quarantined: int = 0
    extra_columns: list[str] = field(default_factory=list)
    error: str | None = None


def read_file(path: Path) -> tuple[bytes, str]:
    """A landing file's bytes and their sha256, read once: the hash is of exactly the bytes that are parsed."""
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def _text(data: bytes, path: Path | str, feed: Feed) -> Callable[[], io.TextIOWrapper]:
    """A function that opens the file's bytes as text in the feed's encoding, decoded as read (memory stays at
    the bytes, not four times them as a StringIO of the whole text would take). Checks the encoding first:
    raises FileRejected, before any row is read, with the byte, its offset and line. A UTF-8 byte-order mark
    (what Excel writes) is not part of the first column's name."""
    encoding = feed.format.encoding
    codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    try:
        data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FileRejected(f"{path}: not {encoding}: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line});"
                           f" deliver the file in {encoding}, or declare its encoding for feed {feed.name} in the "
                           "contract (format: {encoding: latin-1})") from None
    return lambda: io.TextIOWrapper(io.BytesIO(data), encoding=codec, newline="")


def _csv_problem(exc: csv.Error) -> str:
    """What a csv.Error means for the person who sent the file."""
    text = str(exc)
    if text.startswith("field larger than field limit"):
        return (f"a field longer than {csv.field_size_limit():,} characters (the CSV parser's limit): a corrupt "
                "export or a quote that is never closed; fix the file and deliver it again")
    if text == "unexpected end of data":
        return ("a quoted field is not closed before the end of the file, so every row after it would be lost; "
                "fix the quoting and deliver the file again")
    return f"malformed CSV ({text}); fix the quoting and deliver the file again"


DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def _header_problem(path: Path | str, feed: Feed, header: list[str], names: list[str]) -> str | None:
    """Why a header does not fit the feed (required columns missing, a name twice), or None."""
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        return f"{path}: column(s) {', '.join(twice)} named more than once (names are compared ignoring case and spaces)"
    missing = [c for c in feed.required_columns if c not in names]
    if not missing:
        return None
    why = f"{path}: missing required column(s) {', '.join(missing)} for feed {feed.name}"
    others = [d for d in DELIMITERS if d != feed.format.delimiter and d in header[0]] if len(header) == 1 else []
    if others:
        d = others[0]
        why += (f"; the header is one field containing {d!r}: the file looks {DELIMITERS[d]}-separated, while the "
                f"contract expects {feed.format.delimiter!r} (declare format: {{delimiter: {d!r}}} for the feed, or "
                "deliver it comma-separated)")
    return why


def _absent(raw: str) -> None:
    """The value of a contract column the file does not have."""
    return None


def _row_problem(row: list[str], width: int, feed: Feed, plan: list) -> str:
    """Why a row breaks the contract: the first column that fails, as its parser says (the slow path of
    `records`, for quarantined rows only)."""
    if len(row) != width:
        return f"expected {width} fields, got {len(row)}"
    for col, (parse, pos, _) in zip(feed.columns, plan):
        raw = row[pos].strip() if parse is not _absent else ""
        if raw == "":
            if col.required:
                return f"{col.name}: missing value"
            continue
        try:
            parse(raw)
        except ValueError as exc:
            return f"{col.name}: {exc}"
    raise AssertionError(f"no column of {row!r} fails, yet records() refused it")  # the two paths disagree


def records(data: bytes, path: Path | str, feed: Feed, found: ParsedFile) -> Iterator[list]:
    """Yield the rows of a CSV file's bytes that keep `feed`'s contract, as (values in contract order..., line_no).

    A generator, so a file streams into COPY while it is parsed (nothing holds all its rows). Rows that break
    the contract go to `found.quarantined` (first line of the record, its raw text, the reason); a file that
    cannot be read as CSV in the feed's format raises FileRejected, at the header or half-way through. So every
    row of a file is either loaded, quarantined, or part of a rejected file."""
    text = _text(data, path, feed)
    reader = csv.reader(text(), delimiter=feed.format.delimiter, strict=True)
    physical: list[str] = []  # the file's lines, split only once a record is quarantined (its raw text)
    start = 1  # first line of the record being read
    try:
        header = next(reader, None)
        if not header:
            raise FileRejected(f"{path}: empty file, expected a header row with {', '.join(feed.column_names)}")
        names = [h.strip().casefold() for h in header]
        if problem := _header_problem(path, feed, header, names):
            raise FileRejected(problem)
        found.extra_columns = [h.strip() for h, n in zip(header, names) if n not in feed.column_names]
        # (parser, position in the row, required); a column the file lacks reads as empty through _absent
        plan = [(PARSERS[c.type], names.index(c.name), c.required) if c.name in names else (_absent, 0, False)
                for c in feed.columns]
        width = len(header)
        start = reader.line_num + 1
        for row in reader:
            line_no, start = start, reader.line_num + 1
            if not row:
                continue
            if len(row) == width:
                try:  # the common case in one comprehension; a parser rejects an empty required value too
                    values = [parse(raw) if (raw := row[pos].strip()) or required else None
                              for parse, pos, required in plan]
                    values.append(line_no)
                    yield values
                    continue
                except ValueError:
                    pass
            physical = physical or text().readlines()
            found.quarantined.append((line_no, "".join(physical[line_no - 1:start - 1]).rstrip("\r\n"),
                                      _row_problem(row, width, feed, plan)))
    except csv.Error as exc:
        raise FileRejected(f"{path}: line {start}: {_csv_problem(exc)}") from None


def ensure_tables(conn: psycopg.Connection, feeds: dict[str, Feed]) -> None:
    """Create raw.<feed> for every feed in the contract (delivered or not), the ledger and quarantine."""
    ops.ensure(conn, "ingest")
    conn.execute("create schema if not exists raw")
    for feed in feeds.values():
        table = sql.Identifier(feed.name)
        conn.execute(sql.SQL("create table if not exists raw.{} (_file_sha256 text not null)").format(table))
        # Columns are added, never dropped or retyped, so a contract can grow without a migration.
        columns = [(c.name, c.type) for c in feed.columns] + [
            ("_line_no", "integer"), ("_delivery_date", "date"), ("_loaded_at", "timestamptz not null default now()")]
        for name, type_ in columns:
            conn.execute(sql.SQL("alter table raw.{} add column if not exists {} {}").format(
                table, sql.Identifier(name), sql.SQL(type_)))
        # Incremental dbt models read only the keys and loads that changed, and the quality gates and
        # the staging tests only the rows of the files a run claimed: each needs an index.
        for suffix, cols in (("key", feed.key), ("loaded_at", ("_loaded_at",)), ("file", ("_file_sha256",))):
            conn.execute(sql.SQL("create index if not exists {} on raw.{} ({})").format(
                sql.Identifier(f"{feed.name}_{suffix}_idx"), table, sql.SQL(", ").join(map(sql.Identifier, cols))))
    conn.commit()


def delivery_date(path: Path) -> date | None:
    """The delivery day from the file's dt=YYYY-MM-DD folder, or None."""
    try:
        return date.fromisoformat(path.parent.name.removeprefix("dt="))
    except ValueError:
        return None


def discover(landing_dir: Path, feeds: dict[str, Feed]) -> list[tuple[Feed, Path]]:
    """Landing files of known feeds, oldest delivery day first.

    Files whose name starts with `.` or `_` are being written or uploaded (the convention of Spark and Hive)
    and wait until they are renamed; `.csv` files outside a `dt=` folder are reported and left alone."""
    found, waiting, outside = [], [], []
    for feed in feeds.values():
        folder = landing_dir / feed.name
        for path in sorted(folder.rglob("*.csv")):  # one walk of the feed's folder
            if path.parent.parent != folder or not path.parent.name.startswith("dt="):
                outside.append(path)
            else:
                (waiting if path.name.startswith((".", "_")) else found).append((feed, path))
    if waiting:
        log.info("%d file(s) still being written (name starts with . or _) wait until renamed: %s", len(waiting),
                 ", ".join(str(p) for _, p in waiting[:5]))
    if outside:
        log.warning("ignoring %d file(s) outside landing/<feed>/dt=YYYY-MM-DD/: %s", len(outside),
                    ", ".join(str(p) for p in outside[:5]))
    unknown = sorted(p.name for p in landing_dir.glob("*") if p.is_dir() and p.name not in feeds)
    if unknown:
        log.warning("ignoring landing folders that are not feeds in the contract: %s", ", ".join(unknown))
    return sorted(found, key=lambda fp: (fp[1].parent.name, fp[0].name, fp[1].name))


def path_problem(landing_dir: Path, path: Path) -> str | None:
    """Why a landing file must not be loaded from where it is (a folder that is not a day, a link out of the
    landing folder), or None. Such a file gets no ledger row: once moved, it loads."""
    if path.is_symlink() and not path.resolve().is_relative_to(landing_dir.resolve()):
        return (f"{path}: a link to {path.resolve()}, outside the landing folder {landing_dir}: copy the file in "
                "instead of linking it")
    if delivery_date(path) is None:
        return (f"{path}: folder {path.parent.name} is not a delivery day (dt=YYYY-MM-DD): move the file into "
                "its day's folder")
    return None


def _seen_paths(conn: psycopg.Connection) -> dict[str, tuple[int, int]]:
    """path -> (size_bytes, mtime_ns) of every landing path already hashed."""
    return {path: (size, mtime) for path, size, mtime in
            conn.execute("select path, size_bytes, mtime_ns from ops.ingest_paths")}


def _record_path(conn: psycopg.Connection, path: Path, stat: os.stat_result, sha: str) -> None:
    conn.execute(
        "insert into ops.ingest_paths (path, size_bytes, mtime_ns, sha256) values (%s, %s, %s, %s)"
        " on conflict (path) do update set size_bytes = excluded.size_bytes, mtime_ns = excluded.mtime_ns,"
        " sha256 = excluded.sha256",
        (str(path), stat.st_size, stat.st_mtime_ns, sha),
    )


def load_file(conn: psycopg.Connection, feed: Feed, path: Path, stat: os.stat_result) -> FileResult:
    """Load one file in one transaction; a file already in the ledger (by sha256) is skipped.

    `stat` is the file's, taken before reading: a file that changed meanwhile (still being written) is
    left for the next run.
    """
    data, sha = read_file(path)
    if len(data) != stat.st_size:
        log.warning("%s changed while it was being read (%d bytes, then %d): left for the next run", path,
                    stat.st_size, len(data))
        return FileResult(feed.name, str(path), sha, "skipped", error="changed while being read")
    with conn.transaction():
        result = load_delivery(conn, feed, data, sha, str(path), delivery_date(path))
        _record_path(conn, path, stat, sha)
    return result


def load_delivery(conn: psycopg.Connection, feed: Feed, data: bytes, sha: str, source: str,
                  delivered: date | None) -> FileResult:
    """Load one delivery (a CSV text in the feed's format: a landing file, or a batch a source extractor wrote)
    in one transaction, or a savepoint of the caller's; a delivery already in the ledger (by sha256) is skipped.

    Every row is loaded or quarantined; a delivery that cannot be read is recorded as rejected with none of its
    rows. `source` is what the ledger and quarantine name (a path, or a source table and its cursor range)."""
    columns = [*feed.column_names, "_line_no", "_file_sha256", "_delivery_date"]
    copy_sql = sql.SQL("copy raw.{} ({}) from stdin (format binary)").format(
        sql.Identifier(feed.name), sql.SQL(", ").join(map(sql.Identifier, columns)))
    found = ParsedFile()
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (sha,))
        seen = conn.execute("select status, error from ops.ingest_files where sha256 = %s", (sha,)).fetchone()
        if seen:
            return FileResult(feed.name, source, sha, "skipped", error=seen[1])
        try:
            # A savepoint: a file rejected half-way through (a quote never closed) leaves none of its rows.
            with conn.transaction(), conn.cursor() as cur:
                # Rows go to PostgreSQL while the rest of the file is parsed, so the server's work (the
                # indexes) runs alongside ours on another core. Binary COPY of the parsed values: psycopg
                # writes them in C, twice as fast as its text format (bench/ingest_copy.py).
                with cur.copy(copy_sql) as copy:
                    copy.set_types([c.type for c in feed.columns] + ["integer", "text", "date"])
                    extra = (sha, delivered)
                    for row in records(data, source, feed, found):
                        row.extend(extra)
                        copy.write_row(row)
                loaded = cur.rowcount
                if found.quarantined:
                    cur.executemany(
                        "insert into ops.quarantine (file_sha256, path, line_no, raw_text, reason)"
                        " values (%s, %s, %s, %s, %s)", [(sha, source, *q) for q in found.quarantined])
                cur.execute(
                    "insert into ops.ingest_files (sha256, feed, path, status, rows_loaded, rows_quarantined,"
                    " extra_columns) values (%s, %s, %s, 'loaded', %s, %s, %s)",
                    (sha, feed.name, source, loaded, len(found.quarantined), found.extra_columns))
        except FileRejected as exc:
            conn.execute("insert into ops.ingest_files (sha256, feed, path, status, error)"
                         " values (%s, %s, %s, 'rejected', %s)", (sha, feed.name, source, str(exc)))
            return FileResult(feed.name, source, sha, "rejected", error=str(exc))
    result = FileResult(feed.name, source, sha, "loaded", loaded, len(found.quarantined), found.extra_columns)
    if found.quarantined:
        log.warning("%s: %d row(s) quarantined, %d loaded", source, len(found.quarantined), loaded)
    if found.extra_columns:
        log.warning("%s: extra column(s) ignored: %s", source, ", ".join(found.extra_columns))
    return result


def ingest_landing(dsn: str, landing_dir: Path) -> dict[str, dict[str, int]]:
    """Load every new landing file; return counts per feed; raise IngestRejected if a new file was rejected.

    A file whose path, size and mtime are those it had when last hashed is skipped unread; any other
    file is hashed and looked up in the ledger.
    """
    feeds = load_contract()
    files = discover(landing_dir, feeds)
    delivered = {feed.name for feed, _ in files}
    undelivered = [f.name for f in feeds.values() if f.mandatory and f.name not in delivered]
    if undelivered:
        log.warning("no file of mandatory feed(s) %s under %s", ", ".join(undelivered), landing_dir)
    summary = {name: {"files_loaded": 0, "files_skipped": 0, "files_rejected": 0, "rows_loaded": 0, "rows_quarantined": 0}
               for name in feeds}
    rejected = []
    with postgres.connect(dsn) as conn:
        ensure_tables(conn, feeds)
        with conn.transaction():  # closed here: each file below gets a transaction of its own
            seen = _seen_paths(conn)
        to_read = []
        for feed, path in files:
            stat = path.stat()
            if seen.get(str(path)) == (stat.st_size, stat.st_mtime_ns):
                summary[feed.name]["files_skipped"] += 1
            else:
                to_read.append((feed, path, stat))
        log.info("%d landing file(s), %d unchanged since they were read; reading %d", len(files),
                 len(files) - len(to_read), len(to_read))
        for i, (feed, path, stat) in enumerate(to_read, 1):
            problem = path_problem(landing_dir, path)  # rejected unread: no sha256, no ledger row
            try:
                res = FileResult(feed.name, str(path), "", "rejected", error=problem) if problem else \
                    load_file(conn, feed, path, stat)
            except psycopg.OperationalError as exc:
                if not conn.broken:
                    raise
                raise IngestInterrupted(
                    f"the connection to PostgreSQL was lost while loading {path} ({str(exc).splitlines()[0]}): "
                    "none of that file's rows were kept, the files before it stay loaded; run the ingest again "
                    "once the server answers") from exc
            counts = summary[feed.name]
            counts[f"files_{res.status}"] += 1
            counts["rows_loaded"] += res.rows_loaded
            counts["rows_quarantined"] += res.rows_quarantined
            if res.status == "rejected":
                log.error("rejected %s", res.error)
                rejected.append(res.error)
            if i % 100 == 0 or i == len(to_read):
                log.info("ingest progress: %d/%d files read", i, len(to_read))
    for feed, counts in summary.items():
        log.info("feed %s: %s", feed, counts)
    if rejected:
        raise IngestRejected(f"{len(rejected)} file(s) rejected and not loaded:\n" + "\n".join(rejected))
    return summary


def retract_file(dsn: str, sha256: str, reason: str) -> int:
    """Take a loaded file back: delete its raw rows, mark it retracted in the ledger; return rows deleted.

    For a delivery that fails the raw quality gate: retract it, then deliver a corrected file.
    """
    with postgres.connect(dsn) as conn, conn.transaction():
        row = conn.execute("select feed, status from ops.ingest_files where sha256 = %s for update", (sha256,)).fetchone()
        if row is None:
            raise LookupError(f"no file with sha256 {sha256} in ops.ingest_files")
        feed, status = row
        if status != "loaded":
            raise ValueError(f"file {sha256} is {status}, only a loaded file can be retracted")
        deleted = conn.execute(sql.SQL("delete from raw.{} where _file_sha256 = %s").format(sql.Identifier(feed)),
                               (sha256,)).rowcount
        conn.execute("update ops.ingest_files set status = 'retracted', error = %s, etl_status = null"
                     " where sha256 = %s", (f"retracted: {reason}", sha256))
    log.warning("retracted file %s (%s): %d raw rows deleted; reason: %s", sha256, feed, deleted, reason)
    return deleted
