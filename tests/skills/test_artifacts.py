"""The artifact store: round trips, and no key or URI reaches a file outside it (the warehouse, another store)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skills.artifacts import ArtifactAccessError, ArtifactStore


def test_round_trips_by_key_and_by_uri(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    uri = store.put_table("run-1/query/table.parquet", pa.table({"x": [1, 2]}))
    assert store.get_table(uri).to_pydict() == store.get_table("run-1/query/table.parquet").to_pydict() == {"x": [1, 2]}
    assert store.get_json(store.put_json("run-1/a.json", {"k": 1})) == {"k": 1}


@pytest.mark.parametrize("where", ["warehouse/customers.parquet", "store2/table.parquet"])
def test_uris_outside_the_store_are_refused(tmp_path, where):
    store = ArtifactStore(tmp_path / "store")
    outside = tmp_path / where
    outside.parent.mkdir(parents=True)
    pq.write_table(pa.table({"ssn": ["123-45-6789"]}), outside)
    with pytest.raises(ArtifactAccessError, match="outside the artifact store"):
        store.get_table(outside.as_uri())
    with pytest.raises(ArtifactAccessError):
        store.exists(outside.as_uri())


def test_keys_cannot_climb_out(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    (tmp_path / "secret.json").write_text('{"ssn": "123-45-6789"}')
    for key in ("../secret.json", "run/../../secret.json", store.uri("run/../../secret.json")):
        with pytest.raises(ArtifactAccessError, match=r"\.\."):
            store.get_json(key)
    with pytest.raises(ArtifactAccessError):
        store.put_bytes("../escape.bin", b"x")
    assert not (tmp_path / "escape.bin").exists()
