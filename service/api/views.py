"""Run records as the API shows them: summaries, details, headline metric, links. Tracebacks never leave."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from executor import JobInfo, RunResult, StepResult
from service.api.models import JobView, Links, Metric, RunDetail, RunSummary, StepView
from skills.plan import Plan

_PREFERRED = ("auc", "roc_auc", "rmse", "r2", "logloss", "accuracy", "mae")


def links(run_id: str) -> Links:
    base = f"/v1/runs/{run_id}"
    return Links(self=base, events=f"{base}/events", report=f"{base}/report", logs=f"{base}/logs",
                 dashboard=f"/runs/{run_id}")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _from_metrics(metrics: Mapping[str, Any]) -> Metric | None:
    names = [n for n in _PREFERRED if n in metrics] + sorted(metrics)
    for name in names:
        value = _number(metrics.get(name))
        if value is not None:
            return Metric(name=name, value=value)
    return None


def _step_metric(outputs: Mapping[str, Any]) -> Metric | None:
    value = _number(outputs.get("metric_value"))
    if isinstance(outputs.get("metric_name"), str) and value is not None:
        return Metric(name=outputs["metric_name"], value=value)
    metrics = outputs.get("metrics")
    return _from_metrics(metrics) if isinstance(metrics, Mapping) else None


def headline_metric(run: RunResult) -> Metric | None:
    """The evaluate step's metric (the latest one that ran), else the training metrics, else None."""
    ordered = [s for s in reversed(list(run.steps.values())) if s.status == "succeeded" and s.outputs]
    for step in sorted(ordered, key=lambda s: s.skill != "evaluate"):  # stable: latest evaluate first
        metric = _step_metric(step.outputs or {})
        if metric is not None:
            return metric
    return None


def ooda_children(runs: list[RunResult]) -> dict[str, str]:
    """Run id -> the run whose session started it (each OODA iteration runs its extension as runs of its own, and
    the final report runs as one more)."""
    out: dict[str, str] = {}
    for run in runs:
        ooda, summary = run.result.get("ooda"), run.result.get("summary")
        iterations = (ooda.get("iterations") or []) if isinstance(ooda, Mapping) else []
        children = [r for it in iterations for r in (it.get("run_ids") or [])]
        children += (summary.get("run_ids") or [])[1:] if isinstance(summary, Mapping) else []
        out.update({child: run.id for child in children if isinstance(child, str) and child != run.id})
    return out


def summaries(runs: list[RunResult]) -> list[RunSummary]:
    """The runs list, each OODA child run labelled with its parent."""
    parents = ooda_children(runs)
    return [summary(r).model_copy(update={"part_of": parents.get(r.id)}) for r in runs]


def summary(run: RunResult) -> RunSummary:
    """The runs-list line of `run`."""
    return RunSummary(id=run.id, user=run.user, status=run.status, created=run.created, updated=run.updated,
                      prompt=run.prompt or str(run.plan.get("goal", "")), backend=run.backend, job_id=run.job_id,
                      metric=headline_metric(run), steps_done=sum(s.status == "succeeded" for s in run.steps.values()),
                      steps_total=len(run.steps), error=run.error, hint=run.hint)


def step_view(step: StepResult) -> StepView:
    return StepView(id=step.id, skill=step.skill, status=step.status, started=step.started, finished=step.finished,
                    duration_s=step.duration_s, outputs=step.outputs, error=step.error, hint=step.hint)


def detail(run: RunResult, job: JobInfo | None) -> RunDetail:
    """Everything about `run` a user may see (no tracebacks, no owner process)."""
    job_view = JobView(id=job.job_id, status=job.status, message=job.message) if job is not None else None
    return RunDetail(**summary(run).model_dump(), plan=Plan.model_validate(run.plan),
                     steps=[step_view(s) for s in run.steps.values()], result=run.result, job=job_view,
                     links=links(run.id), settings=run.settings)
