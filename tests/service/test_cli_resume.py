"""`agentml resume RUN --out DIR`: a cancelled CLI run goes on from its first unfinished step, in a subprocess, on the
demo warehouse; its finished steps keep their outputs and are not run again."""
from __future__ import annotations

import threading
from pathlib import Path

from test_cli import agentml, no_trace

from executor import RunEvent, RunStore, open_engine, run_plan
from governance import Principal
from service.demo import build_warehouse
from skills.artifacts import ArtifactStore
from skills.plan import Plan
from skills.registry import load_registry

SELF_JOIN = ("SELECT a.customer_id, count(*) AS pairs FROM billing a JOIN billing b "
             "ON a.customer_id = b.customer_id GROUP BY a.customer_id")


def _cancelled_run(out: Path, warehouse: Path) -> str:
    """A run of six queries in `out`'s run store, cancelled once its first query finished."""
    plan = Plan.model_validate({"goal": "chain", "steps": [
        {"id": f"q{i}", "skill": "query", "inputs": {"sql": SELF_JOIN}} for i in range(6)]})
    cancel = threading.Event()

    def after_first(event: RunEvent) -> None:
        if event.kind == "step" and event.step == "q0" and event.data.get("status") == "succeeded":
            cancel.set()

    store = RunStore(f"sqlite:///{out / 'runs.db'}")
    run = run_plan(plan, Principal(user="tester", roles=["local"]), engine=open_engine(warehouse, None),
                   artifacts=ArtifactStore(out / "artifacts"), store=store, registry=load_registry(),
                   on_progress=after_first, cancel=cancel)
    assert run.status == "cancelled" and run.steps["q0"].status == "succeeded", run.steps
    assert run.steps["q5"].status == "cancelled"
    return run.id


def test_resume_finishes_a_cancelled_run_without_rerunning_its_finished_steps(tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "wh").root
    out = tmp_path / "out"
    run_id = _cancelled_run(out, warehouse)
    before = RunStore(f"sqlite:///{out / 'runs.db'}").get_run(run_id).steps["q0"].finished

    proc = agentml("resume", run_id, "--out", str(out), "--warehouse", str(warehouse), cwd=tmp_path)
    no_trace(proc)
    assert f"resuming run {run_id}: 1 finished step(s) kept (q0)" in proc.stderr.replace("\n", " ")
    after = RunStore(f"sqlite:///{out / 'runs.db'}").get_run(run_id)
    assert after.status == "succeeded" and all(s.status == "succeeded" for s in after.steps.values())
    assert after.steps["q0"].finished == before  # kept, not run again
    assert proc.returncode == 4 and "no model" in proc.stderr  # a plan of queries trains nothing: said so

    again = agentml("resume", run_id, "--out", str(out), "--warehouse", str(warehouse), cwd=tmp_path)
    assert again.returncode == 4 and "only an interrupted, failed or cancelled run" in again.stderr
    unknown = agentml("resume", "nosuchrun", "--out", str(out), "--warehouse", str(warehouse), cwd=tmp_path)
    assert unknown.returncode == 2 and "nosuchrun" in unknown.stderr
    no_trace(unknown)
