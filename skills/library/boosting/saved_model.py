"""A saved model: loading its booster, the split convention written into it, its design matrix and predictions.

Shared by `evaluate`, `explain` and `residuals`, so that each scores a ModelArtifact exactly as training encoded it.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import xgboost as xgb

from skills.errors import SkillError
from skills.frame import Frame, build_frame, encode_target
from skills.library.boosting.data import HashSplit, holdout_split
from skills.types import ModelArtifact

if TYPE_CHECKING:
    from skills.artifacts import ArtifactStore

SPLIT_ATTR = "agentml_split"  # booster attribute holding `Prepared.split_info()`


def load_booster(artifacts: ArtifactStore, uri: str, skill: str | None = None) -> xgb.Booster:
    """The booster saved at `uri` in the artifact store, set up to predict on this machine's CPU (a model trained on
    GPU workers is scored and explained here)."""
    try:
        booster = xgb.Booster()
        booster.load_model(bytearray(artifacts.get_bytes(uri)))
        booster.set_param({"device": "cpu"})
    except (OSError, xgb.core.XGBoostError) as exc:
        raise SkillError(f"cannot load the model at {uri}: {type(exc).__name__}", skill=skill,
                         hint="pass the `model` output of train_xgboost or tune") from None
    return booster


def trained_on(booster: xgb.Booster, rows: int) -> bool:
    """True when a table of `rows` rows is the one the model was trained on (its split convention says so); a
    different row count means new data, all of it unseen."""
    info = json.loads(booster.attr(SPLIT_ATTR) or "{}")
    return bool(info) and int(info["rows"]) == rows


def validation_rows(table: pa.Table, model: ModelArtifact, booster: xgb.Booster) -> np.ndarray:
    """Rows of `table` that were the model's validation split; every row when `table` is not the training table
    (`trained_on`)."""
    if not trained_on(booster, table.num_rows):
        return np.arange(table.num_rows)
    info = json.loads(booster.attr(SPLIT_ATTR) or "{}")
    if info.get("rule") == "hash":  # a streamed table's split (`data.HashSplit`), computed from each row alone
        split = HashSplit.from_info(info)
        if not set(split.hashed) <= set(table.column_names):
            return np.arange(table.num_rows)
        return np.flatnonzero(split.is_valid(table))
    y = encode_target(table.column(model.target), model.task, model.classes or None)
    return holdout_split(y, model.task, float(info["valid_fraction"]), int(info["seed"]))[1]


def iteration_range(model: ModelArtifact, booster: xgb.Booster) -> tuple[int, int]:
    """Rounds to predict with: up to the best iteration when training stopped early, else all (0, 0). A linear
    model has no rounds to choose from: all."""
    if model.best_iteration is None or model.params.get("booster") == "gblinear":
        return (0, 0)
    return (0, min(model.best_iteration + 1, booster.num_boosted_rounds()))


def model_frame(table: pa.Table, model: ModelArtifact, skill_name: str, with_target: bool = False) -> Frame:
    """The design matrix exactly as in training (the model's features and categorical levels)."""
    needed = model.features + ([model.target] if with_target else [])
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise SkillError(f"the table lacks column(s) the model needs: {', '.join(missing)}", skill=skill_name,
                         hint="pass the table the model was trained on (or one with the same columns)")
    return build_frame(table, model.features, model.target if with_target else None, model.task,
                       categories=model.categories, classes=model.classes or None)


def predict(booster: xgb.Booster, frame: Frame, model: ModelArtifact, **kwargs: object) -> np.ndarray:
    """booster.predict on the frame, with the model's iteration range; feature mismatches become SkillErrors."""
    try:
        return booster.predict(frame.dmatrix(), iteration_range=iteration_range(model, booster), **kwargs)
    except (ValueError, xgb.core.XGBoostError) as exc:
        raise SkillError(f"the model cannot score this table: {str(exc).splitlines()[0]}",
                         hint="pass the ModelArtifact and table of the same run") from None
