"""`result.json`: what one session (a run plus its OODA iterations) produced, as a typed, published document.

`SessionSummary` is the model the file is written from; `agentml schema result` prints its JSON Schema, so tools can
read result.json without reading our code. Iterations are the planner's own `Iteration` model (without what the loop
oriented on, which stays in the run store).
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from planner.ooda import CandidateScore
from planner.roles import Exclusion
from service.model_versions import MlflowExport


class Driver(BaseModel):
    """One driver of the final model's predictions (from the explain step)."""

    model_config = ConfigDict(extra="forbid")
    feature: str | None = None
    importance: float | None = None
    direction: str | None = None
    summary: str | None = None
    level: str | None = None


class MetricSummary(BaseModel):
    """One number and how it was measured: {name, value, protocol}."""

    model_config = ConfigDict(extra="forbid")
    name: str
    value: float | None = None
    protocol: str = Field(description='e.g. "5-fold stratified CV, seed 0" or "validation (used for tuning)"')


class IterationSummary(BaseModel):
    """One OODA iteration: what it saw, tried and kept, and the cross-validated metric before and after."""

    model_config = ConfigDict(extra="forbid")
    index: int
    candidates: list[CandidateScore] = Field(default_factory=list)
    accepted: list[str] = Field(default_factory=list, description="names of the accepted candidate groups")
    accepted_features: list[str] = Field(default_factory=list)
    metric_name: str = ""
    baseline_value: float | None = None
    metric_value: float | None = None
    observed: list[dict[str, Any]] = Field(default_factory=list, description="the worst residual slices")
    ideas: list[str] = Field(default_factory=list, description='what suggested each candidate: "slice X -> idea Y"')
    why: str = ""
    race: dict[str, Any] = Field(default_factory=dict)
    run_ids: list[str] = Field(default_factory=list)
    seconds: float = 0.0


class ScoredRows(BaseModel):
    """Train-then-score: where the final model's scores of the rows the question asked about are."""

    model_config = ConfigDict(extra="forbid")
    table: str = Field(description="the table whose rows were scored (as the principal may see them)")
    rows: int = Field(description="rows scored")
    uri: str = Field(description="artifact URI of the scores (Parquet: id, score, prediction, reasons)")
    run_id: str = Field(description="the run that scored them")
    step: str = Field(description="the step that scored them")


class SessionSummary(BaseModel):
    """The `result.json` document of `agentml run` / `agentml demo`."""

    model_config = ConfigDict(extra="forbid")
    goal: str
    task: str | None = Field(default=None, description="classification or regression; null when no model was built")
    target: str | None = None
    metric_name: str | None = None
    metric_value: float | None = Field(default=None, description="the final model's cross-validated metric")
    baseline_value: float | None = Field(default=None, description="the first model's cross-validated metric")
    metric_protocol: str = Field(default="cross-validated (evaluate skill)",
                                 description='how metric_value was measured, e.g. "5-fold stratified CV, seed 0"')
    metric: MetricSummary | None = Field(default=None, description="the headline: the final model's metric_value "
                                         "with its protocol (k-fold cross-validation on the governed rows)")
    validation: MetricSummary | None = Field(default=None, description="the same metric on the validation rows "
                                             "that chose the hyperparameters, rounds and threshold: optimistic, "
                                             "never a held-out estimate")
    threshold: float | None = Field(default=None, description="binary classification: the decision threshold "
                                    "(chosen to maximise F1 on the validation rows)")
    iterations: list[IterationSummary] = Field(default_factory=list)
    accepted_features: list[str] = Field(default_factory=list)
    stopped: str = Field(default="", description="why the OODA loop stopped")
    drivers: list[Driver] = Field(default_factory=list)
    features: list[str] = Field(default_factory=list, description="the final model's features")
    excluded: list[Exclusion] = Field(default_factory=list, description="columns of the table left out of "
                                      "training, each with its reason (from the plan)")
    rows: int | None = Field(default=None, description="rows of the table the final model was trained and "
                             "cross-validated on (as the principal may see them)")
    run_ids: list[str] = Field(default_factory=list,
                               description="the first run, then every OODA run, then the final report's run")
    elapsed_s: float = 0.0
    report: str | None = Field(default=None, description="the final report: its artifact URI in the run store, the "
                                "path of report.html in the CLI's output folder")
    model: str | None = Field(default=None, description="the final model (null when none was built): its artifact "
                               "URI in the run store, the path of model.json in the CLI's output folder")
    scores: ScoredRows | None = Field(default=None, description="train-then-score: the final model's scores of the "
                                      "rows the question asked about (null when it asked for no scores)")
    mlflow: MlflowExport | None = Field(default=None, description="the export of the model to MLflow (null when "
                                        "AGENTML_MLFLOW_URI is unset)")


SCHEMAS: dict[str, type[BaseModel]] = {"result": SessionSummary}
