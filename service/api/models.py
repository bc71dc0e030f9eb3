"""Request and response bodies of the API (pydantic, so the OpenAPI schema documents them)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from executor import RunEvent, RunStatus, StepStatus
from governance import AuditRecord
from planner.budget import Budget
from planner.preview import Preview
from service.compute import ComputeChoice
from skills.plan import Plan

# printable text only: NUL and other control characters cannot be stored in PostgreSQL text and mean nothing here
TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
RUN_ID = r"^[A-Za-z0-9_-]{1,64}$"
PlannerName = Literal["auto", "rules", "llm"]
ColumnName = Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT)]
COLUMNS_LIMIT = 500


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanRequest(_In):
    """A goal in plain words; the planner turns it into a validated plan over what the caller may see."""

    prompt: str = Field(min_length=1, max_length=4000, pattern=TEXT,
                        examples=["Build a churn model and tell me why users are leaving"])
    target: str | None = Field(default=None, min_length=1, max_length=200, pattern=TEXT,
                               description="target column (`COL` or `table.COL`) when the prompt is ambiguous")
    budget: Budget | None = Field(default=None, description="lower your quota for this plan (never raises it)")
    planner: PlannerName = Field(default="auto", description="auto = the LLM when one is configured, else rules")
    include: list[ColumnName] = Field(default_factory=list, max_length=COLUMNS_LIMIT,
                                      description="columns to train on that the planner would leave out")
    exclude: list[ColumnName] = Field(default_factory=list, max_length=COLUMNS_LIMIT,
                                      description="columns to leave out of training")


class PlanResponse(BaseModel):
    """A validated plan, what it will read and cost, and which planner wrote it."""

    plan: Plan
    preview: Preview
    planner: Literal["rules", "llm"]


class RunRequest(_In):
    """Start a run: give a validated plan (from POST /v1/plans, maybe edited) or a prompt to plan first."""

    plan: Plan | None = None
    prompt: str | None = Field(default=None, min_length=1, max_length=4000, pattern=TEXT)
    target: str | None = Field(default=None, min_length=1, max_length=200, pattern=TEXT)
    budget: Budget | None = None
    planner: PlannerName = "auto"
    include: list[ColumnName] = Field(default_factory=list, max_length=COLUMNS_LIMIT,
                                      description="with `prompt`: columns to train on that the planner would leave out")
    exclude: list[ColumnName] = Field(default_factory=list, max_length=COLUMNS_LIMIT,
                                      description="with `prompt`: columns to leave out of training")
    iterations: int = Field(default=0, ge=0, le=5, description="OODA iterations after the run")
    compute: ComputeChoice | None = Field(default=None, description="training workers, CPUs per worker and GPUs "
                                          "for this run (unset: the server's settings); kept with the run")

    @model_validator(mode="after")
    def _one_source(self) -> RunRequest:
        if (self.plan is None) == (self.prompt is None):
            raise ValueError("give exactly one of `plan` and `prompt`")
        if self.plan is not None and (self.include or self.exclude):
            raise ValueError("`include` and `exclude` go with a `prompt`; a given plan's steps already say what "
                             "each model trains on")
        return self


class Links(BaseModel):
    """Where to look next."""

    self: str
    events: str
    report: str
    logs: str
    dashboard: str


class RunCreated(BaseModel):
    """The id of the new run, its first status and where to follow it."""

    id: str
    status: RunStatus
    links: Links


MetricProtocol = Literal["cross-validated", "holdout", "validation"]


class Metric(BaseModel):
    """The run's headline metric, named for what it is: cross-validated when an evaluate step ran (with the same
    metric on the holdout rows beside it), else the model's validation metric."""

    name: str
    value: float
    protocol: MetricProtocol = "validation"
    folds: int | None = Field(default=None, description="cross-validation folds (protocol cross-validated)")
    holdout: float | None = Field(default=None, description="the same metric on the held-out validation rows")
    label: str = Field(default="", description='what the value is, e.g. "cross-validated auc (5-fold)"')


class RunFacts(BaseModel):
    """The columns of the runs table besides the headline metric: the final model and what it cost."""

    task: str | None = None
    target: str | None = None
    rows: int | None = Field(default=None, description="rows the final model was trained and cross-validated on")
    rounds: int | None = Field(default=None, description="boosting rounds of the final model")
    eta: float | None = Field(default=None, description="learning rate of the final model")
    wall_s: float | None = Field(default=None, description="seconds from start to end (the whole session)")


class JobView(BaseModel):
    """The Ray job of a run submitted to a cluster, as Ray reports it."""

    id: str
    status: Literal["PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED"]
    message: str = ""


class RunSummary(BaseModel):
    """One line of the runs list."""

    id: str
    user: str
    status: RunStatus
    created: datetime
    updated: datetime
    prompt: str
    backend: str
    job_id: str | None = None
    metric: Metric | None = None
    steps_done: int
    steps_total: int
    error: str | None = None
    hint: str | None = None
    part_of: str | None = Field(default=None, description="the run whose OODA loop started this one")
    facts: RunFacts = Field(default_factory=RunFacts)
    children: list[str] = Field(default_factory=list, description="the runs this run's session started (OODA "
                                "iterations, final report), oldest first")


class StepView(BaseModel):
    """One step of a run: status, timings, outputs (JSON), and why it failed."""

    id: str
    skill: str
    status: StepStatus
    started: datetime | None = None
    finished: datetime | None = None
    duration_s: float | None = None
    outputs: dict[str, Any] | None = None
    error: str | None = None
    hint: str | None = None


class RunDetail(RunSummary):
    """A run with its plan, every step, its summary result and (for Ray jobs) the job."""

    plan: Plan
    steps: list[StepView]
    result: dict[str, Any] = Field(default_factory=dict)
    job: JobView | None = None
    links: Links
    settings: dict[str, Any] | None = Field(default=None, description="what the run runs with: workers, CPUs per "
                                            "worker, GPUs (the request's `compute` over the server's settings)")


class RunList(BaseModel):
    """One page of runs in the order asked for (default: newest first), and how many match in all."""

    runs: list[RunSummary]
    total: int | None = Field(default=None, description="runs matching the filters (all pages)")
    limit: int | None = None
    offset: int = 0


class EventList(BaseModel):
    """Events of a run (the SSE stream sends the same objects one by one)."""

    events: list[RunEvent]


class SkillView(BaseModel):
    """A skill of the registry with its input and output JSON schemas."""

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    uses_ray: bool


class SkillList(BaseModel):
    skills: list[SkillView]


class CatalogView(BaseModel):
    """Tables and columns (with types) the caller may see; masked columns show their masked type."""

    tables: dict[str, dict[str, str]]


class AuditList(BaseModel):
    """Governance decisions, oldest first."""

    records: list[AuditRecord]


class Me(BaseModel):
    """Who the token says you are."""

    user: str
    roles: list[str]
    attributes: dict[str, Any]
    admin: bool
    budget: Budget


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    """`ready` when every check says ok; else each check says what is wrong."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, str]
    runner: str
