"""What becomes of a session's accepted model: it is registered as a version (`service.model_versions`), it scores
the rows the question asked about (train-then-score), and it is exported to MLflow when a tracking server is set.

Train-then-score: the plan's `score` step (`plan.metadata["score"]`) ran in the first run with the first model. When
the OODA loop replaced that model, the same rows are scored again with the final one (a scoring run of its own, as
`agentml score` runs it), so the scores in result.json always come from the model that was registered.

Neither the registry nor MLflow can fail the session: a registry that cannot be written is logged, a failed export
is recorded in the version and the summary, with a warning event on the session's first run. A rescoring run that
fails is the session's failure (the question asked for the scores).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from planner.ooda import TRAIN_SKILLS, last_step
from service.results import ScoredRows
from skills.refs import as_ref

if TYPE_CHECKING:
    from executor import RunResult
    from service.mlflow_export import MlflowTarget
    from service.model_versions import ModelVersion
    from service.session import SessionEnv
    from skills.plan import Plan

log = logging.getLogger("agentml.publish")


@dataclass
class Published:
    """What publishing added to the summary, and a failure (message, error type) when rescoring failed."""

    summary: dict[str, Any]
    failed: str | None = None
    failed_kind: str | None = None


def register_model(env: SessionEnv, run_id: str, plan: Plan, outputs: Mapping[str, Mapping[str, Any]],
                   summary: Mapping[str, Any]) -> ModelVersion | None:
    """Register the session's accepted model as a version; a registry that cannot be written is logged, never the
    session's failure."""
    from service.model_versions import register

    try:
        return register(env.artifacts, run_id=run_id, user=env.principal.user, plan=plan, outputs=outputs,
                        summary=summary)
    except Exception:  # noqa: BLE001 - the model and its run are complete without the registry entry
        log.exception("registering the model of run %s failed", run_id)
        return None


def publish(env: SessionEnv, first: RunResult, plan: Plan, outputs: Mapping[str, Mapping[str, Any]],
            summary: dict[str, Any]) -> Published:
    """Register, score (train-then-score) and export the final model of `plan`; returns the summary's additions."""
    version = register_model(env, first.id, plan, outputs, summary)
    added: dict[str, Any] = {}
    scored, run = session_scores(env, first, plan, outputs, version)
    if run is not None:
        added["run_ids"] = [*summary.get("run_ids", []), run.id]
        if run.status != "succeeded":
            from service.session import run_failure

            failed, kind = run_failure(run)
            return Published(added, failed, kind)
    if scored is not None:
        added["scores"] = scored.model_dump()
    if version is not None and env.mlflow is not None:
        added["mlflow"] = export(env, env.mlflow, first, version, plan, outputs, {**summary, **added})
    return Published(added)


def session_scores(env: SessionEnv, first: RunResult, plan: Plan, outputs: Mapping[str, Mapping[str, Any]],
                   version: ModelVersion | None) -> tuple[ScoredRows | None, RunResult | None]:
    """The scores of the rows the plan's `score` step names, by the final model: that step's own output when it
    scored with the final model, else a scoring run with the registered version (returned as the second value)."""
    meta = plan.metadata.get("score") or {}
    sid, table = meta.get("step"), meta.get("table")
    if not sid or sid not in outputs or not table:
        return None, None
    ref = as_ref(plan.step(sid).inputs.get("model"))
    if ref is not None and ref.step == last_step(plan, TRAIN_SKILLS, outputs):
        out = outputs[sid]
        return ScoredRows(table=table, rows=int(out["rows"]), uri=out["scores"]["uri"], run_id=first.id,
                          step=sid), None
    if version is None:
        return None, None  # no registered final model to score with: the plan's step scored with the first one
    from service.scoring import SCORE_STEP, score_plan

    run = env.run(score_plan(version, str(plan.step(sid).inputs["sql"])))
    if run.status != "succeeded":
        return None, run
    out = run.steps[SCORE_STEP].outputs or {}
    return ScoredRows(table=table, rows=int(out["rows"]), uri=out["scores"]["uri"], run_id=run.id,
                      step=SCORE_STEP), run


def export(env: SessionEnv, target: MlflowTarget, first: RunResult, version: ModelVersion, plan: Plan,
           outputs: Mapping[str, Mapping[str, Any]], summary: Mapping[str, Any]) -> dict[str, Any]:
    """Export `version` to MLflow at `target`, record the outcome in the version and as an event of the first run;
    returns the outcome for the summary."""
    from service.mlflow_export import export_version, trials_of
    from service.model_versions import record_export
    from service.results import SessionSummary

    try:
        document = SessionSummary.model_validate(summary).model_dump(mode="json")
    except ValueError:  # the export must not fail the session: MLflow gets the summary as it is
        log.exception("the summary of run %s does not validate", first.id)
        document = dict(summary)
    result = export_version(target, env.artifacts, version, trials=trials_of(plan, outputs), summary=document)
    try:
        record_export(env.artifacts, version, result)
    except Exception:  # noqa: BLE001 - the summary still says where the model went
        log.exception("recording the MLflow export of run %s failed", first.id)
    if result.status == "exported":
        env.store.append_event(first.id, "mlflow", message=f"exported to MLflow: run {result.run_id}, model "
                               f"{result.model_name} version {result.model_version}", data=result.model_dump())
    else:
        log.warning("MLflow export of run %s failed: %s", first.id, result.error)
        env.store.append_event(first.id, "warning", message=f"the model was not exported to MLflow: {result.error}",
                               data={"source": "mlflow", **result.model_dump()})
    return result.model_dump(mode="json")
