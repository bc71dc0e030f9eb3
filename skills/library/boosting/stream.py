"""Training data streamed from the table artifact: the driver never holds the table.

A table streams when its Parquet metadata count more than `RuntimeSettings.stream_rows` rows and Ray is up
(`streams`); smaller tables take the in-memory `data.prepare` path, unchanged. A directory of Parquet parts and a
single file stream alike (`ray.data.read_parquet` on the artifact store's own pyarrow filesystem).

`prepare_stream` fixes what a model needs without reading rows into the driver: the row count and column types from
Parquet metadata; the task, the target's classes and each categorical feature's levels from one distributed
pass (`count_levels` on every batch, merged in the driver as counts only); the train/validation split is a
`data.HashSplit` computed per batch. `StreamPrepared` holds no rows: its Ray Datasets read the Parquet files, split
and encode each batch (`EncodeSplit`: float32 features as categorical codes + the label), and are what Ray Train
workers, Tune trials and scoring consume. Workers build an `xgb.QuantileDMatrix` from the encoded batches
(`encoded_dmatrices`), so a worker holds its shard as float32 only while quantising it. Validation predictions are
computed on Ray workers (`Predict`); only (label, prediction) pairs, 8 bytes a validation row, come back for metrics.

Level counts: each batch sends at most `BATCH_LEVELS` most frequent levels per column (flagging it truncated when it
had more); the driver sums them and keeps at most `KEPT_LEVELS` per column (the most frequent, flagged truncated).
Counts are exact for columns with at most `BATCH_LEVELS` levels in a batch and `KEPT_LEVELS` in the table, i.e.
every column that can be a default feature; beyond that a column is identifier-like (never a default feature) and
an explicitly named one gets the most frequent levels by approximate counts. As in memory, a model keeps the
`frame.MAX_LEVELS` most frequent levels; any other level, and a level first seen when scoring, encodes as missing.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import xgboost as xgb

from skills.errors import SkillError
from skills.frame import (
    MAX_LEVELS,
    counts_levels,
    encode_features,
    encode_target,
    feature_candidates,
    identifier_like,
    is_categorical,
    level_counts,
    top_levels,
)
from skills.library.boosting.data import PARTS, VALID, HashSplit, check_target, classes_for, resolve_features
from skills.types import TableArtifact, Task

if TYPE_CHECKING:
    from skills.artifacts import ArtifactStore

LABEL = "label"  # encoded batches: {"X": float32 (rows, features), LABEL: float32 (rows,)}
BATCH_ROWS = 65_536  # rows per encoded batch
BATCH_LEVELS = 4 * MAX_LEVELS
KEPT_LEVELS = 16 * MAX_LEVELS
_LEVELS = pa.schema([("column", pa.string()), ("level", pa.string()), ("count", pa.int64()),
                     ("truncated", pa.bool_())])


def parquet_rows(store: ArtifactStore, uri: str) -> int:
    """Rows of the Parquet file or directory of parts at `uri`, from the files' metadata."""
    return store.dataset(uri).count_rows()


def streams(store: ArtifactStore, uri: str, stream_rows: int) -> bool:
    """True when the table at `uri` is large enough to stream (more than `stream_rows` rows) and Ray is up."""
    import ray

    return ray.is_initialized() and parquet_rows(store, uri) > stream_rows


def read(store: ArtifactStore, uri: str, columns: list[str]) -> Any:
    """The table at `uri` (a Parquet file or a directory of parts) as a lazy Ray Dataset of `columns`."""
    import ray.data

    fs, path = store.filesystem_path(uri)
    return ray.data.read_parquet(path, filesystem=fs).select_columns(columns)


# ---------------------------------------------------------------------------------------------------------------------
# Level counts: the task, the target's classes, default features and categories in one distributed pass
# ---------------------------------------------------------------------------------------------------------------------


def count_levels(batch: pa.Table) -> pa.Table:
    """(column, level, count, truncated) of every column of one batch: its `BATCH_LEVELS` most frequent levels;
    a row with a null level counts the column's nulls."""
    rows: dict[str, list[Any]] = {name: [] for name in _LEVELS.names}

    def add(column: str, level: str | None, count: int, truncated: bool) -> None:
        for name, value in zip(_LEVELS.names, (column, level, count, truncated), strict=True):
            rows[name].append(value)

    for name in batch.column_names:
        col = batch.column(name)
        counts = level_counts(col)
        kept = sorted(counts.items(), key=lambda c: -c[1])[:BATCH_LEVELS]
        for level, count in kept:
            add(name, level, count, len(counts) > BATCH_LEVELS)
        if col.null_count:
            add(name, None, col.null_count, False)
    return pa.table(rows, schema=_LEVELS)


