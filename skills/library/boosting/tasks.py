"""Work that reads its own data: a stored table read by columns, row groups or a seeded sample, and one runner with
two executors (this process, or Ray tasks) for `evaluate`'s folds and holdout and `residuals`' batches.

A unit of work is `work(load(), arg)`. In this process `load` runs once and every `arg` reuses what it loaded (one
read, one encoding); on Ray each task calls `load` itself, by URI, so the driver never holds the rows and only
`work`'s (small) result travels back. Tasks ask for the Compute decision's CPUs (`cluster_compute`), at most its
`max_concurrent_trials` run at once, a finished task is reported at once and a failed one becomes a SkillError that
names it and its cause, never a Ray traceback.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa

from skills.errors import SkillError

if TYPE_CHECKING:
    import pyarrow.dataset as pads

    from skills.artifacts import ArtifactStore
    from skills.context import SkillContext

D = TypeVar("D")
A = TypeVar("A")
T = TypeVar("T")
BATCH_ROWS = 65_536  # rows per record batch when a task streams its row groups
SAMPLE_ROWS = 20_000  # the most rows a skill holds in the driver as a sample (explain's SHAP rows, residuals' bins)


# ------------------------------------------------------------------------------------------------ stored tables


@dataclass(frozen=True)
class StoredTable:
    """A table in the artifact store, read lazily: only the columns, row groups or sampled rows asked for.
    Picklable (the store pickles as its root URI), so a Ray task reads it by itself."""

    store: ArtifactStore
    uri: str

    def _dataset(self) -> pads.Dataset:
        return self.store.dataset(self.uri)

    @property
    def schema(self) -> pa.Schema:
        """Column names and types, from the Parquet metadata."""
        return self._dataset().schema

    def num_rows(self) -> int:
        """Row count, from the Parquet metadata."""
        return int(self._dataset().count_rows())

    def read(self, columns: Sequence[str]) -> pa.Table:
        """Every row of `columns`, in stored order."""
        return self._dataset().to_table(columns=list(columns))

    def row_groups(self) -> list[pads.ParquetFileFragment]:
        """The table's row groups in stored order (files sorted by name, row groups in file order)."""
        return [group for fragment in self._dataset().get_fragments() for group in fragment.split_by_row_group()]

    def parts(self, count: int) -> list[range]:
        """Row groups cut into at most `count` contiguous parts of similar row counts (at least one part)."""
        sizes = np.array([sum(rg.num_rows for rg in group.row_groups) for group in self.row_groups()], dtype=np.int64)
        if not len(sizes):
            return [range(0)]
        middles = 2 * np.cumsum(sizes) - sizes  # twice each group's middle row: a group goes where most of it lies
        owner = np.minimum(middles * max(1, count) // max(2 * int(sizes.sum()), 1), max(1, count) - 1)
        return [range(int(np.argmax(owner == p)), int(len(owner) - np.argmax(owner[::-1] == p)))
                for p in np.unique(owner)]

    def batches(self, columns: Sequence[str], part: range | None = None) -> Iterator[pa.Table]:
        """The rows of one part (all row groups by default) as tables of at most BATCH_ROWS rows, in stored order."""
        groups = self.row_groups()
        for i in part if part is not None else range(len(groups)):
            for batch in groups[i].to_batches(columns=list(columns), batch_size=BATCH_ROWS, use_threads=False):
                yield pa.Table.from_batches([batch])

    def take_sorted(self, columns: Sequence[str], rows: np.ndarray) -> pa.Table:
        """Rows `rows` (sorted positions) of `columns`, streaming BATCH_ROWS rows at a time."""
        pieces, offset = [], 0
        for batch in self.batches(columns):
            lo, hi = np.searchsorted(rows, [offset, offset + batch.num_rows])
            if hi > lo:
                pieces.append(batch.take(pa.array(rows[lo:hi] - offset)))
            offset += batch.num_rows
        return pa.concat_tables(pieces) if pieces else self.schema.empty_table().select(list(columns))

    def sample(self, columns: Sequence[str], rows: int, seed: int) -> pa.Table:
        """At most `rows` rows drawn without replacement (seeded), in stored order: the same rows as
        `sample_rows(table, rows, seed)` on the whole table, without ever holding it."""
        total = self.num_rows()
        if total <= rows:
            return self.read(columns)
        return self.take_sorted(columns, sample_positions(total, rows, seed))


def reader(source: StoredTable, columns: Sequence[str]) -> Callable[[], pa.Table]:
    """A picklable `load` for `run_each` that reads `columns` of `source` wherever it is called."""
    return partial(_read, source, tuple(columns))


def _read(source: StoredTable, columns: tuple[str, ...]) -> pa.Table:
    return source.read(columns)


def sample_positions(total: int, rows: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded sample of `rows` of `total` rows, without replacement."""
    return np.sort(np.random.default_rng(seed).choice(total, size=rows, replace=False))


# ------------------------------------------------------------------------------------------------ the runner


@dataclass(frozen=True)
class RayTasks:
    """How work runs on Ray: CPUs (and xgboost threads) per task and how many tasks run at once."""

    cpus: int = 1
    concurrency: int = 1


def ray_tasks(ctx: SkillContext) -> RayTasks | None:
    """Ray tasks sized by the Compute decision when the executor started Ray for this step, else None (this
    process). `cpus_per_worker` CPUs per task (xgboost threads too); as many at once as the cluster's CPUs hold
    (the driver only waits for results, so unlike Tune trials no CPU is kept back for it)."""
    if ctx.settings.compute != "ray":
        return None
    import ray

    from skills.library.boosting.compute import cluster_compute, require_ray

    require_ray(ctx.step_id)
    compute = cluster_compute(ctx.settings, num_workers=1)
    fit = int(float(ray.cluster_resources().get("CPU", 0.0)) // compute.cpus_per_worker)
    return RayTasks(cpus=compute.cpus_per_worker, concurrency=max(1, fit))


Label = Callable[[int], str]  # names the i-th unit of work in messages ("cross-validation fold 2 of 5")


def _call(work: Callable[[D, A], T], load: Callable[[], D], arg: A) -> T:
    """The Ray task body: load by itself, then work."""
    return work(load(), arg)


def run_each(work: Callable[[D, A], T], load: Callable[[], D], args: Sequence[A], on: RayTasks | None, label: Label,
             on_done: Callable[[int, T], None] | None = None) -> list[T]:
    """`work(load(), arg)` for every arg, results in order: in this process when `on` is None (`load` once), else
    as Ray tasks (each task loads; `work` and `load` must pickle: module functions or partials of them).
    `on_done(i, result)` is called as each finishes (completion order on Ray)."""
    if on is None:
        data = load()
        out: list[T] = []
        for i, arg in enumerate(args):
            out.append(_guarded(label, i, partial(work, data, arg)))
            if on_done is not None:
                on_done(i, out[-1])
        return out
    return _run_on_ray(work, load, args, on, label, on_done)


def _guarded(label: Label, i: int, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except Exception as exc:
        raise task_failed(label(i), exc) from exc


def _run_on_ray(work: Callable[[D, A], T], load: Callable[[], D], args: Sequence[A], on: RayTasks, label: Label,
                on_done: Callable[[int, T], None] | None) -> list[T]:
    import ray

    task: Any = ray.remote(_call).options(num_cpus=on.cpus)
    results: dict[int, T] = {}
    pending: dict[Any, int] = {}
    todo = list(enumerate(args))
    try:
        while todo or pending:
            while todo and len(pending) < max(1, on.concurrency):
                i, arg = todo.pop(0)
                pending[task.remote(work, load, arg)] = i
            [ready], _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready)
            results[i] = _guarded(label, i, partial(_fetch, ready))
            if on_done is not None:
                on_done(i, results[i])
    finally:
        for ref in pending:  # after a failure, or a step cancelled from on_done: stop what still runs
            ray.cancel(ref)
    return [results[i] for i in range(len(args))]


def _fetch(ref: Any) -> Any:
    import ray

    return ray.get(ref)


def task_failed(label: str, exc: BaseException) -> SkillError:
    """`<label> failed: <cause>` with the cause's hint: a Ray task error is unwrapped to what the task raised."""
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, SkillError):
        return SkillError(f"{label} failed: {cause.message}", skill=cause.skill, hint=cause.hint)
    text = str(cause).strip().splitlines()
    detail = f"{type(cause).__name__}: {text[-1][:300]}" if text else type(cause).__name__
    return SkillError(f"{label} failed: {detail}",
                      hint="check that the Ray workers are healthy and can read the artifact store, or run the plan "
                           "with the local backend")
