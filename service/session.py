"""One session, the same for every caller (the CLI, the API's in-process runner, a Ray job): run the plan, improve
it in the OODA loop, run the final report over the latest model and the iterations, and keep the session's summary
(`result.json`'s document) in the first run's record.

`run_session` is the whole session; `finish_session` is its second half, for a caller whose first run has already run
(a Ray job's entrypoint runs it through the executor). Nothing here talks to a terminal or writes files: the CLI
passes a progress callback, reads the `SessionResult` and writes its output folder with `write_outputs`.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from planner.ooda import TRAIN_SKILLS, LoopConfig, OodaResult, improve, inline_outputs, last_step, step_outputs
from service.results import SessionSummary
from skills.library.evaluate import VALIDATION
from skills.plan import Plan, Ref, Step

if TYPE_CHECKING:
    from executor import RunEvent, RunResult, RunStore
    from governance import Engine, Principal
    from planner.budget import Budget
    from service.mlflow_export import MlflowTarget
    from skills.artifacts import ArtifactStore
    from skills.context import RuntimeSettings
    from skills.registry import Registry

log = logging.getLogger("agentml.ooda")
REPORT_STEP = "final_report"
Backend = Literal["local", "ray"]


@dataclass
class SessionResult:
    """How a session ended: the first run, the loop, the final plan, report and model (artifact records), and the
    summary (`result.json`)."""

    first: RunResult
    ooda: OodaResult | None
    summary: dict[str, Any]
    plan: Plan
    report: Mapping[str, Any] | None = None
    model: Mapping[str, Any] | None = None
    failed: str | None = None
    failed_kind: str | None = None  # error type of the failed step (PolicyViolation, SkillError, ...)


@dataclass
class SessionEnv:
    """Where and how a session runs: principal, governed engine, artifact store, run store, the skill registry (built
    once at the composition root), runtime settings."""

    principal: Principal
    engine: Engine
    artifacts: ArtifactStore
    store: RunStore
    registry: Registry
    settings: RuntimeSettings | None = None
    on_progress: Callable[[RunEvent], None] | None = None
    backend: Backend = "local"
    ray_address: str | None = None  # the cluster to join (settings); None: RAY_ADDRESS or a local Ray

    cancel: threading.Event | None = None  # set: the session stops at the next step (the API's cancel)
    mlflow: MlflowTarget | None = None  # export the accepted model there (settings: AGENTML_MLFLOW_URI)

    def run(self, plan: Plan, run_id: str | None = None) -> RunResult:
        """Run `plan` governed as the principal (the first run, each OODA extension, the final report); `run_id`
        names a run recorded (queued) earlier."""
        from executor import run_plan

        return run_plan(plan, self.principal, engine=self.engine, backend=self.backend, artifacts=self.artifacts,
                        store=self.store, settings=self.settings, on_progress=self.on_progress, prompt=plan.goal,
                        registry=self.registry, ray_address=self.ray_address, run_id=run_id, cancel=self.cancel)

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()


# ------------------------------------------------------------------------------------------------------ summary


CV_PROTOCOL = "cross-validated (evaluate skill)"  # an evaluate output that does not name its protocol


def _cv_metric(evaluate: Mapping[str, Any]) -> tuple[str | None, float | None]:
    name = evaluate.get("metric_name")
    value = (evaluate.get("cv_metrics") or {}).get(name, evaluate.get("metric_value"))
    return name, value


def _named_metrics(evaluate: Mapping[str, Any]) -> dict[str, Any]:
    """result.json's `metric` (the cross-validated headline) and `validation` (the rows that tuned the model), each
    {name, value, protocol}, and `metric_protocol`."""
    name, value = _cv_metric(evaluate)
    if name is None:
        return {"metric": None, "validation": None}
    protocol = evaluate.get("protocol") or CV_PROTOCOL
    seen = (evaluate.get("metrics") or {}).get(name)
    return {"metric_protocol": protocol, "metric": {"name": name, "value": value, "protocol": protocol},
            "validation": {"name": name, "value": seen, "protocol": evaluate.get("metrics_protocol") or VALIDATION}}


def training_rows(plan: Plan, outputs: Mapping[str, Mapping[str, Any]]) -> int | None:
    """Rows of the table the final model was trained on (the `table` its training step read), when known."""
    from skills.refs import RefError, resolve

    sid = last_step(plan, TRAIN_SKILLS, outputs)
    if sid is None:
        return None
    try:
        table = resolve(plan.step(sid).inputs.get("table"), outputs, partial=True)
    except RefError:
        return None
    rows = table.get("rows") if isinstance(table, Mapping) else None
    return int(rows) if isinstance(rows, int) else None


def _role_outputs(plan: Plan, outputs: Mapping[str, Mapping[str, Any]], skills: tuple[str, ...]) -> dict[str, Any]:
    sid = last_step(plan, skills, outputs)
    return dict(outputs[sid]) if sid else {}


def iteration_rows(ooda: OodaResult | None) -> list[dict[str, Any]]:
    """One flat row per candidate and iteration, for the report's table."""
    rows = []
    for it in ooda.iterations if ooda else []:
        for c in it.candidates:
            rows.append({"iteration": it.index, "candidates": c.name, "source": c.source, "motivation": c.motivation,
                         "score": c.race_metric, "rounds": c.race_rounds, "stopped_early": c.stopped_early,
                         "cv_delta": c.cv_delta, "p_value": c.p_value, "accepted": c.accepted, "reason": c.reason})
    return rows


