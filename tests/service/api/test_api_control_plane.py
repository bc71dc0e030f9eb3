"""The API as a control plane, on real Ray: `agentml serve` without RAY_ADDRESS starts one local Ray head of its own
(as its own process, once, however many runs arrive at once) and every run is a Ray job on it. Concurrent first runs
all finish; cancel mid-training ends `cancelled` within 5 s; killing the head mid-run leaves the API answering and the
run `interrupted`; resuming it runs only its unfinished steps; the next run starts a new head; the API's stop, and
its kill -9, leave no Ray process behind. (bench/control_plane.py measures the same with 10 concurrent runs.)"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from api_support import FINISHED, Server, quick_plan, small_plan, wait_for

from service.ray_head import marked_pids

pytestmark = pytest.mark.ray


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def head_markers(server: Server) -> list[str]:
    """The markers of the Ray heads this API process started (one guard process per head)."""
    markers = []
    for pid in _children(server.process.pid):
        with contextlib.suppress(OSError):
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            if "service.ray_head" in args:
                markers.append(args[args.index("--marker") + 1])
    return markers


def _status(server: Server, run_id: str) -> dict[str, Any]:
    return dict(server.get(f"/v1/runs/{run_id}").json())


def _wait(server: Server, run_id: str, timeout: float = 300) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def done() -> bool:
        found.update(_status(server, run_id))
        return found["status"] in FINISHED

    wait_for(done, timeout, f"run {run_id} never ended", every=0.5)
    return found


def _start(server: Server, plan: dict[str, Any]) -> str:
    reply = server.post("/v1/runs", json={"plan": plan})
    assert reply.status_code == 202, reply.text
    return str(reply.json()["id"])


def _training(server: Server, run_id: str) -> bool:
    events = server.get(f"/v1/runs/{run_id}/events", params={"stream": "false"}).json()["events"]
    return any(e["kind"] == "progress" and e["step"] == "train" for e in events)


def test_serve_is_a_control_plane_over_its_own_ray(server_env: Callable[..., dict[str, str]],
                                                   servers: Callable[[dict[str, str]], Server],
                                                   tmp_path: Path) -> None:
    env = server_env(f"sqlite:///{tmp_path / 'runs.db'}", AGENTML_RUNNER="jobs", AGENTML_MAX_CONCURRENT_RUNS="2",
                     AGENTML_MAX_ACTIVE_RUNS_PER_USER="10")
    server = servers(env)
    assert head_markers(server) == []  # the head starts with the first run, not before

    # concurrent first runs: one head, every run a job, all finish
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda _: _start(server, quick_plan()), range(4)))
    runs = [_wait(server, run_id) for run_id in ids]
    assert [r["status"] for r in runs] == ["succeeded"] * 4, [(r["status"], r["error"]) for r in runs]
    assert all(r["job"]["id"] == f"agentml-{r['id']}" for r in runs)
    assert len(head_markers(server)) == 1

    # cancel mid-training: "cancelled" (not "interrupted") within 5 s
    training = _start(server, small_plan(rounds=5000, early_stopping=0))
    wait_for(lambda: _training(server, training), 180, "training never reported progress", every=0.5)
    asked = time.monotonic()
    assert server.post(f"/v1/runs/{training}/cancel").status_code == 202
    wait_for(lambda: _status(server, training)["status"] in FINISHED, 5, "the cancel took more than 5 s", every=0.1)
    cancelled = _wait(server, training)
    assert cancelled["status"] == "cancelled", cancelled
    print(f"cancel -> cancelled in {time.monotonic() - asked:.1f} s")

    # the head dies mid-run: the API stays up, the run is interrupted, resume finishes it, a new head takes it
    victim = _start(server, small_plan(rounds=5000, early_stopping=0))
    wait_for(lambda: _training(server, victim), 180, "training never reported progress", every=0.5)
    marker = head_markers(server)[0]
    raylet = [pid for pid in marked_pids(marker) if "raylet" in Path(f"/proc/{pid}/cmdline").read_bytes().decode()]
    assert raylet
    os.kill(raylet[0], signal.SIGKILL)
    meanwhile = _start(server, quick_plan())  # accepted while the head goes down: no 503
    lost = _wait(server, victim, timeout=60)
    assert lost["status"] == "interrupted" and "Ray head stopped" in lost["error"], lost
    assert _wait(server, meanwhile)["status"] in {"succeeded", "interrupted"}  # on the new head, or the dying one
    assert server.get("/healthz").status_code == 200
    wait_for(lambda: not marked_pids(marker), 30, "processes of the dead head remain")
    kept = {s["id"]: s["finished"] for s in lost["steps"] if s["status"] == "succeeded"}
    assert "data" in kept

    resumed = server.post(f"/v1/runs/{victim}/resume")
    assert resumed.status_code == 202, resumed.text
    done = _wait(server, victim)
    assert done["status"] == "succeeded" and done["job"]["id"] == f"agentml-{victim}-r1", done
    assert {s["id"]: s["finished"] for s in done["steps"] if s["id"] in kept} == kept  # not run again
    assert len(head_markers(server)) == 1 and head_markers(server)[0] != marker  # a new head
    assert _wait(server, _start(server, quick_plan()))["status"] == "succeeded"

    # the API stops: so does its head, with every process it started
    new = head_markers(server)[0]
    assert marked_pids(new)
    assert server.stop() == -signal.SIGTERM  # graceful shutdown, then uvicorn re-raises the signal
    wait_for(lambda: not marked_pids(new), 30, "Ray processes outlived the API")


def test_a_killed_api_leaves_no_ray_behind(server_env: Callable[..., dict[str, str]],
                                           servers: Callable[[dict[str, str]], Server], tmp_path: Path) -> None:
    env = server_env(f"sqlite:///{tmp_path / 'runs.db'}", AGENTML_RUNNER="jobs")
    server = servers(env)
    run_id = _start(server, small_plan(rounds=5000, early_stopping=0))
    wait_for(lambda: _status(server, run_id)["status"] == "running", 180, "the run never started", every=0.5)
    marker = head_markers(server)[0]
    server.kill()
    killed = time.monotonic()
    wait_for(lambda: not marked_pids(marker), 30, "Ray processes outlived the killed API", every=0.5)
    print(f"orphans gone {time.monotonic() - killed:.1f} s after kill -9")

    second = servers(env)  # its own head later; the run of the killed one is interrupted, and can be resumed
    try:
        run = _status(second, run_id)
        assert run["status"] == "interrupted" and "stopped" in run["error"], run
    finally:
        second.stop()
