"""The manifest Cosmos renders warehouse_etl from is replaced whole: a reader during `dbt parse` (a DAG
processor, another test worker) gets the old file or the new one, never half of one: the new file is renamed over
the old one (a new inode), never written in place."""

import json
import threading

from mlscale.config import Settings
from mlscale.local.services import build_dbt_manifest


def test_a_rebuild_never_shows_a_reader_half_a_manifest(manifest):
    settings = Settings.from_env()
    path = settings.dbt_manifest
    reads, errors, done = [], [], threading.Event()
    before = path.stat().st_ino

    def read():  # every 20 ms: a reader spinning on the file held a core for the whole parse
        while not done.wait(0.02):
            try:
                reads.append(len(json.loads(path.read_text())["nodes"]))
            except (ValueError, OSError) as exc:  # a truncated or missing file
                errors.append(repr(exc))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert build_dbt_manifest(settings) == path
    finally:
        done.set()
        reader.join()
    assert errors == [] and len(reads) > 10 and len(set(reads)) == 1
    assert path.stat().st_ino != before  # renamed over the old file, not rewritten in it
    assert not list(path.parent.glob(".parse-*"))  # dbt's own folder is gone
