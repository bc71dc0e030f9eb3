"""Models as versions: every accepted model of a session, registered with what it takes to trust and reuse it.

A version is one JSON document in the artifact store, `models/<run id>.json` (the run id of the session's first run):
it survives restarts, lives wherever the artifacts do (a folder, `s3://`), and needs no schema in the run store.
It records the model (its `ModelArtifact`: URI, task, target, features, categories, classes, params), the final plan,
the data snapshot (the governed SQL of the training rows, the feature specs computed over them, their row count and
a SHA-256 of the stored training table), the metrics (cross-validated and validation), and the feature list.
`name` groups versions of one model (the table and target it predicts); `version` counts them, 1, 2, ...
When an MLflow tracking server is configured, `mlflow` records the export (`service.mlflow_export`): the MLflow run
and registered model version, or why the export failed.
Scoring (`service.scoring`) reads a version back to score new rows exactly as the model was trained.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from governance import AgentmlError, Category
from planner.ooda import TRAIN_SKILLS, BaseQuery, last_step
from skills.refs import as_ref

if TYPE_CHECKING:
    from skills.artifacts import ArtifactStore
    from skills.plan import Plan

PREFIX = "models"


class NoModel(AgentmlError):
    """The run exists but registered no model (it failed, was cancelled, or its plan trains none)."""

    category: ClassVar[Category] = "not_found"
    code = "no_model"


class DataSnapshot(BaseModel):
    """The governed rows the model was trained on: how they were read, how many, and a hash of what was stored."""

    model_config = ConfigDict(extra="forbid")
    sql: str = Field(description="the governed query of the training rows (as the principal wrote it)")
    key: str | None = None
    specs: list[dict[str, Any]] = Field(default_factory=list, description="feature specs computed over the rows")
    cutoff: str | None = None
    table: str | None = Field(default=None, description="the catalog table the rows come from, when there is one")
    rows: int | None = None
    sha256: str | None = Field(default=None, description="SHA-256 over the stored training table's Parquet files")
    uri: str | None = Field(default=None, description="the stored training table (artifact URI)")


class MlflowExport(BaseModel):
    """Where a model version went in MLflow, or why it did not get there (the run itself never fails for it)."""

    model_config = ConfigDict(extra="forbid")
    uri: str = Field(description="the tracking server (AGENTML_MLFLOW_URI)")
    status: Literal["exported", "failed"]
    experiment: str | None = None
    experiment_id: str | None = None
    run_id: str | None = Field(default=None, description="the MLflow run of the agentml session")
    trial_runs: int = Field(default=0, description="tuning trials logged as nested runs")
    model_name: str | None = Field(default=None, description="registered model name (the version's `name`)")
    model_version: str | None = Field(default=None, description="the registered MLflow model version")
    model_uri: str | None = Field(default=None, description="models:/<name>/<version>")
    error: str | None = None
    hint: str | None = None


class ModelVersion(BaseModel):
    """One registered model."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: int
    run_id: str
    user: str
    created: str
    goal: str
    model: dict[str, Any] = Field(description="the ModelArtifact (URI, task, target, features, categories, ...)")
    data: DataSnapshot
    metric_name: str | None = None
    metric_value: float | None = Field(default=None, description="cross-validated (evaluate step)")
    metrics: dict[str, float] = Field(default_factory=dict, description="validation metrics at the end of training")
    features: list[str] = Field(default_factory=list)
    plan: dict[str, Any] = Field(default_factory=dict, description="the final plan (with the OODA steps)")
    mlflow: MlflowExport | None = Field(default=None, description="the export to MLflow (AGENTML_MLFLOW_URI)")


def _key(run_id: str) -> str:
    return f"{PREFIX}/{run_id}.json"


def table_hash(artifacts: ArtifactStore, uri: str) -> str:
    """SHA-256 over the bytes of the Parquet file(s) at `uri`, in path order, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    fs, _ = artifacts.filesystem_path(uri)
    for path in sorted(artifacts.dataset(uri).files):
        with fs.open_input_stream(path) as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def snapshot(artifacts: ArtifactStore, plan: Plan, outputs: Mapping[str, Mapping[str, Any]]) -> DataSnapshot | None:
    """The data snapshot of the last trained model of `plan`, or None when no model was trained."""
    sid = last_step(plan, TRAIN_SKILLS, outputs)
    ref = as_ref(plan.step(sid).inputs.get("table")) if sid else None
    if ref is None:
        return None
    base = BaseQuery.of(plan.step(ref.step), outputs)
    table = (outputs.get(ref.step) or {}).get(ref.path) or {}
    uri = table.get("uri")
    # the specs with what they learnt from the training rows (levels, edges, shares): scoring computes the same
    specs = (outputs.get(ref.step) or {}).get("fitted") or base.specs
    return DataSnapshot(sql=base.sql, key=base.key, specs=specs, cutoff=base.cutoff, table=base.table,
                        rows=table.get("rows"), sha256=table_hash(artifacts, uri) if uri else None, uri=uri)


def register(artifacts: ArtifactStore, *, run_id: str, user: str, plan: Plan, outputs: Mapping[str, Mapping[str, Any]],
             summary: Mapping[str, Any]) -> ModelVersion | None:
    """Register the session's final model (the last train step of `plan` in `outputs`) as the next version of its
    name; None when the session trained no model."""
    sid = last_step(plan, TRAIN_SKILLS, outputs)
    data = snapshot(artifacts, plan, outputs)
    if sid is None or data is None:
        return None
    model = dict(outputs[sid]["model"])
    name = f"{data.table or 'query'}-{model['target']}"
    version = 1 + sum(1 for v in list_versions(artifacts) if v.name == name and v.run_id != run_id)
    record = ModelVersion(name=name, version=version, run_id=run_id, user=user,
                          created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), goal=plan.goal,
                          model=model, data=data, metric_name=summary.get("metric_name"),
                          metric_value=summary.get("metric_value"), metrics=dict(model.get("metrics") or {}),
                          features=list(model.get("features") or []), plan=plan.model_dump(mode="json"))
    artifacts.put_json(_key(run_id), record.model_dump(mode="json"))
    return record


def record_export(artifacts: ArtifactStore, version: ModelVersion, export: MlflowExport) -> ModelVersion:
    """Keep `export` in the stored version record (its JSON in the artifact store)."""
    updated = version.model_copy(update={"mlflow": export})
    artifacts.put_json(_key(version.run_id), updated.model_dump(mode="json"))
    return updated


def get_version(artifacts: ArtifactStore, run_id: str) -> ModelVersion:
    """The model registered by run `run_id`; NoModel when it registered none."""
    if "/" in run_id or not artifacts.exists(_key(run_id)):
        raise NoModel(f"run {run_id!r} has no registered model",
                      hint="score a run that finished and trained a model (agentml models lists them)",
                      run_id=run_id)
    return ModelVersion.model_validate(artifacts.get_json(_key(run_id)))


def list_versions(artifacts: ArtifactStore) -> list[ModelVersion]:
    """Every registered model, oldest first."""
    import pyarrow.fs as pafs

    fs, path = artifacts.filesystem_path(PREFIX)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except FileNotFoundError:
        return []
    found = [ModelVersion.model_validate(artifacts.get_json(_key(info.base_name.removesuffix(".json"))))
             for info in infos if info.is_file and info.base_name.endswith(".json")]
    return sorted(found, key=lambda v: (v.created, v.run_id))
