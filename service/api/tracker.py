"""The runs table as an experiment tracker: the query (filters, sort, page) that `GET /v1/runs` and the dashboard's
runs page share, and one page of runs with each parent's OODA and report runs beside it.

Filtering, sorting and paging run in the store's SQL (`executor.RunQuery`), so a page costs the same with ten runs
or ten thousand; only the page's rows (and their children) are read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from executor import RunQuery, RunStatus, RunStore
from service.api.auth import ApiUser
from service.api.errors import ApiError
from service.api.models import TEXT, RunList, RunSummary
from service.api.views import summaries, summary

SortKey = Literal["created", "updated", "status", "user", "metric", "rows", "wall_s"]
PAGE_SIZE = 50


class RunsQuery(BaseModel):
    """Which runs to list and how (the query string of `GET /v1/runs` and of the dashboard's runs page)."""

    model_config = ConfigDict(extra="forbid")
    sort: SortKey = Field("created", description="created, updated, status, user, metric (the session's "
                          "cross-validated metric), rows, wall_s")
    order: Literal["asc", "desc"] = "desc"
    status: RunStatus | None = None
    q: str | None = Field(None, min_length=1, max_length=200, pattern=TEXT,
                          description="words in the goal, the prompt or the plan (target, SQL), any case")
    task: Literal["classification", "regression"] | None = None
    user: str | None = Field(None, min_length=1, max_length=200, pattern=TEXT,
                             description="only this user's runs (admins)")
    group: bool = Field(False, description="true: only sessions' first runs; their OODA and report runs are "
                        "listed in `children` (the dashboard's nesting)")
    limit: int = Field(PAGE_SIZE, ge=1, le=500)
    offset: int = Field(0, ge=0, le=10_000_000)


@dataclass(frozen=True)
class RunsPage:
    """One page: its runs, each parent's children (summaries), the total and the query it answers."""

    runs: list[RunSummary]
    children: dict[str, list[RunSummary]]
    total: int
    query: RunsQuery

    def as_list(self) -> RunList:
        return RunList(runs=self.runs, total=self.total, limit=self.query.limit, offset=self.query.offset)


def owner_filter(user: ApiUser, owner: str | None) -> str | None:
    """Whose runs `user` lists: their own; an admin everyone's, or `owner`'s. 403 for a non-admin naming another."""
    if owner is not None and not user.may_see(owner):
        raise ApiError(403, "forbidden", "only admins may list another user's runs", hint="leave `user` out")
    return owner if user.admin else user.user


def store_query(user: ApiUser, query: RunsQuery) -> RunQuery:
    return RunQuery(user=owner_filter(user, query.user), status=query.status, text=query.q, task=query.task,
                    top_level=query.group, sort=query.sort, descending=query.order == "desc", limit=query.limit,
                    offset=query.offset)


def runs_page(store: RunStore, user: ApiUser, query: RunsQuery) -> RunsPage:
    """The page `query` asks for, as `user` may see it (a parent's children only when of the same owner)."""
    page = store.query_runs(store_query(user, query))
    children: dict[str, list[RunSummary]] = {}
    if query.group:
        wanted = {r.id: (r.user, summary(r).children) for r in page.runs}
        kids = {k.id: k for k in store.get_runs(c for _, ids in wanted.values() for c in ids)}
        children = {pid: [summary(kids[c]).model_copy(update={"part_of": pid}) for c in ids
                          if c in kids and kids[c].user == owner] for pid, (owner, ids) in wanted.items()}
    return RunsPage(summaries(page.runs), children, page.total, query)
