"""Large tables stream: train_xgboost and tune read a table artifact in Ray Data batches (a directory of Parquet parts
here), never whole into the driver. The threshold (`RuntimeSettings.stream_rows`) is set low to force the path."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from ml_fixtures import ID, make_harness

from skills import ArtifactStore, SkillError, TableArtifact
from skills.library.boosting.data import HashSplit, Prepared
from skills.library.boosting.saved_model import SPLIT_ATTR, load_booster, validation_rows
from skills.library.boosting.stream import StreamPrepared
from skills.library.train_xgboost import TrainInput, load_prepared, train_xgboost
from skills.library.tune import TuneInput, tune

PART_ROWS = 1500


class NoWholeTables(ArtifactStore):
    """A real artifact store that refuses to read a table whole: the streaming path must never need it."""

    def get_table(self, key_or_uri: str) -> pa.Table:
        raise AssertionError(f"the driver read the whole table {key_or_uri}")


def separable(part: int, rows: int = PART_ROWS) -> pa.Table:
    """A seeded binary problem; region 'north' (which raises the odds) exists only in part 2, the last one."""
    rng = np.random.default_rng(part)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    regions = ["east", "west", "north"] if part == 2 else ["east", "west"]
    region = rng.choice(regions, size=rows)
    logit = 2.0 * x1 - 1.5 * x2 + 1.5 * (region == "north") + rng.normal(scale=0.5, size=rows)
    return pa.table({ID: np.arange(part * rows, (part + 1) * rows), "x1": x1, "x2": x2, "region": region,
                     "churn": np.where(logit > 0, "Yes", "No")})


def write_parts(store: ArtifactStore, parts: int = 3) -> TableArtifact:
    """The table as the query skill writes a large result: a directory of Parquet parts."""
    for i in range(parts):
        store.put_table(f"run/query/table/part-{i:05d}.parquet", separable(i))
    return TableArtifact(uri=store.uri("run/query/table"), rows=parts * PART_ROWS,
                         columns=separable(0).column_names, key=ID)


def streaming_harness(path: Path, compute: str = "ray"):
    h = make_harness(path, compute=compute, stream_rows=1000)
    h.ctx.artifacts = NoWholeTables(h.ctx.artifacts.root)
    return h


def whole_table(store: ArtifactStore, table: TableArtifact) -> pa.Table:
    return ArtifactStore.get_table(store, table.uri)  # the test itself may read it


REQUEST = {"target": "churn", "exclude": [ID]}


def test_hash_split_is_deterministic_seeded_and_near_its_fraction():
    table = separable(0, rows=20_000)
    split = HashSplit(0.2, seed=3, key=ID)
    valid = split.is_valid(table)
    assert np.array_equal(valid, HashSplit(0.2, seed=3, key=ID).is_valid(table))
    assert 0.19 < valid.mean() < 0.21  # in expectation, not exactly
    assert not np.array_equal(valid, HashSplit(0.2, seed=4, key=ID).is_valid(table))
    # a row's part depends on the row alone: batches split as the whole table does
    halves = np.concatenate([split.is_valid(table.slice(0, 7000)), split.is_valid(table.slice(7000))])
    assert np.array_equal(valid, halves)
    by_values = HashSplit(0.2, seed=3, columns=("x1", "region"))
    assert 0.18 < by_values.is_valid(table).mean() < 0.22
    assert HashSplit.from_info(split.info()) == split


@pytest.mark.ray
def test_preparation_counts_levels_across_parts_without_reading_the_table(tmp_path, ray_cluster):
    h = streaming_harness(tmp_path)
    table = write_parts(h.ctx.artifacts)
    prep = load_prepared(h.ctx, table, "churn", None, None, [ID], 0.2)
    assert isinstance(prep, StreamPrepared) and prep.rows == 3 * PART_ROWS
    assert prep.task == "classification" and prep.classes == ["no", "yes"]  # [negative, positive]
    assert prep.features == ["x1", "x2", "region"]
    assert prep.categories == {"region": ["east", "north", "west"]}  # 'north' is only in the last part
    assert prep.split == HashSplit(0.2, h.ctx.settings.seed, key=ID)
    # a three-level target streams as multiclass, its classes counted across the parts; an identifier is refused
    multi = load_prepared(h.ctx, table, "region", "classification", ["x1"], [], 0.2)
    assert multi.classes == ["east", "north", "west"]
    assert load_prepared(h.ctx, table, "churn", None, ["x1"], [], 0.2, positive="No").classes == ["yes", "no"]
    with pytest.raises(SkillError, match="looks like an identifier"):
        load_prepared(h.ctx, table, ID, "classification", ["x1"], [], 0.2)


@pytest.mark.ray
def test_a_table_in_parts_trains_streaming_on_ray_train(tmp_path, ray_cluster):
    runs = []
    for name in ("a", "b"):
        h = streaming_harness(tmp_path / name)
        table = write_parts(h.ctx.artifacts)
        request = TrainInput(table=table, num_rounds=40, early_stopping_rounds=10,
                             params={"eta": 0.3, "max_depth": 3}, **REQUEST)
        runs.append((h, table, train_xgboost(h.ctx, request).model))
    (h, table, model), (_, _, again) = runs
    assert model.metrics["auc"] > 0.8
    assert model.categories["region"] == ["east", "north", "west"]
    # the split is deterministic (validation rows are scored on workers: batch order may change the last float bit)
    assert model.metrics == pytest.approx(again.metrics, rel=1e-12) and model.history == again.history
    assert model.metrics["logloss"] == pytest.approx(min(model.history["logloss"]), abs=1e-3)
    assert [e.message for e in h.progress("rows")] == [f"counted {3 * PART_ROWS} rows"]
    # evaluate finds the same validation rows from the split convention written into the booster
    booster = load_booster(h.ctx.artifacts, model.uri)
    info = json.loads(booster.attr(SPLIT_ATTR))
    assert info["rule"] == "hash" and info["key"] == ID and info["rows"] == 3 * PART_ROWS
    data = whole_table(h.ctx.artifacts, table)
    rows = validation_rows(data, model, booster)
    assert np.array_equal(rows, np.flatnonzero(HashSplit(0.2, 0, key=ID).is_valid(data)))
    assert 0.15 < len(rows) / data.num_rows < 0.25


@pytest.mark.ray
def test_tune_streams_trials_from_the_artifact_store(tmp_path, ray_cluster):
    """optuna, not random search: Tune ignores max_concurrent_trials for BasicVariantGenerator, and two trials on
    this 2-CPU cluster leave no CPU for the Ray Data tasks that stream their batches."""
    h = streaming_harness(tmp_path)
    out = tune(h.ctx, TuneInput(table=write_parts(h.ctx.artifacts), num_trials=2, max_rounds=10, search="optuna",
                                scheduler="fifo", seed=0, **REQUEST))
    assert all("error" not in t and t["rounds"] == 10 for t in out.trials)
    assert out.model.metrics["auc"] > 0.8 and out.model.categories["region"] == ["east", "north", "west"]


@pytest.mark.ray
def test_small_tables_keep_the_in_memory_path(tmp_path, ray_cluster):
    h = make_harness(tmp_path)  # default stream_rows: a 3,000-row table is read into memory as before
    prep = load_prepared(h.ctx, h.table(limit=3000), "churn", None, None, [ID], 0.2)
    assert isinstance(prep, Prepared) and prep.table.num_rows == 3000
    assert "rule" not in prep.split_info()
