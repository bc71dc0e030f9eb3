"""Export of a session's accepted model to an MLflow tracking server, when AGENTML_MLFLOW_URI is set.

One MLflow run per agentml session, in the experiment AGENTML_MLFLOW_EXPERIMENT (default: the model version's name,
`<table>-<target>`), holding:
- params: the final model's xgboost params, then the session's: user, rows, task, target, features, rounds, the plan
  (its steps in order), the goal, the agentml model version and run;
- metrics: the final model's learning curve (`valid_<metric>` per boosting round, step = the round, from 0), the
  cross-validated headline `cv_<metric>` (and `cv_<metric>_first_model` before the OODA loop), and the validation
  metrics `validation_<metric>` (the rows that tuned the model);
- every tuning trial as a nested run (tag `mlflow.parentRunId`): its params, `valid_<primary metric>` at each report
  (step = the round of the report), `best_valid_<primary metric>` and `rounds`, tagged with whether ASHA stopped it;
- artifacts: plan.json and result.json (the session's documents), report.html (read from the artifact store) and
  agentml_model.json (the agentml version record: data snapshot, categories, classes, threshold);
- the model in MLflow's xgboost flavour, its signature inferred from a few rows of the stored training table (the
  output of the principal's governed query; categorical columns as xgboost's category codes, as the booster takes
  them), registered as a version of the registered model named like the agentml version.

`mlflow` is imported only when an export runs. An export never fails the session: `export_version` returns an
`MlflowExport` with `status="failed"`, the reason and a hint, and the caller records it.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.model_versions import MlflowExport, ModelVersion

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from service.settings import Settings
    from skills.artifacts import ArtifactStore
    from skills.plan import Plan

log = logging.getLogger("agentml.mlflow")
SAMPLE_ROWS = 20  # rows of the training table the signature is inferred from
PARAM_CHARS = 500  # MLflow's smallest limit on a param value (older servers)
HEALTH_TIMEOUT_S = 5.0
BATCH = 1000  # metrics per log_batch call (MLflow's limit)
_FLUENT = threading.Lock()  # mlflow's fluent API (log_model) keeps the tracking URI and the active run per process
_HINT = ("start the server (mlflow server --host 127.0.0.1 --port 5000), correct AGENTML_MLFLOW_URI, or unset it to "
         "skip the export; the model itself is registered in agentml (agentml models)")


@dataclass(frozen=True)
class MlflowTarget:
    """Where to export: the tracking URI and, optionally, the experiment."""

    uri: str
    experiment: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MlflowTarget | None:
        """The target the settings name (AGENTML_MLFLOW_URI, AGENTML_MLFLOW_EXPERIMENT), or None: no export."""
        return cls(settings.mlflow_uri, settings.mlflow_experiment) if settings.mlflow_uri else None

    @property
    def shown(self) -> str:
        """The URI without credentials (for messages and records)."""
        parts = urllib.parse.urlsplit(self.uri)
        if "@" not in parts.netloc:
            return self.uri
        host = parts.netloc.rsplit("@", 1)[1]
        return parts._replace(netloc=host).geturl()


class ExportError(Exception):
    """The export cannot go on: `message` says why, `hint` what to do."""

    def __init__(self, message: str, hint: str = _HINT) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


@contextlib.contextmanager
def _pointed_at(uri: str) -> Iterator[None]:
    """MLflow's fluent API (log_model) at `uri` for the block, then as it was: the process's tracking and registry
    URIs, and the MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI variables mlflow sets with them (an API process that
    exports must not leave another caller's MLflow pointed at our server)."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry
    from mlflow.tracking._tracking_service import utils as tracking

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved, env = (tracking._tracking_uri, registry._registry_uri), {n: os.environ.get(n) for n in names}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved[0])  # type: ignore[arg-type]  # None: back to the environment
        registry._registry_uri = saved[1]
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def export_version(target: MlflowTarget, artifacts: ArtifactStore, version: ModelVersion, *,
                   trials: Sequence[Mapping[str, Any]] = (), summary: Mapping[str, Any] | None = None) -> MlflowExport:
    """Export `version` (with the tuning `trials` and the session's `summary`) as one MLflow run; never raises."""
    try:
        check_reachable(target)
        with _FLUENT, _pointed_at(target.uri):
            return _export(target, artifacts, version, trials, dict(summary or {}))
    except ExportError as exc:
        return MlflowExport(uri=target.shown, status="failed", error=exc.message, hint=exc.hint,
                            model_name=version.name)
    except Exception as exc:  # noqa: BLE001 - whatever MLflow raised, the session's model stays registered in agentml
        log.warning("exporting model %s v%s to MLflow failed", version.name, version.version, exc_info=True)
        reason = (str(exc).strip().splitlines() or [""])[0][:300]
        return MlflowExport(uri=target.shown, status="failed", model_name=version.name, hint=_HINT,
                            error=f"the export to MLflow at {target.shown} failed ({type(exc).__name__}: {reason})")


