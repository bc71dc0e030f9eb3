"""Small skills for the executor's tests, in a private Registry (the built-in library is not involved)."""
from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import ray
from pydantic import BaseModel, ConfigDict, Field

from skills import Plan, SkillContext, SkillError, Step, TableArtifact
from skills.registry import Registry, skill


class _PrivateRegistry(Registry):
    """Truthy even while empty: `skill(registry=...)` falls back to the global registry on a falsy one."""

    def __bool__(self) -> bool:
        return True


REGISTRY = _PrivateRegistry()

# Ray workers cannot import this test module by name: ship its functions and models by value instead
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NumbersIn(_Model):
    n: int = Field(ge=0)
    start: int = 0


class NumbersOut(_Model):
    values: list[int]
    total: int
    info: dict[str, int]


@skill("numbers", registry=REGISTRY)
def numbers(ctx: SkillContext, inp: NumbersIn) -> NumbersOut:
    """The integers start .. start+n-1, their total and a small info dict."""
    values = list(range(inp.start, inp.start + inp.n))
    ctx.progress("counted", done=inp.n, total=inp.n, unit="values")
    return NumbersOut(values=values, total=sum(values), info={"count": len(values)})


class AddIn(_Model):
    a: int
    b: int


class AddOut(_Model):
    sum: int


@skill("add", registry=REGISTRY)
def add(ctx: SkillContext, inp: AddIn) -> AddOut:
    """a + b."""
    return AddOut(sum=inp.a + inp.b)


class ScaleIn(_Model):
    values: list[int]
    factor: int = 2


class ScaleOut(_Model):
    values: list[int]


@skill("scale", registry=REGISTRY)
def scale(ctx: SkillContext, inp: ScaleIn) -> ScaleOut:
    """Every value times factor."""
    return ScaleOut(values=[v * inp.factor for v in inp.values])


class SumPartsIn(_Model):
    parts: dict[str, int]


@skill("sum_parts", registry=REGISTRY)
def sum_parts(ctx: SkillContext, inp: SumPartsIn) -> AddOut:
    """The sum of a dict's values (a dict input, for refs nested in dicts)."""
    return AddOut(sum=sum(inp.parts.values()))


class FailIn(_Model):
    message: str = "cannot do it"
    hint: str | None = None


@skill("fail", registry=REGISTRY)
def fail(ctx: SkillContext, inp: FailIn) -> AddOut:
    """Always raises a SkillError with the given message and hint."""
    raise SkillError(inp.message, skill="fail", hint=inp.hint)


@skill("buggy", registry=REGISTRY)
def buggy(ctx: SkillContext, inp: FailIn) -> AddOut:
    """Has a bug: a ZeroDivisionError nobody caught."""
    return AddOut(sum=len(inp.message) // 0)


class QueryIn(_Model):
    sql: str


class QueryOut(_Model):
    table: TableArtifact
    columns: list[str]
    rows: int


@skill("read", registry=REGISTRY)
def read(ctx: SkillContext, inp: QueryIn) -> QueryOut:
    """Runs governed SQL and keeps the result as Parquet in the artifact store."""
    table = ctx.sql(inp.sql)
    uri = ctx.artifacts.put_table(ctx.key("table.parquet"), table)
    artifact = TableArtifact(uri=uri, rows=table.num_rows, columns=table.column_names)
    return QueryOut(table=artifact, columns=table.column_names, rows=table.num_rows)


class CountIn(_Model):
    table: TableArtifact


class CountOut(_Model):
    rows: int
    compute: str


@skill("count", registry=REGISTRY)
def count(ctx: SkillContext, inp: CountIn) -> CountOut:
    """Reads a table artifact back and counts its rows."""
    return CountOut(rows=ctx.artifacts.get_table(inp.table.uri).num_rows, compute=ctx.settings.compute)


class SlowIn(_Model):
    ticks: int = 5
    delay: float = 0.05


class SlowOut(_Model):
    ticks: int
    compute: str


@skill("slow", registry=REGISTRY)
def slow(ctx: SkillContext, inp: SlowIn) -> SlowOut:
    """Sleeps `ticks` times, reporting progress after each tick."""
    for i in range(inp.ticks):
        time.sleep(inp.delay)
        # data keys that clash with event fields, and numpy scalars, must survive the trip to the store
        ctx.progress("tick", done=i + 1, total=inp.ticks, unit="ticks", tick=i, step=i, kind="tick",
                     share=np.float32((i + 1) / inp.ticks))
    return SlowOut(ticks=inp.ticks, compute=ctx.settings.compute)


@skill("sleeper", registry=REGISTRY)
def sleeper(ctx: SkillContext, inp: SlowIn) -> SlowOut:
    """Sleeps `ticks` times without ever reporting progress (Python code: an interrupt lands between ticks)."""
    for _ in range(inp.ticks):
        time.sleep(inp.delay)
    return SlowOut(ticks=inp.ticks, compute=ctx.settings.compute)


@skill("blocker", registry=REGISTRY)
def blocker(ctx: SkillContext, inp: SlowIn) -> SlowOut:
    """One long blocking call, like a C library's training loop: only killing the worker stops it."""
    time.sleep(inp.ticks * inp.delay)
    return SlowOut(ticks=inp.ticks, compute=ctx.settings.compute)


class ProbeIn(_Model):
    pass


class ProbeOut(_Model):
    compute: str
    ray_initialized: bool


@skill("ray_probe", uses_ray=True, registry=REGISTRY)
def ray_probe(ctx: SkillContext, inp: ProbeIn) -> ProbeOut:
    """Says whether Ray is up in this process, as a skill that needs Ray sees it."""
    import ray

    return ProbeOut(compute=ctx.settings.compute, ray_initialized=ray.is_initialized())


class WrongOut(_Model):
    other: int = 0


@skill("wrong_output", registry=REGISTRY)
def wrong_output(ctx: SkillContext, inp: ProbeIn) -> AddOut:
    """Returns a model of the wrong type."""
    return WrongOut()  # type: ignore[return-value]


def make_plan(*steps: tuple[str, str, dict[str, Any]]) -> Plan:
    """A plan from (id, skill, inputs) triples."""
    return Plan(goal="test", steps=[Step(id=i, skill=s, inputs=inputs) for i, s, inputs in steps])


def ref(target: str) -> dict[str, str]:
    return {"$ref": target}


class SettingsOut(_Model):
    num_workers: int
    cpus_per_worker: int
    use_gpu: bool | str


@skill("settings_probe", registry=REGISTRY)
def settings_probe(ctx: SkillContext, inp: ProbeIn) -> SettingsOut:
    """The compute settings this step was given (workers, CPUs, GPUs)."""
    return SettingsOut(num_workers=ctx.settings.num_workers, cpus_per_worker=ctx.settings.cpus_per_worker,
                       use_gpu=ctx.settings.use_gpu)
