"""`score`: a trained model applied to new rows, with each row's top reasons (production scoring).

The rows come from one governed query (the principal's row filters, masks and denials apply: she scores only what
she may see), with the feature specs the model was trained on computed over them in the same governed statement
(`features`), as fitted on the training rows: one-hot levels, quantile edges, level shares and group aggregates come
from the rows the model learnt from, not from the rows being scored (up to 1,000 levels per encoding; a level the
training rows did not have gets share 0 and a null group aggregate). The scored table is never held by the process
that runs the step: with Ray up, Ray Data reads it in batches (`map_batches`) and every worker task loads the model
from the artifact store and scores its batches; the result is written as Parquet parts under `<run>/<step>/scores/`.
Without Ray the same `Scorer` runs batch by batch in process.

Each scored row gets `score` (binary: the probability of the positive class; multiclass: the probability of the
predicted class; regression: the predicted value), `prediction` (the predicted class; null for regression) and
`reasons`: the `top_k` features with the largest absolute SHAP contribution (xgboost `pred_contribs`) to that row's
prediction (for a multiclass model, to the predicted class's margin), with the row's value of the feature and the
signed contribution.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from skills.context import SkillContext
from skills.errors import SkillError
from skills.feature_specs import FeatureSpec
from skills.frame import build_frame
from skills.library.features import FeaturesInput, features, features_reads
from skills.library.query import save_governed
from skills.registry import skill
from skills.sql import Reads, sql_reads
from skills.types import ModelArtifact, TableArtifact

if TYPE_CHECKING:
    import xgboost as xgb

    from skills.artifacts import ArtifactStore

BATCH_ROWS = 16_384
PREVIEW_ROWS = 10
REASON = pa.struct([("feature", pa.string()), ("value", pa.string()), ("contribution", pa.float64())])


class ScoreInput(BaseModel):
    """A trained model and the governed rows to score with it (plus the feature specs it was trained with)."""

    model_config = ConfigDict(extra="forbid")
    model: ModelArtifact
    sql: str = Field(description="one SELECT giving the rows to score (DuckDB dialect); governance rewrites it")
    key: str | None = Field(default=None, description="entity id column, kept beside each score")
    specs: list[FeatureSpec] = Field(default_factory=list, description="the feature specs the model was trained "
                                     "with, computed over the rows to score")
    cutoff: str | None = Field(default=None, description="the specs' cutoff: an ISO date or a column of the rows")
    top_k: int = Field(default=3, ge=1, le=10, description="reasons per row")


class ScoreOutput(BaseModel):
    """Where the scores are, how many rows were scored, and the first few of them."""

    model_config = ConfigDict(extra="forbid")
    scores: TableArtifact
    rows: int
    preview: list[dict[str, Any]] = Field(default_factory=list, description=f"the first {PREVIEW_ROWS} scored rows")


def score_reads(inp: ScoreInput) -> Reads:
    """`reads=` hook: the rows' query plus what the feature specs read."""
    if inp.specs:
        return features_reads(FeaturesInput(base_sql=inp.sql, key=inp.key, specs=inp.specs, cutoff=inp.cutoff))
    return sql_reads(inp.sql)


# ------------------------------------------------------------------------------------------------------- scoring


def _label(classes: Sequence[str], index: np.ndarray) -> list[str | None]:
    return [classes[i] if i < len(classes) else str(i) for i in index.tolist()]


def _value_text(column: pa.ChunkedArray | pa.Array) -> list[str | None]:
    return [None if v is None else str(v) for v in column.to_pylist()]


@dataclass
class Scorer:
    """map_batches function: a batch of rows (pyarrow) -> id, score, prediction and top reasons. The booster is
    loaded from the artifact store on first use, on the worker that scores the batch."""

    artifacts: ArtifactStore
    model: ModelArtifact
    key: str | None
    top_k: int
    _booster: xgb.Booster | None = field(default=None, init=False, repr=False)

    def booster(self) -> xgb.Booster:
        if self._booster is None:
            from skills.library.boosting.saved_model import load_booster

            self._booster = load_booster(self.artifacts, self.model.uri, "score")
            self._booster.set_param({"nthread": 1})
        return self._booster

    def __call__(self, batch: pa.Table) -> pa.Table:
        from skills.library.boosting.saved_model import predict

        model = self.model
        frame = build_frame(batch, model.features, None, model.task, categories=model.categories,
                            classes=model.classes or None)
        predicted = predict(self.booster(), frame, model)
        contribs = predict(self.booster(), frame, model, pred_contribs=True)
        score, prediction, picked = self._outputs(predicted, contribs)
        columns: dict[str, Any] = {}
        if self.key is not None:
            columns[self.key] = batch.column(self.key)
        columns["score"] = pa.array(score, pa.float64())
        columns["prediction"] = pa.array(prediction, pa.string())
        columns["reasons"] = self._reasons(batch, picked)
        return pa.table(columns)

    def _outputs(self, predicted: np.ndarray, contribs: np.ndarray) -> tuple[np.ndarray, list[str | None], np.ndarray]:
        """Score, predicted class and the SHAP contributions (rows x features) of what was predicted."""
        rows, width = predicted.shape[0], len(self.model.features)
        if contribs.ndim == 3:  # multiclass: rows x classes x (features + bias); reasons for the predicted class
            index = np.argmax(predicted, axis=1)
            return (predicted[np.arange(rows), index], _label(self.model.classes, index),
                    contribs[np.arange(rows), index, :width])
        if self.model.task == "classification":
            index = (predicted >= 0.5).astype(int)
            classes = self.model.classes or ["0", "1"]
            return predicted, _label(classes, index), contribs[:, :width]
        return predicted, [None] * rows, contribs[:, :width]

    def _reasons(self, batch: pa.Table, contribs: np.ndarray) -> pa.Array:
        """Each row's `top_k` features by |contribution|, with the row's value and the signed contribution."""
        k = min(self.top_k, contribs.shape[1])
        top = np.argsort(-np.abs(contribs), axis=1, kind="stable")[:, :k]
        values = {name: _value_text(batch.column(name)) for name in self.model.features}
        reasons = [[{"feature": self.model.features[j], "value": values[self.model.features[j]][i],
                     "contribution": round(float(contribs[i, j]), 6)} for j in top[i]]
                   for i in range(contribs.shape[0])]
        return pa.array(reasons, pa.list_(REASON))


