"""`explain`: SHAP values (xgboost `pred_contribs`), global importance and top drivers in plain English.

SHAP values are computed on a seeded sample of at most `SAMPLE_ROWS` rows, read from the stored table a batch at a
time, so the whole table is never held. Direction of a numeric feature is the sign of the correlation between its
value and its SHAP value ("higher tenure decreases churn risk"); for a categorical feature it is the level whose rows
get the largest mean SHAP value ("Month-to-month contract increases churn risk"). A binary model's outcome is its
positive level: "churn risk" for a yes/true/1 level, else "the chance that status is bad". A multiclass model has SHAP
values per class: a feature's importance is its mean |SHAP| averaged over the classes, and its direction is read for
the class it moves most ("Higher petal length increases the chance that species is virginica").
Loading and scoring the model: `boosting.saved_model`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pyarrow as pa
import xgboost as xgb
from pydantic import BaseModel, ConfigDict, Field

from skills.context import SkillContext
from skills.errors import SkillError
from skills.frame import Frame
from skills.library.boosting.saved_model import load_booster, model_frame, predict
from skills.library.boosting.tasks import SAMPLE_ROWS, StoredTable, sample_positions
from skills.registry import skill
from skills.types import ModelArtifact, TableArtifact, Task

Direction = Literal["increases", "decreases", "neutral"]
_BOOLEAN_LEVELS = {"yes", "no", "true", "false", "y", "n", "0", "1"}
_NEGATIONS = ("no ", "not ", "non ", "without ", "with ", "none")
MIN_LEVEL_SHARE = 0.01  # a level must cover 1% of the sample (and 5 rows) to be named as a driver


class ExplainInput(BaseModel):
    """A trained model and rows to explain it on."""

    model_config = ConfigDict(extra="forbid")
    model: ModelArtifact
    table: TableArtifact
    top_k: int = Field(default=10, ge=1)
    sample_rows: int = Field(default=2000, ge=10, le=SAMPLE_ROWS,
                             description=f"rows sampled for SHAP values (at most {SAMPLE_ROWS})")


class FeatureImportance(BaseModel):
    """Mean |SHAP| of a feature, and whether it pushes the prediction up or down."""

    model_config = ConfigDict(extra="forbid")
    feature: str
    importance: float
    direction: Direction
    level: str | None = Field(default=None, description="categorical level the direction refers to")
    target_class: str | None = Field(default=None,
                                     description="multiclass: the class whose probability the direction refers to")


class Driver(FeatureImportance):
    """A top feature with a one-line summary for people."""

    summary: str


class ExplainOutput(BaseModel):
    """Global importance of every feature (largest first) and the top drivers."""

    model_config = ConfigDict(extra="forbid")
    importance: list[FeatureImportance]
    drivers: list[Driver]
    rows: int = Field(description="rows the SHAP values were computed on")
    base_value: float = Field(description="the model's average output (margin) before any feature")


# ------------------------------------------------------------------------------------------------ sampling


def sample_table(table: pa.Table, rows: int, seed: int) -> pa.Table:
    """At most `rows` rows, drawn without replacement (seeded), in their original order (the rows that
    `StoredTable.sample` reads from a stored table)."""
    if table.num_rows <= rows:
        return table
    return table.take(pa.array(sample_positions(table.num_rows, rows, seed)))


# ------------------------------------------------------------------------------------------------ direction & text


def _numeric_direction(values: np.ndarray, shap: np.ndarray) -> Direction:
    ok = ~np.isnan(values)
    if ok.sum() < 3 or np.std(values[ok]) == 0 or np.std(shap[ok]) == 0:
        return "neutral"
    corr = float(np.corrcoef(values[ok], shap[ok])[0, 1])
    return "increases" if corr > 0 else "decreases" if corr < 0 else "neutral"


def _level_direction(codes: np.ndarray, shap: np.ndarray, levels: Sequence[str]) -> tuple[Direction, str | None]:
    """The level raising the prediction most (or, if none raises it, the one lowering it most)."""
    min_rows = max(5, int(MIN_LEVEL_SHARE * len(codes)))
    means = {}
    for code in np.unique(codes[~np.isnan(codes)]).astype(int):
        mask = codes == code
        if mask.sum() >= min_rows:
            means[levels[code]] = float(shap[mask].mean())
    if not means:
        return "neutral", None
    top = max(means, key=means.__getitem__)
    if means[top] > 0:
        return "increases", top
    bottom = min(means, key=means.__getitem__)
    return ("decreases", bottom) if means[bottom] < 0 else ("neutral", None)


def direction_of(frame: Frame, j: int, shap: np.ndarray) -> tuple[Direction, str | None]:
    """Direction of feature j from its values and SHAP values (numeric: correlation; categorical: best level)."""
    name = frame.features[j]
    if name in frame.categories:
        return _level_direction(frame.X[:, j], shap, frame.categories[name])
    return _numeric_direction(frame.X[:, j], shap), None


def _human(name: str) -> str:
    return name.replace("_", " ").strip()


def _is_binary(values: np.ndarray) -> bool:
    seen = set(np.unique(values[~np.isnan(values)]).tolist())
    return bool(seen) and seen <= {0.0, 1.0}


def outcome_phrase(target: str, task: Task, positive: str | None = None) -> str:
    """What a classifier's prediction is the chance of, in words: "churn risk" (a yes/true/1 positive level, or none
    known), "the chance that status is bad" (any other level); "predicted price" for regression."""
    name = _human(target).lower()
    if task != "classification":
        return f"predicted {name}"
    if positive is None or positive.strip().lower() in _BOOLEAN_LEVELS:
        return f"{name} risk"
    return f"the chance that {name} is {positive}"


def summary_line(feature: str, direction: Direction, level: str | None, target: str, task: Task,
                 binary: bool = False, positive: str | None = None) -> str:
    """One plain-English line, e.g. "Month-to-month contract increases churn risk"; `positive` is the level (or,
    multiclass, the class) whose chance the prediction is ("Higher income decreases the chance that status is
    bad")."""
    outcome = outcome_phrase(target, task, positive)
    if direction == "neutral":
        return f"{_human(feature).capitalize()} has no consistent effect on {outcome}"
    if level is not None and _reads_as_adjective(level):
        subject = f"{level} {_human(feature)}"  # "Month-to-month contract", "Fiber optic internet service"
    elif level is not None:
        return f"{_human(feature).capitalize()} = {level} {direction} {outcome}"
    elif binary:
        return f"{_human(feature).capitalize()} = 1 {direction} {outcome}"
    else:
        subject = f"Higher {_human(feature)}"
    verb = direction.removesuffix("s") if _plural(subject) else direction  # "charges increase", "tenure increases"
    return f"{subject[0].upper()}{subject[1:]} {verb} {outcome}"


def _reads_as_adjective(level: str) -> bool:
    """Whether "<level> <feature>" reads as English: not for yes/no levels or "No phone service"."""
    lowered = level.strip().lower()
    return bool(lowered) and lowered not in _BOOLEAN_LEVELS and not lowered.startswith(_NEGATIONS)


def _plural(subject: str) -> bool:
    """A rough English plural check on the last word ("charges" yes; "status", "class", "= 1" no)."""
    last = subject.split()[-1].lower()
    return last.endswith("s") and not last.endswith(("ss", "us", "is"))


# ---------------------------------------------------------------------------------------------------------- skill


def shap_values(booster: xgb.Booster, frame: Frame, model: ModelArtifact) -> tuple[np.ndarray, float]:
    """Per-row SHAP values and the (mean) base value, via xgboost's exact TreeSHAP: rows x features, or rows x
    classes x features for a multiclass model."""
    contribs = predict(booster, frame, model, pred_contribs=True)
    width = len(frame.features) + 1
    if contribs.ndim == 3 and contribs.shape[2] == width:  # multiclass: rows x classes x (features + bias)
        return contribs[:, :, :-1], float(contribs[:, :, -1].mean())
    if contribs.ndim != 2 or contribs.shape[1] != width:
        raise SkillError(f"explain cannot read this model's SHAP values (shape {contribs.shape})", skill="explain",
                         hint="explain a model trained by train_xgboost or tune")
    return contribs[:, :-1], float(contribs[:, -1].mean())


def rank_features(frame: Frame, shap: np.ndarray, classes: Sequence[str] = ()) -> list[FeatureImportance]:
    """Every feature with its mean |SHAP| and direction, most important first. Multiclass SHAP values (rows x
    classes x features): importance averaged over the classes, direction read for the class the feature moves most
    (`classes` names it)."""
    out = []
    for j, name in enumerate(frame.features):
        target_class = None
        if shap.ndim == 3:
            per_class = np.abs(shap[:, :, j]).mean(axis=0)
            k = int(np.argmax(per_class))
            column, importance = shap[:, k, j], float(per_class.mean())
            target_class = classes[k] if k < len(classes) else str(k)
        else:
            column, importance = shap[:, j], float(np.abs(shap[:, j]).mean())
        direction, level = direction_of(frame, j, column)
        out.append(FeatureImportance(feature=name, importance=importance,
                                     direction=direction if importance > 0 else "neutral", level=level,
                                     target_class=target_class))
    return sorted(out, key=lambda f: (-f.importance, f.feature))


def top_drivers(ranked: Sequence[FeatureImportance], frame: Frame, model: ModelArtifact, k: int) -> list[Driver]:
    """The k most important features that move the prediction, each with a summary line."""
    out = []
    for item in [r for r in ranked if r.importance > 0 and r.direction != "neutral"][:k]:
        binary = item.feature not in frame.categories and _is_binary(frame.X[:, frame.features.index(item.feature)])
        text = summary_line(item.feature, item.direction, item.level, model.target, model.task, binary,
                            item.target_class or model.positive)
        out.append(Driver(**item.model_dump(), summary=text))
    return out


@skill("explain", tags=("analysis",))
def explain(ctx: SkillContext, inp: ExplainInput) -> ExplainOutput:
    """Explain a trained XGBoost model: SHAP values on a sample of rows, global feature importance (mean |SHAP|),
    and the top drivers with their direction and a plain-English summary ("Month-to-month contract increases churn
    risk", worded for the model's positive level or, multiclass, for the class a feature moves most). Use it to
    answer "why" questions about the model's predictions."""
    booster = load_booster(ctx.artifacts, inp.model.uri, "explain")
    source = StoredTable(ctx.artifacts, inp.table.uri)  # only the sampled rows of the model's columns are held
    present = [name for name in inp.model.features if name in source.schema.names]  # model_frame names the rest
    table = source.sample(present, inp.sample_rows, ctx.settings.seed)
    ctx.progress(f"computing SHAP values on {table.num_rows} rows", done=0, total=table.num_rows, unit="rows")
    frame = model_frame(table, inp.model, "explain")
    shap, base_value = shap_values(booster, frame, inp.model)
    ranked = rank_features(frame, shap, inp.model.classes)
    ctx.progress(f"explained {table.num_rows} rows", done=table.num_rows, total=table.num_rows, unit="rows")
    return ExplainOutput(importance=ranked, drivers=top_drivers(ranked, frame, inp.model, inp.top_k),
                         rows=table.num_rows, base_value=base_value)
