"""Durability: the API process dies mid-run (SIGKILL) or stops (SIGTERM); after a restart every run is still listed
with its true state and its finished steps. A real `agentml serve` subprocess, a real run, a real kill."""
from __future__ import annotations

from collections.abc import Callable

from api_support import Server, slow_plan, wait_for

from executor import RunStore


def _midway(server: Server, run_id: str, done: int = 3) -> None:
    def progressed() -> bool:
        steps = server.get(f"/v1/runs/{run_id}").json()["steps"]
        return sum(s["status"] == "succeeded" for s in steps) >= done

    wait_for(progressed, 60, f"run {run_id} never finished {done} steps")


def test_killed_api_leaves_runs_interrupted_with_finished_steps(server_env: Callable[..., dict[str, str]],
                                                                servers: Callable[[dict[str, str]], Server],
                                                                store_url: str) -> None:
    env = server_env(store_url)
    first = servers(env)
    run_id = first.post("/v1/runs", json={"plan": slow_plan()}).json()["id"]
    _midway(first, run_id)
    first.kill()

    second = servers(env)
    try:
        listed = {r["id"]: r for r in second.get("/v1/runs").json()["runs"]}
        assert listed[run_id]["status"] == "interrupted"  # not lost, not "running" forever
        run = second.get(f"/v1/runs/{run_id}").json()
        statuses = [s["status"] for s in run["steps"]]
        finished = [s for s in run["steps"] if s["status"] == "succeeded"]
        assert len(finished) >= 3 and all(s["outputs"]["rows"] > 0 for s in finished)  # kept, with outputs
        assert statuses[-1] == "skipped" and "succeeded" not in statuses[len(finished):]
        assert "interrupted" in run["error"] and run["hint"]
        events = second.get(f"/v1/runs/{run_id}/events", params={"stream": "false"}).json()["events"]
        kinds = [e["kind"] for e in events]
        assert kinds[-1] == "run_interrupted"

        # a graceful stop also says what happened: interrupted (by the API), not cancelled (by a user)
        other = second.post("/v1/runs", json={"plan": slow_plan()}).json()["id"]
        _midway(second, other, done=2)
    finally:
        second.stop()  # uvicorn shuts down gracefully, then re-raises SIGTERM: the exit status says "signal 15"
    assert "Application shutdown complete" in second.log_text()
    store = RunStore(store_url)
    try:
        run = store.get_run(other)
        assert run.status == "interrupted" and run.steps["q0"].status == "succeeded"
    finally:
        store.close()