def _iterations_json(ooda: OodaResult | None) -> list[dict[str, Any]]:
    out = []
    for it in ooda.iterations if ooda else []:
        out.append({"index": it.index, "candidates": [c.model_dump() for c in it.candidates],
                    "accepted": it.accepted, "accepted_features": it.accepted_features,
                    "metric_name": it.metric_name, "baseline_value": it.baseline_value,
                    "metric_value": it.metric_value, "observed": it.observed, "ideas": it.ideas, "why": it.why,
                    "race": it.race, "run_ids": it.run_ids, "seconds": it.seconds})
    return out


def summarize(plan: Plan, first: RunResult, ooda: OodaResult | None, *, elapsed: float,
              why_not: str | None = None) -> dict[str, Any]:
    """The `result.json` document: task, target, CV metric before and after the loop, iterations, drivers.
    `why_not`: why the OODA loop could not run, when it was asked for and failed to start."""
    first_out = step_outputs(first)
    base_eval = _role_outputs(plan, first_out, ("evaluate",))
    outputs = ooda.outputs if ooda else first_out
    final_plan = ooda.plan if ooda else plan
    model = _role_outputs(final_plan, outputs, TRAIN_SKILLS).get("model") or {}
    metric_name, baseline = _cv_metric(base_eval)
    final_eval = _role_outputs(final_plan, outputs, ("evaluate",))
    _, final = _cv_metric(final_eval)
    explain = _role_outputs(final_plan, outputs, ("explain",))
    drivers = [{k: d.get(k) for k in ("feature", "importance", "direction", "summary", "level")}
               for d in explain.get("drivers") or explain.get("importance") or []]
    return {
        "goal": plan.goal, "task": model.get("task"), "target": model.get("target"), "metric_name": metric_name,
        "metric_value": final, "baseline_value": baseline, "metric_protocol": CV_PROTOCOL,
        **_named_metrics(final_eval), "threshold": model.get("threshold"),
        "iterations": _iterations_json(ooda), "accepted_features": ooda.accepted_features if ooda else [],
        "stopped": ooda.stopped if ooda else f"the OODA loop could not run: {why_not}" if why_not
        else "the OODA loop did not run", "drivers": drivers,
        "features": model.get("features") or [], "excluded": plan.metadata.get("excluded") or [],
        "rows": training_rows(final_plan, outputs),
        "run_ids": [first.id, *(r for it in (ooda.iterations if ooda else []) for r in it.run_ids)],
        "elapsed_s": round(elapsed, 1),
    }


# ------------------------------------------------------------------------------------------------------- report


def report_step(plan: Plan, roles: Mapping[str, str], ooda: OodaResult | None, metric: tuple[str | None, float | None],
                notes: str, protocol: str = CV_PROTOCOL) -> Step:
    """The final report over the latest model, its evaluation, drivers, slices and every OODA iteration."""
    def ref(role: str, name: str) -> dict[str, Any]:
        return {name: Ref(step=roles[role], path=name)} if role in roles else {}

    title = next((s.inputs.get("title") for s in plan.steps if s.skill == "report"), None) or plan.goal or "agentml"
    inputs: dict[str, Any] = {"title": title, "model": Ref(step=roles["train"], path="model"),
                              **ref("evaluate", "metrics"), **ref("evaluate", "metrics_protocol"),
                              **ref("evaluate", "curves"),
                              **ref("explain", "drivers"), **ref("explain", "importance"),
                              **ref("residuals", "slices"), **ref("residuals", "overall_error"),
                              "iterations": iteration_rows(ooda), "notes": notes}
    if plan.metadata.get("excluded"):
        inputs["excluded"] = plan.metadata["excluded"]
    tune = next((s.id for s in plan.steps if s.skill == "tune"), None)
    if tune:
        inputs["trials"] = Ref(step=tune, path="trials")
    if metric[0] is not None and metric[1] is not None:
        inputs.update({"metric_name": f"{metric[0]} ({protocol})", "metric_value": metric[1]})
    return Step(id=REPORT_STEP, skill="report", inputs=inputs, description="final report with the OODA iterations")