def check_reachable(target: MlflowTarget, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """An HTTP tracking server must answer `/health` within `timeout` seconds (the MLflow client would retry for
    much longer); other tracking URIs (a folder, a database) are left to the client."""
    if urllib.parse.urlsplit(target.uri).scheme not in ("http", "https"):
        return
    try:
        with urllib.request.urlopen(f"{target.uri.rstrip('/')}/health", timeout=timeout):  # noqa: S310 - http(s) only
            pass
    except urllib.error.HTTPError:
        return  # it answered (a proxy may not route /health): the export's own calls say more
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ExportError(f"the MLflow tracking server at {target.shown} did not answer ({reason})") from None


# --------------------------------------------------------------------------------------------------------- export


def _export(target: MlflowTarget, artifacts: ArtifactStore, version: ModelVersion,
            trials: Sequence[Mapping[str, Any]], summary: dict[str, Any]) -> MlflowExport:
    from mlflow import MlflowClient

    client = MlflowClient(target.uri, target.uri)
    name = target.experiment or version.name
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found else client.create_experiment(name, tags={"agentml": "true"})
    run_id = client.create_run(experiment_id, run_name=f"{version.name} v{version.version}",
                               tags=_run_tags(version)).info.run_id
    try:
        _log(client, run_id, _params(version), _metrics(version, summary))
        metric = _primary_metric(version)
        for index, trial in enumerate(trials, 1):
            _log_trial(client, experiment_id, run_id, index, trial, metric)
        _log_documents(client, artifacts, run_id, version, summary)
        registered = _log_model(artifacts, version, run_id)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return MlflowExport(uri=target.shown, status="exported", experiment=name, experiment_id=experiment_id,
                        run_id=run_id, trial_runs=len(trials), model_name=version.name,
                        model_version=registered, model_uri=f"models:/{version.name}/{registered}")


def _run_tags(version: ModelVersion) -> dict[str, str]:
    return {"agentml.run_id": version.run_id, "agentml.user": version.user,
            "agentml.model": f"{version.name} v{version.version}", "mlflow.note.content": version.goal}


def _text(value: Any) -> str:
    return str(value)[:PARAM_CHARS]


def _key(name: str) -> str:
    """A name MLflow accepts as a param or metric key (letters, digits, _ - . space / :)."""
    return re.sub(r"[^\w\-. /:]", "_", name)[:250]


def _plan_steps(plan: Mapping[str, Any]) -> str:
    steps = plan.get("steps") or []
    return " > ".join(s["id"] if s["id"] == s["skill"] else f"{s['id']}({s['skill']})" for s in steps)


def _params(version: ModelVersion) -> dict[str, str]:
    """The final model's xgboost params, then the session's own."""
    model = version.model
    params: dict[str, Any] = dict(model.get("params") or {})
    params.update(user=version.user, rows=version.data.rows, task=model.get("task"), target=model.get("target"),
                  features=len(version.features), num_rounds=model.get("num_rounds"),
                  best_iteration=model.get("best_iteration"), threshold=model.get("threshold"),
                  plan=_plan_steps(version.plan), goal=version.goal, table=version.data.table,
                  agentml_model=f"{version.name} v{version.version}", agentml_run=version.run_id)
    return {_key(str(k)): _text(v) for k, v in params.items() if v is not None}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _metric(key: str, value: float, step: int = 0) -> Metric:
    from mlflow.entities import Metric

    return Metric(_key(key), float(value), int(time.time() * 1000), step)


def _metrics(version: ModelVersion, summary: Mapping[str, Any]) -> list[Metric]:
    """The learning curve per round, the cross-validated headline (before and after the loop), validation metrics."""
    curve = [_metric(f"valid_{name}", v, step) for name, values in (version.model.get("history") or {}).items()
             for step, v in enumerate(values) if _finite(v)]
    name = version.metric_name
    final: list[Metric] = []
    if name and _finite(version.metric_value):
        final.append(_metric(f"cv_{name}", float(version.metric_value or 0.0)))
    if name and _finite(summary.get("baseline_value")):
        final.append(_metric(f"cv_{name}_first_model", summary["baseline_value"]))
    final += [_metric(f"validation_{k}", v) for k, v in version.metrics.items() if _finite(v)]
    return curve + final


def _log(client: MlflowClient, run_id: str, params: Mapping[str, str], metrics: Sequence[Metric],
         tags: Mapping[str, str] | None = None) -> None:
    """Params, metrics and tags in as few calls as MLflow's batch limits allow."""
    from mlflow.entities import Param, RunTag

    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start:start + 100])
    for start in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=list(metrics[start:start + BATCH]))
    if tags:
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def _primary_metric(version: ModelVersion) -> str:
    from skills.library.boosting.params import primary_metric

    return primary_metric(version.model["task"], version.model.get("classes") or [])


