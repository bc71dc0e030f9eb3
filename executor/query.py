"""Searching the run store: filters, a sort key and a page, turned into one SQL query (SQLite and PostgreSQL).

Sort keys name either a column of the runs table or a number of the session summary that the first run of a session
keeps in `result.summary` (its cross-validated metric, rows, wall time), read with the JSON path operators that
SQLAlchemy renders for both databases. Runs that an OODA loop or a session's final report started (their plan says
`metadata.ooda`, or holds only the `final_report` step) are "children": `top_level` leaves them out, and the caller
fetches them with their parent (`RunStore.get_runs`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Text, and_, cast, false, func, not_, or_, true

from executor.store import runs

SortKey = Literal["created", "updated", "status", "user", "metric", "rows", "wall_s"]
REPORT_STEP = "final_report"  # the step id of a session's final report run (service.session.REPORT_STEP)


@dataclass(frozen=True)
class RunQuery:
    """Which runs, in which order, which page. `text` matches the prompt or anything in the plan (goal, target,
    SQL), case-insensitively; `task` is the session summary's task (classification, regression)."""

    user: str | None = None
    status: str | None = None
    text: str | None = None
    task: str | None = None
    top_level: bool = False
    sort: SortKey = "created"
    descending: bool = True
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True)
class RunPage:
    """One page of runs and how many match in all."""

    runs: list[Any]  # list[RunResult]
    total: int


def _summary(*path: str) -> Any:
    return runs.c.result[("summary", *path)]


def sort_column(key: SortKey) -> Any:
    """The SQL expression a sort key orders by."""
    numbers = {"metric": "metric_value", "rows": "rows", "wall_s": "elapsed_s"}
    if key in numbers:
        return _summary(numbers[key]).as_float()
    return {"created": runs.c.created, "updated": runs.c.updated, "status": runs.c.status, "user": runs.c.user}[key]


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def is_child() -> ColumnElement[bool]:
    """True for a run an OODA loop or a session's final report started."""
    ooda = runs.c.plan[("metadata", "ooda")].as_boolean()
    only_report = and_(runs.c.plan[("steps", 0, "id")].as_string() == REPORT_STEP,
                       runs.c.plan[("steps", 1, "id")].as_string().is_(None))
    return or_(func.coalesce(ooda, false()) == true(), func.coalesce(only_report, false()) == true())


def conditions(query: RunQuery) -> list[ColumnElement[bool]]:
    """The WHERE clauses of `query`."""
    out: list[ColumnElement[bool]] = []
    if query.user is not None:
        out.append(runs.c.user == query.user)
    if query.status is not None:
        out.append(runs.c.status == query.status)
    if query.task is not None:
        out.append(_summary("task").as_string() == query.task)
    if query.text:
        pattern = _like(query.text)
        out.append(or_(func.lower(runs.c.prompt).like(pattern, escape="\\"),
                       func.lower(cast(runs.c.plan, Text)).like(pattern, escape="\\")))
    if query.top_level:
        out.append(not_(is_child()))
    return out
