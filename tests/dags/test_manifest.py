"""The manifest Cosmos renders warehouse_etl from is replaced whole: a reader during `dbt parse` (a DAG
processor, another test worker) gets the old file or the new one, never half of one."""

import json
import threading

from mlscale.config import Settings
from mlscale.local.services import build_dbt_manifest


def test_a_rebuild_never_shows_a_reader_half_a_manifest(manifest):
    settings = Settings.from_env()
    path = settings.dbt_manifest
    reads, errors, done = [], [], threading.Event()

    def read():
        while not done.is_set():
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
    assert not list(path.parent.glob(".parse-*"))  # dbt's own folder is gone