def _check_columns(table: TableArtifact, model: ModelArtifact, key: str | None) -> None:
    missing = [c for c in model.features if c not in table.columns]
    if missing:
        raise SkillError(f"the rows to score lack column(s) the model needs: {', '.join(missing)}", skill="score",
                         hint="score a table with the columns the model was trained on (the model's features: "
                              f"{', '.join(model.features)})", missing=missing)
    if key is not None and key not in table.columns:
        raise SkillError(f"the id column {key!r} is not in the rows to score", skill="score",
                         hint="select it in the query, or leave `key` out")


def _score_ray(ctx: SkillContext, table: TableArtifact, scorer: Scorer, columns: list[str], key: str) -> None:
    """Ray Data reads the rows in batches; worker tasks score them and write the Parquet parts."""
    from skills.library.boosting.stream import read

    fs, path = ctx.artifacts.filesystem_path(key)
    scored = read(ctx.artifacts, table.uri, columns).map_batches(scorer, batch_format="pyarrow",
                                                                 batch_size=BATCH_ROWS)
    scored.write_parquet(path, filesystem=fs)


def _score_local(ctx: SkillContext, table: TableArtifact, scorer: Scorer, columns: list[str], key: str) -> None:
    """The same scorer, batch by batch in this process (no Ray): one Parquet part per batch."""
    for i, batch in enumerate(ctx.artifacts.dataset(table.uri).to_batches(columns=columns, batch_size=BATCH_ROWS)):
        ctx.artifacts.put_table(f"{key}/part-{i:05d}.parquet", scorer(pa.Table.from_batches([batch])))


def _rows_to_score(ctx: SkillContext, inp: ScoreInput) -> TableArtifact:
    """The governed rows, with the model's feature specs computed over them when it has any."""
    if inp.specs:
        return features(ctx, FeaturesInput(base_sql=inp.sql, key=inp.key, specs=inp.specs, cutoff=inp.cutoff)).table
    return save_governed(ctx, inp.sql, name="rows", key=inp.key, skill_name="score")


def preview_rows(artifacts: ArtifactStore, uri: str, rows: int = PREVIEW_ROWS) -> list[dict[str, Any]]:
    """The first `rows` scored rows (read from the first Parquet parts only)."""
    return artifacts.dataset(uri).head(rows).to_pylist()


@skill("score", uses_ray=True, reads=score_reads, tags=("model",))
def score(ctx: SkillContext, inp: ScoreInput) -> ScoreOutput:
    """Score new rows with a trained model: read them with one governed query (`sql`; the principal's row filters
    and masks apply), compute the model's feature specs over them, predict in batches on Ray workers, and give every
    row its score, predicted class and top reasons (the `top_k` features with the largest SHAP contribution to that
    row's prediction, signed). Writes the scores as Parquet; use it to answer "which customers will churn"."""
    ctx.progress("reading the rows to score through governance", done=0, unit="rows")
    table = _rows_to_score(ctx, inp)
    _check_columns(table, inp.model, inp.key)
    columns = list(dict.fromkeys([*([inp.key] if inp.key else []), *inp.model.features]))
    ctx.progress(f"scoring {table.rows} rows", done=0, total=table.rows, unit="rows")
    scorer, key = Scorer(ctx.artifacts, inp.model, inp.key, inp.top_k), ctx.key("scores")
    if table.rows == 0:
        ctx.artifacts.put_table(f"{key}/part-00000.parquet", scorer(pa.table(
            {c: pa.array([], ctx.artifacts.dataset(table.uri).schema.field(c).type) for c in columns})))
    elif ctx.settings.compute == "ray":
        _score_ray(ctx, table, scorer, columns, key)
    else:
        _score_local(ctx, table, scorer, columns, key)
    uri = ctx.artifacts.uri(key)
    rows = ctx.artifacts.dataset(uri).count_rows()
    ctx.progress(f"scored {rows} rows", done=rows, total=rows, unit="rows")
    return ScoreOutput(scores=TableArtifact(uri=uri, rows=rows, columns=[*([inp.key] if inp.key else []), "score",
                                                                           "prediction", "reasons"], key=inp.key),
                       rows=rows, preview=preview_rows(ctx.artifacts, uri))
