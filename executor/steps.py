"""Running one step: the same function serves the local backend (in the driver) and the Ray backend (in a task).

A step never raises out of `execute_step`: whatever happens becomes a `StepOutcome` with a user-facing message and
hint, and the traceback kept apart for operators.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from executor.errors import ExecutionError, StepCancelled
from executor.store import utcnow
from governance import GovernanceError
from skills.context import ProgressSink, RuntimeSettings, SkillContext
from skills.errors import SkillError

if TYPE_CHECKING:
    from governance import Engine, Principal
    from skills.artifacts import ArtifactStore
    from skills.registry import SkillSpec

_KNOWN_ERRORS = (SkillError, GovernanceError, ExecutionError)
_MAX_MESSAGE = 500


@dataclass
class StepJob:
    """Everything a step needs, picklable so a Ray task can rebuild the SkillContext on its worker."""

    run_id: str
    step_id: str
    spec: SkillSpec
    inputs: BaseModel
    principal: Principal
    engine: Engine
    artifacts: ArtifactStore
    settings: RuntimeSettings

    def context(self, sink: ProgressSink) -> SkillContext:
        return SkillContext(principal=self.principal, engine=self.engine, artifacts=self.artifacts,
                            settings=self.settings, run_id=self.run_id, step_id=self.step_id, on_progress=sink)


@dataclass
class StepOutcome:
    """How a step ended, as recorded in the run store."""

    status: Literal["succeeded", "failed", "cancelled"]
    started: datetime
    finished: datetime
    outputs: dict[str, Any] | None = None
    error: str | None = None
    hint: str | None = None
    error_type: str | None = None
    traceback: str | None = None

    def store_fields(self) -> dict[str, Any]:
        """The keyword arguments of RunStore.update_step (besides the status)."""
        return {"started": self.started, "finished": self.finished, "outputs": self.outputs, "error": self.error,
                "hint": self.hint, "error_type": self.error_type, "traceback": self.traceback}


def execute_step(job: StepJob, sink: ProgressSink) -> StepOutcome:
    """Call the skill and describe how it ended. Only KeyboardInterrupt/SystemExit pass through."""
    started = utcnow()
    try:
        out = job.spec.fn(job.context(sink), job.inputs)
        outputs = _outputs_json(job, out)
    except StepCancelled as exc:
        return StepOutcome("cancelled", started, utcnow(), error=exc.message, hint=exc.hint,
                           error_type=type(exc).__name__)
    except Exception as exc:
        return failure(exc, job.spec.name, started, run_id=job.run_id, step_id=job.step_id)
    return StepOutcome("succeeded", started, utcnow(), outputs=outputs)


def _outputs_json(job: StepJob, out: Any) -> dict[str, Any]:
    model = job.spec.output_model
    if not isinstance(out, model):
        raise ExecutionError(f"skill {job.spec.name!r} returned {type(out).__name__}, not {model.__name__}",
                             step=job.step_id, hint="a skill must return an instance of its output model")
    return out.model_dump(mode="json")


def failure(exc: BaseException, skill: str, started: datetime, *, run_id: str, step_id: str) -> StepOutcome:
    """A failed outcome: message and hint for users; the traceback only for the store's operators."""
    message, hint = describe(exc, skill, run_id=run_id, step_id=step_id)
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return StepOutcome("failed", started, utcnow(), error=message, hint=hint, error_type=type(exc).__name__,
                       traceback=trace)


def describe(exc: BaseException, skill: str, *, run_id: str, step_id: str) -> tuple[str, str | None]:
    """(message, hint) to show a user for `exc`. Our own errors already say what went wrong and how to fix it."""
    if isinstance(exc, _KNOWN_ERRORS):
        return str(getattr(exc, "message", exc)), getattr(exc, "hint", None)
    text = str(exc)
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE] + "..."
    return (f"unexpected {type(exc).__name__} in skill {skill!r}: {text}",
            f"this is a bug in the skill; operators find the traceback in the run store (run {run_id}, "
            f"step {step_id})")