def _roles_of(plan: Plan, outputs: Mapping[str, Any]) -> dict[str, str]:
    """Role -> the last finished step playing it (the final model and its evaluation, drivers and slices)."""
    found = {role: last_step(plan, skills, outputs) for role, skills in
             (("train", TRAIN_SKILLS), ("evaluate", ("evaluate",)), ("explain", ("explain",)),
              ("residuals", ("residuals",)))}
    return {role: sid for role, sid in found.items() if sid}


def _notes(summary: Mapping[str, Any], extra: str) -> str:
    parts = [extra] if extra else []
    if summary.get("baseline_value") is not None:
        parts.append(f"First model: {summary['metric_name']} {summary['baseline_value']:.4f} (cross-validated); "
                     f"final: {summary['metric_value']:.4f}. OODA loop: {summary['stopped']}.")
    if summary.get("accepted_features"):
        parts.append("Accepted features: " + ", ".join(summary["accepted_features"]) + ".")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------------- files


def write_outputs(out: Path, session: SessionResult, artifacts: ArtifactStore) -> None:
    """The CLI's output folder: plan.json, result.json, report.html and the model (model.json and its record);
    result.json names the files written here instead of artifact URIs."""
    out.mkdir(parents=True, exist_ok=True)
    summary = dict(session.summary)
    (out / "plan.json").write_text(session.plan.model_dump_json(indent=2))
    if session.report and session.report.get("uri"):
        (out / "report.html").write_bytes(artifacts.get_bytes(session.report["uri"]))
        summary["report"] = str((out / "report.html").resolve())
    if session.model and session.model.get("uri"):
        (out / "model.json").write_bytes(artifacts.get_bytes(session.model["uri"]))
        (out / "model_artifact.json").write_text(json.dumps(dict(session.model), indent=2, default=str))
        summary["model"] = str((out / "model.json").resolve())
    (out / "result.json").write_text(SessionSummary.model_validate(summary).model_dump_json(indent=2) + "\n")


def improve_stored(env: SessionEnv, result: RunResult, plan: Plan, *, iterations: int,
                   catalog: Mapping[str, Mapping[str, str]] | None = None, budget: Budget | None = None,
                   config: LoopConfig | None = None) -> tuple[OodaResult | None, str | None]:
    """The OODA loop on a succeeded run, for every caller (the CLI's session, the API's in-process runner, a Ray
    job): its progress and iterations are kept in the run's record under "ooda". Returns the loop's result, or None
    and why it could not run; the run itself is never failed by the loop."""
    from planner.ooda import OodaError

    base = dict(result.result)
    env.store.update_run(result.id, result={**base, "ooda": {"status": "running", "iterations": []}})
    env.store.append_event(result.id, "ooda", message=f"improving: up to {iterations} iteration(s)",
                           data={"status": "running"})
    res: OodaResult | None = None
    try:
        res = improve(plan, result, engine=env.engine, principal=env.principal,
                      catalog=catalog if catalog is not None else env.engine.catalog(env.principal),
                      execute=env.run, iterations=iterations, registry=env.registry, budget=budget, config=config)
    except OodaError as exc:
        summary: dict[str, Any] = {"status": "failed", "error": exc.message, "hint": exc.hint, "iterations": []}
    except Exception as exc:  # noqa: BLE001 - the run succeeded: its record must not say "improving" forever
        log.exception("the OODA loop of run %s failed", result.id)
        summary = {"status": "failed", "error": f"the OODA loop failed unexpectedly ({type(exc).__name__})",
                   "hint": "the run's own results are complete; see the server or job log", "iterations": []}
    else:
        summary = {"status": "done", "stopped": res.stopped, "error": res.error,
                   "accepted_features": res.accepted_features,
                   "iterations": [it.model_dump(mode="json") for it in res.iterations]}
    env.store.update_run(result.id, result={**base, "ooda": summary})
    env.store.append_event(result.id, "ooda", message=summary.get("stopped") or summary.get("error") or "done",
                           data={"status": summary["status"], "iterations": len(summary["iterations"])})
    return res, None if res is not None else summary["error"]


