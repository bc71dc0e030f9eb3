"""Declarative feature specs: the agent's feature "code" is data of these types, never Python.

The `features` skill compiles them to one governed SQL statement; the planner's OODA loop writes them and checks an
LLM's proposals against them. Not a skill: any layer above `skills` may use them.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"  # also a valid xgboost feature name (no [, ] or <)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=_NAME, description="name of the new column")


class _RelatedSpec(_Spec):
    table: str = Field(description="related table with one row per entity and time")
    key: str = Field(description="column of the related table that matches the base query's key")
    time: str = Field(description="DATE/TIMESTAMP column of the related table")
    column: str = Field(description="column to aggregate")


class WindowSpec(_RelatedSpec):
    """Aggregate of `column` over related rows with time in [cutoff - offset - window, cutoff - offset)."""

    kind: Literal["window"] = "window"
    agg: Literal["avg", "sum", "min", "max", "count", "stddev"] = "avg"
    window_days: int | None = Field(default=90, gt=0, description="window length; null = all history")
    offset_days: int = Field(default=0, description="gap between the window's end and the cutoff (>= 0)")


class LagSpec(_RelatedSpec):
    """Value of `column` in the `periods`-th most recent related row before the cutoff."""

    kind: Literal["lag"] = "lag"
    periods: int = Field(default=1, description="1 = the last row before the cutoff")


class TrendSpec(_RelatedSpec):
    """Average of `column` over the last `window_days` before the cutoff minus its average over earlier history."""

    kind: Literal["trend"] = "trend"
    window_days: int = Field(default=90, gt=0)


class ArithmeticSpec(_Spec):
    """`left` (op) `right` over base columns or earlier features; a ratio is null where `right` is 0."""

    kind: Literal["ratio", "difference", "sum", "product"]
    left: str
    right: str


class EncodeSpec(_Spec):
    """Category encoding of a base column: share of rows with the same value, or one 0/1 column per frequent level."""

    kind: Literal["encode"] = "encode"
    column: str
    method: Literal["frequency", "one_hot"] = "frequency"


RelatedSpec = WindowSpec | LagSpec | TrendSpec
FeatureSpec = Annotated[WindowSpec | LagSpec | TrendSpec | ArithmeticSpec | EncodeSpec, Field(discriminator="kind")]
