"""Run records as the API shows them: summaries, details, headline metric, links. Tracebacks never leave."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from executor import JobInfo, RunResult, StepResult
from service.api.models import JobView, Links, Metric, MetricProtocol, RunDetail, RunFacts, RunSummary, StepView
from skills.plan import Plan

_PREFERRED = ("auc", "roc_auc", "rmse", "r2", "logloss", "accuracy", "mae")
MODEL_SKILLS = ("tune", "train_xgboost")
_DONE = frozenset({"succeeded", "failed", "skipped", "cancelled", "interrupted"})  # ended: a wall time


def links(run_id: str) -> Links:
    base = f"/v1/runs/{run_id}"
    return Links(self=base, events=f"{base}/events", report=f"{base}/report", logs=f"{base}/logs",
                 dashboard=f"/runs/{run_id}")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _from_metrics(metrics: Mapping[str, Any]) -> tuple[str, float] | None:
    names = [n for n in _PREFERRED if n in metrics] + sorted(metrics)
    for name in names:
        value = _number(metrics.get(name))
        if value is not None:
            return name, value
    return None


def _succeeded(run: RunResult, *skills: str) -> list[Mapping[str, Any]]:
    """Outputs of the run's succeeded steps of these skills, latest first."""
    return [s.outputs for s in reversed(list(run.steps.values()))
            if s.skill in skills and s.status == "succeeded" and s.outputs]


def labelled(name: str, value: float, protocol: MetricProtocol, *, folds: int | None = None,
             holdout: float | None = None) -> Metric:
    """A metric with the words that say what it is: "cross-validated auc (5-fold)", "holdout auc"."""
    label = f"cross-validated {name}" + (f" ({folds}-fold)" if folds else "") if protocol == "cross-validated" \
        else f"{protocol} {name}"
    return Metric(name=name, value=value, protocol=protocol, folds=folds, holdout=holdout, label=label)


def _evaluated(outputs: Mapping[str, Any], summary: Mapping[str, Any]) -> Metric | None:
    """The evaluate step's metric: cross-validated when it ran folds (the session's final CV value when the run has
    a summary: the OODA loop may have improved it), else its holdout metric."""
    name = outputs.get("metric_name") if isinstance(outputs.get("metric_name"), str) else None
    if name is None:
        found = _from_metrics(outputs.get("metrics") or {})
        name = found[0] if found else None
    if name is None:
        return None
    holdout = _number((outputs.get("metrics") or {}).get(name))
    holdout = holdout if holdout is not None else _number(outputs.get("metric_value"))
    folds = len(outputs.get("cv_folds") or []) or None
    own = _number((outputs.get("cv_metrics") or {}).get(name))
    final = _number(summary.get("metric_value")) if summary.get("metric_name") == name else None
    if final is not None and final != own:  # the OODA loop's final model: this step's holdout is another model's
        own, holdout = final, None
    cv = own
    if cv is not None:
        return labelled(name, cv, "cross-validated", folds=folds, holdout=holdout)
    return labelled(name, holdout, "holdout") if holdout is not None else None


def session_summary(run: RunResult) -> Mapping[str, Any]:
    """The session summary (result.json's document) a session's first run keeps, or {}."""
    found = run.result.get("summary")
    return found if isinstance(found, Mapping) else {}


def headline_metric(run: RunResult) -> Metric | None:
    """The latest evaluate step's cross-validated metric (its holdout value beside it), else the session summary's,
    else the latest model's validation metric, else None."""
    summary = session_summary(run)
    for outputs in _succeeded(run, "evaluate"):
        metric = _evaluated(outputs, summary)
        if metric is not None:
            return metric
    name, value = summary.get("metric_name"), _number(summary.get("metric_value"))
    if isinstance(name, str) and value is not None:
        return labelled(name, value, "cross-validated")
    for outputs in _succeeded(run, *MODEL_SKILLS):
        found = _from_metrics(outputs.get("metrics") or {})
        if found is not None:
            return labelled(*found, "validation")
    return None


def final_model(run: RunResult) -> Mapping[str, Any]:
    """The latest model a step of the run trained (its ModelArtifact as JSON), or {}."""
    for outputs in _succeeded(run, *MODEL_SKILLS):
        if isinstance(outputs.get("model"), Mapping):
            return outputs["model"]
    return {}


def _eta(params: Mapping[str, Any]) -> float | None:
    return _number(params.get("eta", params.get("learning_rate")))


def facts(run: RunResult) -> RunFacts:
    """The runs-table columns of `run`: task, target, rows, rounds and learning rate of the final model, wall time."""
    summary = session_summary(run)
    model = final_model(run)
    rows = summary.get("rows")
    wall = _number(summary.get("elapsed_s")) or (
        (run.updated - run.created).total_seconds() if run.status in _DONE else None)
    return RunFacts(task=summary.get("task") or model.get("task"), target=summary.get("target") or model.get("target"),
                    rows=rows if isinstance(rows, int) else None,
                    rounds=model.get("num_rounds") if isinstance(model.get("num_rounds"), int) else None,
                    eta=_eta(model.get("params") or {}), wall_s=round(wall, 1) if wall is not None else None)


def session_children(run: RunResult) -> list[str]:
    """The runs `run`'s session started: each OODA iteration's runs, then the final report's."""
    ooda, summary = run.result.get("ooda"), run.result.get("summary")
    iterations = (ooda.get("iterations") or []) if isinstance(ooda, Mapping) else []
    children = [r for it in iterations if isinstance(it, Mapping) for r in (it.get("run_ids") or [])]
    children += (summary.get("run_ids") or [])[1:] if isinstance(summary, Mapping) else []
    return [c for c in dict.fromkeys(children) if isinstance(c, str) and c != run.id]


def ooda_children(runs: list[RunResult]) -> dict[str, str]:
    """Run id -> the run whose session started it (each OODA iteration runs its extension as runs of its own, and
    the final report runs as one more)."""
    return {child: run.id for run in runs for child in session_children(run)}


def summaries(runs: list[RunResult]) -> list[RunSummary]:
    """The runs list, each OODA child run labelled with its parent."""
    parents = ooda_children(runs)
    return [summary(r).model_copy(update={"part_of": parents.get(r.id)}) for r in runs]


def summary(run: RunResult) -> RunSummary:
    """The runs-list line of `run`."""
    return RunSummary(id=run.id, user=run.user, status=run.status, created=run.created, updated=run.updated,
                      prompt=run.prompt or str(run.plan.get("goal", "")), backend=run.backend, job_id=run.job_id,
                      metric=headline_metric(run), steps_done=sum(s.status == "succeeded" for s in run.steps.values()),
                      steps_total=len(run.steps), error=run.error, hint=run.hint, facts=facts(run),
                      children=session_children(run))


def step_view(step: StepResult) -> StepView:
    return StepView(id=step.id, skill=step.skill, status=step.status, started=step.started, finished=step.finished,
                    duration_s=step.duration_s, outputs=step.outputs, error=step.error, hint=step.hint)


def detail(run: RunResult, job: JobInfo | None) -> RunDetail:
    """Everything about `run` a user may see (no tracebacks, no owner process)."""
    job_view = JobView(id=job.job_id, status=job.status, message=job.message) if job is not None else None
    return RunDetail(**summary(run).model_dump(), plan=Plan.model_validate(run.plan),
                     steps=[step_view(s) for s in run.steps.values()], result=run.result, job=job_view,
                     links=links(run.id), settings=run.settings)