def store_summary(env: SessionEnv, first: RunResult, summary: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the session's `result.json` document in the first run's record (`result["summary"]`), validated by its
    model, so that every caller (CLI, API, Ray job) leaves the same document behind."""
    doc = SessionSummary.model_validate(summary).model_dump(mode="json")
    record = env.store.get_run(first.id)
    env.store.update_run(first.id, result={**record.result, "summary": doc})
    return doc


def _wants_ooda(plan: Plan, result: RunResult, iterations: int) -> bool:
    """Whether the OODA loop runs after `result`: iterations asked for, the run succeeded, the plan trains."""
    return iterations > 0 and result.status == "succeeded" and any(s.skill in TRAIN_SKILLS for s in plan.steps)


def run_session(plan: Plan, env: SessionEnv, *, iterations: int, run_id: str | None = None,
                catalog: Mapping[str, Mapping[str, str]] | None = None, budget: Budget | None = None,
                config: LoopConfig | None = None, notes: str = "") -> SessionResult:
    """The whole session: run `plan` (as the queued run `run_id` when given), then `finish_session`.

    A failed step ends the session early (`failed` names it); whatever finished is kept in the run store."""
    started = time.monotonic()
    return finish_session(env, env.run(plan, run_id), plan, iterations=iterations, catalog=catalog, budget=budget,
                          config=config, notes=notes, started=started)


def _with_run_settings(env: SessionEnv, first: RunResult) -> SessionEnv:
    """The session's settings: the caller's, else those recorded with its first run (the API's `compute` travels
    in the run record to the in-process runner and to a Ray job), so the OODA runs use the same workers and GPUs."""
    if env.settings is not None or not first.settings:
        return env
    from skills.context import RuntimeSettings

    return replace(env, settings=RuntimeSettings.model_validate(first.settings))


def finish_session(env: SessionEnv, first: RunResult, plan: Plan, *, iterations: int,
                   catalog: Mapping[str, Mapping[str, str]] | None = None, budget: Budget | None = None,
                   config: LoopConfig | None = None, notes: str = "", started: float | None = None) -> SessionResult:
    """After the first run `first` of `plan`: the OODA loop (when asked for and the run succeeded), the final report
    over the latest model (when one was trained), and the summary kept in the first run's record."""
    started = time.monotonic() if started is None else started
    env = _with_run_settings(env, first)
    if first.status != "succeeded" or env.cancelled:
        summary = summarize(plan, first, None, elapsed=time.monotonic() - started)
        store_summary(env, first, summary)
        failed, kind = run_failure(first) if first.status != "succeeded" else (None, None)
        return SessionResult(first, None, summary, plan, failed=failed, failed_kind=kind)
    ooda, why_not = None, None
    if _wants_ooda(plan, first, iterations):
        ooda, why_not = improve_stored(env, first, plan, iterations=iterations, catalog=catalog, budget=budget,
                                       config=config)
    final_plan = ooda.plan if ooda else plan.model_copy(deep=True)
    outputs = ooda.outputs if ooda else step_outputs(first)
    summary = summarize(plan, first, ooda, elapsed=time.monotonic() - started, why_not=why_not)
    roles = _roles_of(final_plan, outputs)
    report = None
    failed, kind = (ooda.error, ooda.failed_kind) if ooda else (None, None)
    if "train" in roles and not env.cancelled:
        step = report_step(final_plan, roles, ooda, (summary["metric_name"], summary["metric_value"]),
                           _notes(summary, notes), summary.get("metric_protocol") or CV_PROTOCOL)
        final_plan.steps.append(step)
        run = env.run(Plan(goal=plan.goal, steps=[inline_outputs(step, outputs)]))
        summary["run_ids"].append(run.id)
        report = run.steps[REPORT_STEP].outputs
        if run.status != "succeeded" and failed is None:
            failed, kind = run_failure(run)
    model = outputs.get(roles.get("train", ""), {}).get("model")
    summary.update(report=(report or {}).get("uri"), model=(model or {}).get("uri"))
    if model and failed is None:  # registered, scored (train-then-score) and exported: `service.publish`
        from service.publish import publish

        published = publish(env, first, final_plan, outputs, summary)
        summary.update(published.summary)
        failed, kind = published.failed, published.failed_kind
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    store_summary(env, first, summary)
    return SessionResult(first, ooda, summary, final_plan, report, model, failed, kind)


def run_failure(run: RunResult) -> tuple[str, str | None]:
    """What failed in `run` (step, skill, message, hint) and the error type."""
    step = run.steps.get(run.failed_step or "")
    if step is None:
        return f"run {run.id} {run.status}" + (f": {run.error}" if run.error else ""), None
    hint = f" Hint: {step.hint}" if step.hint else ""
    return f"step {step.id!r} ({step.skill}) failed: {step.error}{hint}", step.error_type
