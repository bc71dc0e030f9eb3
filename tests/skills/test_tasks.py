"""boosting.tasks: a stored table read lazily (columns, row groups, the seeded sample) and one runner with two
executors whose failures are SkillErrors naming the unit of work."""
from __future__ import annotations

import operator
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from skills import ArtifactStore, SkillError
from skills.library.boosting.tasks import SAMPLE_ROWS, RayTasks, StoredTable, run_each
from skills.library.explain import ExplainInput, sample_table


@pytest.fixture
def grouped(tmp_path) -> tuple[StoredTable, pa.Table]:
    """5000 rows in row groups of 300."""
    store = ArtifactStore(tmp_path)
    rng = np.random.default_rng(1)
    table = pa.table({"i": np.arange(5000), "x": rng.normal(size=5000), "s": rng.choice(["a", "b"], 5000)})
    pq.write_table(table, store.local_path("t.parquet"), row_group_size=300)
    return StoredTable(store, store.uri("t.parquet")), table


def test_the_sample_is_the_rows_a_full_read_would_sample(grouped):
    source, table = grouped
    assert source.num_rows() == 5000 and source.schema.names == ["i", "x", "s"]
    got = source.sample(["i", "s"], 700, seed=3)
    assert got.to_pylist() == sample_table(table, 700, seed=3).select(["i", "s"]).to_pylist()
    assert source.sample(["x"], 9000, seed=3).column("x").to_pylist() == table.column("x").to_pylist()


def test_parts_cover_every_row_group_once_in_order(grouped):
    source, table = grouped
    for count in (1, 2, 5, 100):
        parts = source.parts(count)
        assert len(parts) <= count and [i for p in parts for i in p] == list(range(17))
        rows = [sum(b.num_rows for b in source.batches(["i"], p)) for p in parts]
        assert sum(rows) == 5000 and (count > 17 or max(rows) - min(rows) <= 300)
    assert pa.concat_tables(source.batches(["i"])).column("i").to_pylist() == list(range(5000))


@pytest.mark.parametrize("compute", ["local", "ray"])
def test_a_failure_names_the_unit_of_work_and_its_cause(compute, request):
    on = RayTasks(cpus=1, concurrency=2) if compute == "ray" else None
    if on is not None:
        request.getfixturevalue("ray_cluster")
    assert run_each(operator.truediv, partial(int, 6), [1, 2, 3], on, str) == [6.0, 3.0, 2.0]
    with pytest.raises(SkillError, match=r"part 1 failed: ZeroDivisionError: division by zero"):
        run_each(operator.truediv, partial(int, 6), [0], on, lambda i: f"part {i + 1}")


def test_explain_samples_at_most_sample_rows():
    with pytest.raises(ValidationError, match=f"less than or equal to {SAMPLE_ROWS}"):
        ExplainInput.model_validate({"model": {"uri": "m", "task": "regression", "target": "y", "features": []},
                                     "table": {"uri": "t", "rows": 1, "columns": []}, "sample_rows": SAMPLE_ROWS + 1})