def report_rounds(trial: Mapping[str, Any]) -> list[int]:
    """The boosting round of each of a trial's reports (the report's index for trials recorded without them)."""
    history, rounds = list(trial.get("history") or []), list(trial.get("history_rounds") or [])
    return [int(r) for r in rounds] if len(rounds) == len(history) else list(range(len(history)))


def _log_trial(client: MlflowClient, experiment_id: str, parent: str, index: int, trial: Mapping[str, Any],
               metric: str) -> None:
    """One tuning trial as a run nested under the session's run."""
    tags = {"mlflow.parentRunId": parent, "agentml.trial_id": str(trial.get("trial_id") or ""),
            "stopped_early": str(bool(trial.get("stopped_early"))).lower()}
    if trial.get("error"):
        tags["error"] = _text(trial["error"])
    child = client.create_run(experiment_id, run_name=f"trial {index}", tags=tags).info.run_id
    metrics = [_metric(f"valid_{metric}", v, step) for step, v in zip(report_rounds(trial), trial.get("history") or [],
                                                                     strict=True) if _finite(v)]
    if _finite(trial.get("metric")):
        metrics.append(_metric(f"best_valid_{metric}", trial["metric"]))
    metrics.append(_metric("rounds", int(trial.get("rounds") or 0)))
    _log(client, child, {_key(str(k)): _text(v) for k, v in (trial.get("params") or {}).items()}, metrics)
    client.set_terminated(child, "FAILED" if trial.get("error") else "FINISHED")


def _log_documents(client: MlflowClient, artifacts: ArtifactStore, run_id: str, version: ModelVersion,
                   summary: Mapping[str, Any]) -> None:
    """plan.json, result.json, the agentml version record, and report.html when the artifact store holds one."""
    client.log_dict(run_id, version.plan, "plan.json")
    client.log_dict(run_id, dict(summary), "result.json")
    client.log_dict(run_id, version.model_dump(mode="json", exclude={"plan"}), "agentml_model.json")
    report = summary.get("report")
    if isinstance(report, str) and artifacts.exists(report):
        client.log_text(run_id, artifacts.get_bytes(report).decode("utf-8"), "report.html")


def _log_model(artifacts: ArtifactStore, version: ModelVersion, run_id: str) -> str:
    """The booster in the xgboost flavour with its signature, registered under the version's name; returns the
    MLflow model version."""
    import mlflow
    import mlflow.xgboost
    import xgboost as xgb
    from mlflow.models import infer_signature

    from skills.library.boosting.saved_model import iteration_range, load_booster
    from skills.types import ModelArtifact

    booster = load_booster(artifacts, version.model["uri"])
    start, end = iteration_range(ModelArtifact.model_validate(version.model), booster)
    if end:  # the rounds agentml predicts with (up to the best one): MLflow's predict uses every tree it is given
        booster = booster[start:end]
    sample, predicted = signature_sample(artifacts, version, booster)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.xgboost.log_model(booster, name="model", signature=infer_signature(sample, predicted),
                                        registered_model_name=version.name,
                                        pip_requirements=[f"xgboost=={xgb.__version__}"],
                                        await_registration_for=60)
    if info.registered_model_version is None:
        raise ExportError(f"MLflow logged the model but did not register it as {version.name!r}",
                          hint="check the tracking server's model registry (its backend store must be a database)")
    return str(info.registered_model_version)


def signature_sample(artifacts: ArtifactStore, version: ModelVersion, booster: Any) -> tuple[Any, Any]:
    """A few rows of the stored training table as the booster takes them (a float32 frame named by feature,
    categories as codes) and its predictions on them."""
    import pandas as pd

    from skills.frame import build_frame
    from skills.library.boosting.saved_model import predict
    from skills.types import ModelArtifact

    if not version.data.uri:
        raise ExportError("the model's training table is not stored, so its signature cannot be inferred",
                          hint="export a model trained on a query or features step's table")
    model = ModelArtifact.model_validate(version.model)
    table = artifacts.dataset(version.data.uri).head(SAMPLE_ROWS, columns=list(model.features))
    frame = build_frame(table, model.features, None, model.task, categories=model.categories,
                        classes=model.classes or None)
    return pd.DataFrame(frame.X, columns=list(frame.features)), predict(booster, frame, model)


def trials_of(plan: Plan, outputs: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The tuning trials of the plan's last finished `tune` step (none when the model was not tuned)."""
    from planner.ooda import last_step

    sid = last_step(plan, ("tune",), outputs)
    return list(outputs[sid].get("trials") or []) if sid else []
