"""The OODA loop on stored runs, and the Ray job entrypoint of API runs that asked for it.

`improve_run` runs the loop on a succeeded run and keeps its iterations in the run's result under "ooda" (the API's
in-process runner calls it). `python -m service.jobs run --run-id ID [--iterations N] ...` is what the API submits as
a Ray job: `executor.jobs`' entrypoint (the same arguments), then, when the run succeeded, `improve_run` inside the
job, writing to the same run store, so a loop started through the API runs on the cluster like the run itself.
"""
from __future__ import annotations

import logging
import sys
from argparse import Namespace
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from executor import AfterRun, job_parser
from executor import job_main as run_main
from governance import Principal
from skills.plan import Plan

log = logging.getLogger("agentml.ooda")

if TYPE_CHECKING:
    from executor import RunResult, RunStore
    from governance import Engine
    from skills.artifacts import ArtifactStore
    from skills.registry import Registry


def improve_run(store: RunStore, result: RunResult, plan: Plan, principal: Principal, engine: Engine,
                artifacts: ArtifactStore, registry: Registry, iterations: int) -> None:
    """The OODA loop on a succeeded run; its iterations are kept in the run's result under "ooda"."""
    from planner.ooda import OodaError, improve
    from service.session import SessionEnv

    base = dict(result.result)
    store.update_run(result.id, result={**base, "ooda": {"status": "running", "iterations": []}})
    store.append_event(result.id, "ooda", message=f"improving: up to {iterations} iteration(s)",
                       data={"status": "running"})
    try:
        env = SessionEnv(principal, engine, artifacts, store, registry=registry)
        res = improve(plan, result, engine=engine, principal=principal, catalog=engine.catalog(principal),
                      execute=env.run, iterations=iterations, registry=registry)
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
    store.update_run(result.id, result={**base, "ooda": summary})
    store.append_event(result.id, "ooda", message=summary.get("stopped") or summary.get("error") or "done",
                       data={"status": summary["status"], "iterations": len(summary["iterations"])})


def _after(args: Namespace, store: RunStore) -> AfterRun | None:
    """What the job does once its run succeeded: the OODA loop, when `--iterations` asked for one."""
    if args.iterations <= 0:
        return None

    def improve_after(result: RunResult, engine: Engine, artifacts: ArtifactStore) -> None:
        from skills.registry import default_registry

        record = store.get_run(result.id)
        principal = Principal.model_validate(record.principal or {"user": record.user})
        improve_run(store, result, Plan.model_validate(record.plan), principal, engine, artifacts,
                    default_registry(), args.iterations)

    return improve_after


def main(argv: Sequence[str] | None = None) -> int:
    """The job entrypoint: `executor.jobs`' exit codes (0 succeeded, 1 failed or cancelled, 2 bad arguments)."""
    parser, run = job_parser("python -m service.jobs", __doc__.split("\n\n")[0])
    run.add_argument("--iterations", type=int, default=0, help="OODA iterations after the run (0: none)")
    return run_main(argv, parser=parser, after=_after)


if __name__ == "__main__":
    sys.exit(main())
