"""The sources file (include/contracts/sources.yml) is checked when read."""

import dataclasses

import pytest
import yaml

from mlscale.sources import SOURCES_PATH, load_sources


def test_the_sources_file_is_checked(tmp_path):
    bad = tmp_path / "sources.yml"
    bad.write_text(yaml.safe_dump({"sources": {"crm": {"kind": "database", "connection": "c",
                                                       "tables": {"accounts": {"feed": "accounts"}}}}}))
    with pytest.raises(ValueError, match="table accounts: feed 'accounts' is not in the landing contract"):
        load_sources(bad)
    bad.write_text(yaml.safe_dump({"sources": {"q": {"kind": "queue", "connection": "c"}}}))
    with pytest.raises(ValueError, match="kind must be one of database, stream"):
        load_sources(bad)
    shipped = load_sources(SOURCES_PATH)
    assert {s.kind for s in shipped.values()} == {"database", "stream"}
    assert dataclasses.asdict(shipped["shop_db"])["tables"][2] == {"table": "orders", "feed": "orders",
                                                                  "cursor": "updated_at"}