@dataclass
class Levels:
    """Summed level counts of one column; `truncated` when only its most frequent levels were kept."""

    counts: Counter[str] = field(default_factory=Counter)
    nulls: int = 0
    truncated: bool = False

    def add(self, level: str | None, count: int, truncated: bool) -> None:
        if level is None:
            self.nulls += count
            return
        self.counts[level] += count
        self.truncated |= truncated
        if len(self.counts) > 2 * KEPT_LEVELS:  # bound the driver's memory: keep the most frequent
            self.counts = Counter(dict(self.counts.most_common(KEPT_LEVELS)))
            self.truncated = True

    @property
    def distinct(self) -> float:
        """Distinct levels (infinite when truncated: more than could be counted)."""
        return float("inf") if self.truncated else float(len(self.counts))


def collect_levels(store: ArtifactStore, uri: str, columns: list[str]) -> dict[str, Levels]:
    """Level counts of `columns` over the whole table, counted batch by batch on Ray workers."""
    levels = {name: Levels() for name in columns}
    counted = read(store, uri, columns).map_batches(count_levels, batch_format="pyarrow", batch_size=BATCH_ROWS)
    for batch in counted.iter_batches(batch_format="pyarrow", batch_size=None):
        for column, level, count, truncated in zip(*(batch.column(n).to_pylist() for n in _LEVELS.names),
                                                   strict=True):
            levels[column].add(level, count, truncated)
    return levels


# ---------------------------------------------------------------------------------------------------------------------
# Batches: split, encode, quantise, predict
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoding:
    """How rows become model inputs: features (categorical ones as codes into `categories`) and the label."""

    features: tuple[str, ...]
    target: str
    task: Task
    categories: Mapping[str, list[str]]
    classes: tuple[str, ...]  # the target's classes in label order ([] for regression)

    @property
    def feature_types(self) -> list[str]:
        return ["c" if f in self.categories else "q" for f in self.features]


@dataclass(frozen=True)
class EncodeSplit:
    """map_batches function: the rows of one split (`part`) of a batch, encoded as {"X", LABEL}."""

    part: str
    split: HashSplit
    encoding: Encoding

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        rows = batch.filter(pa.array(self.split.is_valid(batch) == (self.part == VALID)))
        enc = self.encoding
        return {"X": encode_features(rows, enc.features, dict(enc.categories)),
                LABEL: encode_target(rows.column(enc.target), enc.task, enc.classes)}


class _Chunks(xgb.DataIter):
    """Encoded batches for QuantileDMatrix, which reads them in a few passes."""

    def __init__(self, chunks: list[tuple[np.ndarray, np.ndarray]], encoding: Encoding) -> None:
        self._chunks, self._encoding, self._at = chunks, encoding, 0
        super().__init__()

    def next(self, input_data: Any) -> bool:
        if self._at == len(self._chunks):
            return False
        X, y = self._chunks[self._at]
        input_data(data=X, label=y, feature_names=list(self._encoding.features),
                   feature_types=self._encoding.feature_types)
        self._at += 1
        return True

    def reset(self) -> None:
        self._at = 0


def _quantile(batches: Iterable[Mapping[str, np.ndarray]], encoding: Encoding, part: str, params: Mapping[str, Any],
              ref: xgb.DMatrix | None = None) -> xgb.QuantileDMatrix:
    chunks = [(b["X"], b[LABEL]) for b in batches if len(b[LABEL])]
    if not chunks:
        raise SkillError(f"a training worker received no {part} rows", hint="use fewer workers or more rows")
    nthread = int(params.get("nthread", 0)) or None
    return xgb.QuantileDMatrix(_Chunks(chunks, encoding), ref=ref, enable_categorical=True, nthread=nthread,
                               max_bin=int(params.get("max_bin", 256)))


def encoded_dmatrices(batches: Mapping[str, Iterable[Mapping[str, np.ndarray]]], encoding: Encoding,
                      params: Mapping[str, Any]) -> tuple[xgb.DMatrix, xgb.DMatrix]:
    """(train, validation) QuantileDMatrix from encoded batches, the validation one quantised like the train one."""
    dtrain = _quantile(batches["train"], encoding, "train", params)
    return dtrain, _quantile(batches[VALID], encoding, VALID, params, ref=dtrain)


