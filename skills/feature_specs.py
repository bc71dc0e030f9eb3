"""Declarative feature specs: the agent's feature "code" is data of these types, never Python.

The `features` skill compiles them to one governed SQL statement; the planner's OODA loop writes them and checks an
LLM's proposals against them. Not a skill: any layer above `skills` may use them.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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

    def operands(self) -> list[str]:
        """The base columns or earlier features the spec reads."""
        return [self.left, self.right]


class _ColumnSpec(_Spec):
    column: str = Field(description="base column (or earlier feature) the feature is computed from")

    def operands(self) -> list[str]:
        """The base columns or earlier features the spec reads."""
        return [self.column]


class EncodeSpec(_ColumnSpec):
    """Category encoding of a base column: share of rows with the same value (the count per level over the row
    count), or one 0/1 column per frequent level.

    Fitted (the `features` skill fills these from the training rows, so that scoring new rows encodes them as the
    model saw them; leave them unset): `levels` (one-hot), `shares` and `null_share` (frequency; a level not in
    `shares` gets 0)."""

    kind: Literal["encode"] = "encode"
    method: Literal["frequency", "one_hot"] = "frequency"
    levels: list[str] | None = Field(default=None, description="fitted one-hot levels (leave unset)")
    shares: dict[str, float] | None = Field(default=None, description="fitted share per level (leave unset)")
    null_share: float | None = Field(default=None, description="fitted share of null values (leave unset)")


class MissingSpec(_ColumnSpec):
    """1 where `column` is null, else 0: "not recorded" as a signal of its own."""

    kind: Literal["missing"] = "missing"


class BinSpec(_ColumnSpec):
    """Index of the bin `column` falls in: 0 below the first edge, k at or above the k-th (null stays null). The
    edges are fixed (`edges`) or the inner quantiles of the column (`quantiles` equal-count bins, computed from the
    governed rows when the features are built). Fitted: `quantile_edges`, the edges the training rows gave
    `quantiles` (leave unset)."""

    kind: Literal["bin"] = "bin"
    edges: list[float] | None = Field(default=None, min_length=1, max_length=50)
    quantiles: int | None = Field(default=None, ge=2, le=50)
    quantile_edges: list[float] | None = Field(default=None, max_length=50, description="fitted (leave unset)")

    @model_validator(mode="after")
    def _one_way(self) -> BinSpec:
        if (self.edges is None) == (self.quantiles is None):
            raise ValueError("give either `edges` (fixed bin edges) or `quantiles` (number of equal-count bins)")
        return self


DATE_PARTS = ("year", "quarter", "month", "day", "dayofweek", "dayofyear", "hour")


class DatePartSpec(_ColumnSpec):
    """A calendar part of a DATE/TIMESTAMP column (or of a text column holding dates; unparseable text -> null)."""

    kind: Literal["date_part"] = "date_part"
    part: Literal["year", "quarter", "month", "day", "dayofweek", "dayofyear", "hour"] = "month"


class GroupSpec(_ColumnSpec):
    """Aggregate of the numeric `value` over the rows sharing this row's level of `column` (the group's mean,
    extremes or spread); pair it with a `difference` to get a value relative to its group."""

    kind: Literal["group"] = "group"
    value: str
    agg: Literal["avg", "min", "max", "stddev"] = "avg"
    groups: dict[str, float | None] | None = Field(default=None, description="fitted aggregate per level of `column` "
                                                   "in the training rows (leave unset); a level not in it: null")
    null_group: float | None = Field(default=None, description="fitted aggregate of the rows whose `column` is null")

    def operands(self) -> list[str]:
        """The base columns or earlier features the spec reads."""
        return [self.column, self.value]


RelatedSpec = WindowSpec | LagSpec | TrendSpec
BaseSpec = ArithmeticSpec | EncodeSpec | MissingSpec | BinSpec | DatePartSpec | GroupSpec
"""Specs computed from the base rows alone: no join, no key, no cutoff needed."""
FeatureSpec = Annotated[WindowSpec | LagSpec | TrendSpec | ArithmeticSpec | EncodeSpec | MissingSpec | BinSpec |
                        DatePartSpec | GroupSpec, Field(discriminator="kind")]
