"""The Ray job entrypoint of API runs.

`python -m service.jobs run --run-id ID [--iterations N] ...` is what the API submits as a Ray job: `executor.jobs`'
entrypoint (the same arguments), then, when the run succeeded, `service.session.finish_session` inside the job (the
same OODA function the CLI and the API's in-process runner use), writing to the same run store, so a loop started
through the API runs on the cluster like the run itself.
"""
from __future__ import annotations

import sys
from argparse import Namespace
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from executor import AfterRun, job_parser
from executor import job_main as run_main
from governance import Principal
from service.mlflow_export import MlflowTarget
from service.session import SessionEnv, finish_session
from service.settings import Settings, configure_process
from skills.plan import Plan
from skills.registry import Registry, load_registry

if TYPE_CHECKING:
    from executor import RunResult, RunStore
    from governance import Engine
    from skills.artifacts import ArtifactStore


def _after(registry: Registry, args: Namespace, store: RunStore) -> AfterRun | None:
    """What the job does once its run succeeded: the OODA loop when `--iterations` asked for one, then the
    session's summary (the same one the CLI writes as result.json)."""

    def finish_after(result: RunResult, engine: Engine, artifacts: ArtifactStore) -> None:
        record = store.get_run(result.id)
        principal = Principal.model_validate(record.principal or {"user": record.user})
        env = SessionEnv(principal, engine, artifacts, store, registry=registry,
                         mlflow=MlflowTarget.from_settings(Settings()))
        finish_session(env, result, Plan.model_validate(record.plan), iterations=args.iterations)

    return finish_after


def main(argv: Sequence[str] | None = None) -> int:
    """The job entrypoint: `executor.jobs`' exit codes (0 succeeded, 1 failed or cancelled, 2 bad arguments)."""
    parser, run = job_parser("python -m service.jobs", __doc__.split("\n\n")[0])
    run.add_argument("--iterations", type=int, default=0, help="OODA iterations after the run (0: none)")
    configure_process()
    registry = load_registry()
    return run_main(argv, registry=registry, parser=parser, after=partial(_after, registry))


if __name__ == "__main__":
    sys.exit(main())