@dataclass
class Predict:
    """map_batches function: (label, prediction) of encoded batches, scored by a booster (its raw JSON)."""

    model: bytes
    encoding: Encoding
    _booster: xgb.Booster | None = field(default=None, init=False, repr=False)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._booster is None:
            self._booster = xgb.Booster(model_file=bytearray(self.model))
            self._booster.set_param({"device": "cpu", "nthread": 1})
        matrix = xgb.DMatrix(batch["X"], feature_names=list(self.encoding.features),
                             feature_types=self.encoding.feature_types, enable_categorical=True)
        return {LABEL: batch[LABEL], "prediction": self._booster.predict(matrix).astype(np.float32)}


# ---------------------------------------------------------------------------------------------------------------------
# The streamed training data
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class StreamPrepared:
    """A large training table left in the artifact store: its task, features, categories and hash split, and Ray
    Datasets that read, split and encode it batch by batch (a `data.TrainingData`; it holds no rows)."""

    store: ArtifactStore
    uri: str
    rows: int
    task: Task
    target: str
    features: list[str]
    categories: dict[str, list[str]]
    classes: list[str]
    split: HashSplit
    encoded = True

    @property
    def seed(self) -> int:
        return self.split.seed

    @property
    def encoding(self) -> Encoding:
        return Encoding(tuple(self.features), self.target, self.task, self.categories, tuple(self.classes))

    def datasets(self) -> dict[str, Any]:
        """Each split as a lazy Ray Dataset of encoded batches {"X", LABEL}: read, split and encoded on Ray workers
        every time it is iterated."""
        columns = list(dict.fromkeys([*self.features, self.target, *self.split.hashed]))
        return {part: read(self.store, self.uri, columns).map_batches(
                    EncodeSplit(part, self.split, self.encoding), batch_format="pyarrow", batch_size=BATCH_ROWS)
                for part in PARTS}

    def batches(self) -> dict[str, Iterator[dict[str, np.ndarray]]]:
        """The encoded batches of each split, iterated in this process."""
        return {part: ds.iter_batches(batch_format="numpy", batch_size=None) for part, ds in self.datasets().items()}

    def dmatrices(self, params: Mapping[str, Any]) -> tuple[xgb.DMatrix, xgb.DMatrix]:
        return encoded_dmatrices(self.batches(), self.encoding, params)

    def valid_predictions(self, booster: xgb.Booster) -> tuple[np.ndarray, np.ndarray]:
        scored = self.datasets()[VALID].map_batches(Predict(bytes(booster.save_raw("json")), self.encoding),
                                                    batch_format="numpy", batch_size=BATCH_ROWS)
        labels, predictions = [], []
        for batch in scored.iter_batches(batch_format="numpy", batch_size=None):
            labels.append(batch[LABEL])
            predictions.append(batch["prediction"])
        if not labels or not sum(map(len, labels)):
            raise SkillError(f"no validation rows among {self.rows}", hint="use a larger valid_fraction")
        return np.concatenate(labels), np.concatenate(predictions)

    def split_info(self) -> dict[str, Any]:
        return {**self.split.info(), "rows": self.rows}


def prepare_stream(store: ArtifactStore, table: TableArtifact, target: str, task: Task | None,
                   features: list[str] | None, exclude: list[str], valid_fraction: float,
                   seed: int, positive: str | None = None) -> StreamPrepared:
    """What `data.prepare` fixes, without reading rows into the driver: features and the task from the Parquet
    schema and one distributed pass of level counts (strings, booleans and the target), categories from the same
    counts, the split as a `HashSplit` of the entity key (`table.key`) or, without one, of the row's values."""
    dataset = store.dataset(table.uri)
    schema, rows = dataset.schema, dataset.count_rows()
    check_target(schema.names, target)
    named = set(features or [])
    counted = [f.name for f in feature_candidates(schema, target, exclude)
               if is_categorical(f.type) and (not features or f.name in named)]
    levels = collect_levels(store, table.uri, [*counted, target])

    def defaults() -> list[str]:
        return [f.name for f in feature_candidates(schema, target, exclude)
                if not (counts_levels(f.type) and identifier_like(levels[f.name].distinct, rows))]

    chosen = resolve_features(schema.names, target, features, exclude, defaults)
    task = task or ("classification" if is_categorical(schema.field(target).type) or
                    levels[target].distinct <= 2 else "regression")
    classes = classes_for(task, levels[target].counts, levels[target].nulls, positive, levels[target].truncated)
    categories = {name: top_levels(levels[name].counts) for name in chosen if name in levels and name != target}
    key = table.key if table.key in schema.names else None
    split = HashSplit(valid_fraction, seed, key, () if key else (*chosen, target))
    return StreamPrepared(store, table.uri, rows, task, target, chosen, categories, classes, split)
