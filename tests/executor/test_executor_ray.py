"""The ray backend end to end on a real local Ray cluster: steps as tasks, governed reads in workers, progress relayed
to the driver and recorded, failures, cancel; and Ray started for uses_ray skills under the local backend."""
from __future__ import annotations

import threading
import time

import pytest
from exec_skills import make_plan, ref

from executor import ExecutionError, RunEvent, RunStore, ensure_ray, run_plan
from executor.backends import RayBackend
from executor.ray_support import ray_init_options
from executor.steps import StepJob
from skills import RuntimeSettings

pytestmark = pytest.mark.ray


@pytest.fixture
def run(ray_cluster, engine, artifacts, registry, analyst):
    def go(plan, **kwargs):
        principal = kwargs.pop("principal", analyst)
        options = {"engine": engine, "artifacts": artifacts, "registry": registry, "backend": "ray", **kwargs}
        return run_plan(plan, principal, **options)
    return go


def test_a_plan_runs_as_ray_tasks_with_governed_reads_in_the_workers(run):
    store = RunStore()
    plan = make_plan(
        ("q", "read", {"sql": "SELECT id, region, spend FROM customers"}),
        ("c", "count", {"table": ref("q.table")}),
        ("s", "slow", {"ticks": 3, "delay": 0.01}),
        ("bad", "read", {"sql": "SELECT email FROM customers"}),
        ("after_bad", "count", {"table": ref("bad.table")}),
    )
    result = run(plan, store=store)
    steps = result.steps
    assert result.status == "failed" and result.backend == "ray" and result.failed_step == "bad"
    assert result.outputs("q")["rows"] == 3  # the engine was rebuilt in the worker with the analyst's row filter
    assert result.outputs("c") == {"rows": 3, "compute": "ray"}
    assert result.outputs("s") == {"ticks": 3, "compute": "ray"}
    assert steps["bad"].error_type == "PolicyViolation" and "email" in steps["bad"].error and steps["bad"].hint
    assert steps["after_bad"].status == "skipped" and "'bad'" in steps["after_bad"].error
    progress = [e for e in store.events(result.id) if e.kind == "progress" and e.step == "s"]
    assert [e.data["done"] for e in progress] == [1, 2, 3]


def test_the_skill_runs_in_another_process(run):
    result = run(make_plan(("p", "ray_probe", {})))
    assert result.outputs("p") == {"compute": "ray", "ray_initialized": True}


def test_a_bug_in_a_worker_is_recorded_without_a_traceback_for_users(run):
    step = run(make_plan(("b", "buggy", {}))).steps["b"]
    assert step.status == "failed" and step.error_type == "ZeroDivisionError" and "Traceback" not in step.error
    assert "ZeroDivisionError" in step.traceback


def test_cancel_stops_a_reporting_task_through_the_relay(run):
    cancel, seen = threading.Event(), []

    def on_event(event: RunEvent) -> None:
        seen.append(event)
        if event.kind == "progress" and event.data["done"] == 2:
            cancel.set()

    plan = make_plan(("s", "slow", {"ticks": 200, "delay": 0.05}), ("after", "add", {"a": 1, "b": 1}))
    result = run(plan, cancel=cancel, on_progress=on_event)
    assert result.status == "cancelled"
    assert result.steps["s"].status == "cancelled" and result.steps["after"].status == "cancelled"
    assert max(e.data["done"] for e in seen if e.kind == "progress") < 50  # 200 ticks would take 10 s


def test_cancel_interrupts_a_silent_task(run):
    cancel, asked = threading.Event(), []

    def ask() -> None:
        asked.append(time.monotonic())
        cancel.set()

    threading.Timer(1.0, ask).start()
    result = run(make_plan(("z", "sleeper", {"ticks": 600, "delay": 0.1})), cancel=cancel)
    assert result.status == "cancelled" and result.steps["z"].status == "cancelled"
    # the polite cancel, well before the 10 s grace period ends (timed from the request: a loaded machine may be
    # slow to start the task, which is not what this measures)
    assert time.monotonic() - asked[0] < 8


def test_a_blocked_task_is_killed_after_the_grace_period(ray_cluster, engine, artifacts, registry, analyst):
    spec = registry.get("blocker")
    job = StepJob("r1", "b", spec, spec.input_model(ticks=1, delay=60.0), analyst, engine, artifacts,
                  RuntimeSettings(compute="ray"))
    cancel, backend = threading.Event(), RayBackend(grace_s=0.5)
    threading.Timer(1.0, cancel.set).start()
    began = time.monotonic()
    outcome = backend.run(job, lambda _p: None, cancel)
    backend.close()
    assert outcome.status == "cancelled" and time.monotonic() - began < 15


def test_a_uses_ray_skill_gets_ray_under_the_local_backend(run):
    result = run(make_plan(("p", "ray_probe", {}), ("n", "numbers", {"n": 2})), backend="local")
    assert result.outputs("p") == {"compute": "ray", "ray_initialized": True}


def test_ensure_ray_keeps_an_existing_connection(ray_cluster):
    import ray

    before = ray.get_runtime_context().get_node_id()
    ensure_ray(num_cpus=64)  # already connected: nothing is started, the test cluster keeps its 2 CPUs
    assert ray.get_runtime_context().get_node_id() == before and ray.cluster_resources()["CPU"] == 2


def test_ray_init_options(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_init_options(num_cpus=2) == {"address": "local", "num_cpus": 2, "include_dashboard": True,
                                            "log_to_driver": False}
    assert ray_init_options("10.0.0.1:6379")["address"] == "10.0.0.1:6379"
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert ray_init_options()["address"] == "ray://head:10001"
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    with pytest.raises(ExecutionError, match="dashboard address") as err:
        ray_init_options()
    assert "job" in err.value.hint


def test_gpus_asked_for_on_a_cluster_that_can_never_get_one_fail_before_any_step(run):
    store = RunStore()
    plan = make_plan(("p", "ray_probe", {}))
    with pytest.raises(ExecutionError, match="no GPU") as err:
        run(plan, store=store, settings=RuntimeSettings(use_gpu=True))
    assert "AGENTML_USE_GPU" in (err.value.hint or "")
    (record,) = store.list_runs()
    assert record.status == "failed" and "no GPU" in (record.error or "")
    assert record.steps["p"].status == "pending"  # nothing ran
