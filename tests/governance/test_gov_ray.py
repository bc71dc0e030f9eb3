"""The Engine travels to Ray tasks by pickling (policies + sources + audit path) and stays governed there."""
from __future__ import annotations

from pathlib import Path

import pytest
from gov_testdata import PRINCIPALS, seeded_engine

from governance import Engine, Policies, PolicyViolation

pytestmark = pytest.mark.ray


def test_engine_in_a_ray_task(ray_cluster, tmp_path: Path, gov_policies: Policies) -> None:
    engine = seeded_engine(gov_policies, audit=tmp_path / "audit.jsonl")

    @ray_cluster.remote
    def governed_count(eng: Engine, who: str) -> tuple[int, str]:
        try:
            eng.query("SELECT ssn FROM customers", PRINCIPALS[who])
            denied = "no"
        except PolicyViolation as err:
            denied = err.kind
        return eng.query("SELECT count(*) AS n FROM customers", PRINCIPALS[who]).to_pylist()[0]["n"], denied

    assert ray_cluster.get(governed_count.remote(engine, "analyst_eu")) == (10, "column")
    assert [r.verdict for r in engine.audit.records()] == ["denied", "allowed"]  # written by the worker
