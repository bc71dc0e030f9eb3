"""Artifacts that flow between steps. A step's output field of one of these types feeds inputs of the same type;
`validate_plan` checks that the types match."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Task = Literal["classification", "regression"]


class TableArtifact(BaseModel):
    """A governed table written to the artifact store (Parquet). Data only ever enters through governance."""

    model_config = ConfigDict(extra="forbid")
    uri: str
    rows: int
    columns: list[str]
    key: str | None = Field(default=None, description="entity key column, if known")


class ModelArtifact(BaseModel):
    """A trained xgboost model (JSON at `uri`) and what is needed to score new rows exactly as in training."""

    model_config = ConfigDict(extra="forbid")
    uri: str
    task: Task
    target: str
    features: list[str]
    categories: dict[str, list[str]] = Field(default_factory=dict, description="categorical column -> levels")
    classes: list[str] = Field(
        default_factory=list,
        description="classification: the target's classes in label order (`skills.frame.target_level` text); "
                    "binary [negative, positive], multiclass sorted; empty for regression (and models saved "
                    "before classes were recorded: the data decides, as it did then)")
    params: dict[str, float | int | str] = Field(default_factory=dict)
    num_rounds: int = 0
    best_iteration: int | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="validation metrics at the end of training")
    history: dict[str, list[float]] = Field(default_factory=dict, description="validation metric per round")
    boost_seconds: float | None = Field(default=None, description="wall time of the boosting rounds alone (no "
                                        "startup, data loading or DMatrix building)")
    threshold: float | None = Field(default=None, description="binary classification: predict the positive class "
                                    "when its probability is >= this (chosen to maximise F1 on the validation rows)")
    backend: str = "xgboost"

    @property
    def positive(self) -> str | None:
        """The level a binary classifier predicts the probability of; None for multiclass and regression."""
        return self.classes[-1] if len(self.classes) == 2 else None

    @property
    def multiclass(self) -> bool:
        """A classifier with more than two classes: it predicts one probability per class."""
        return len(self.classes) > 2


class Figure(BaseModel):
    """A plot as inline SVG, ready for the HTML report and the dashboard."""

    model_config = ConfigDict(extra="forbid")
    title: str
    svg: str
