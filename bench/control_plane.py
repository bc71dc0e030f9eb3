"""Benchmark: the API as a control plane over its own local Ray head (issue 14's reliability figures).

Starts `agentml serve` (a subprocess, no RAY_ADDRESS: the API starts its own Ray head on the first run) over the demo
warehouse in local single-user mode with a fresh run store, then measures:

- concurrent: `--runs` POST /v1/runs at the same moment on the fresh server (a small churn model each: query ->
  train_xgboost -> report); how many were accepted, how many finished `succeeded`, wall time until all ended, and how
  many Ray heads the API started (must be 1).
- cancel: a long training run; seconds from POST .../cancel until the run reads `cancelled` (goal <= 5).
- ray_kill: a long training run; its raylet is killed (SIGKILL) mid-training. /healthz is polled every 0.2 s from the
  kill until the run ends: uptime = answered polls / polls (goal 1.0); seconds until the run reads `interrupted`;
  then POST .../resume (finished steps kept: `kept_steps_rerun` must be 0) and a new run, both must succeed on a new
  head.
- orphans: seconds after SIGTERM of the API until no process of its Ray heads is left.

Last line: `RESULT concurrent_ok=<n>/<runs> cancel_s=<x> uptime=<x> interrupted_s=<x> resume=<status> next=<status>`.

    PYTHONPATH=. .venv/bin/python bench/control_plane.py [--runs 10] [--out test-artifacts/control_plane.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from service.demo import build_warehouse
from service.ray_head import marked_pids

FINISHED = ("succeeded", "failed", "cancelled", "interrupted")


def small_plan(rounds: int) -> dict[str, Any]:
    model = {"$ref": "train.model"}
    return {"goal": "churn model", "steps": [
        {"id": "data", "skill": "query", "inputs": {
            "sql": "SELECT tenure, monthly_charges, contract, payment_method, churn FROM customers"}},
        {"id": "train", "skill": "train_xgboost", "inputs": {"table": {"$ref": "data.table"}, "target": "churn",
                                                             "num_rounds": rounds, "early_stopping_rounds": 0}},
        {"id": "report", "skill": "report", "inputs": {"title": "churn", "model": model,
                                                       "metrics": {"$ref": "train.metrics"}}}]}


class Api:
    """`agentml serve` in a subprocess, with the admin token it prints."""

    def __init__(self, root: Path, warehouse: Path, runs: int) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "AGENTML_WAREHOUSE": str(warehouse), "AGENTML_RUN_STORE_URL": f"sqlite:///{root}/r.db",
               "AGENTML_ARTIFACTS": str(root / "artifacts"), "RAY_ADDRESS": "", "AGENTML_RAY_ADDRESS": "",
               "AGENTML_MAX_ACTIVE_RUNS_PER_USER": str(runs + 5)}
        self.log = open(root / "serve.log", "wb")  # noqa: SIM115 - closed in stop()
        code = f"from service.api import serve; serve('127.0.0.1', {self.port})"
        self.process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self.token = self._token(root / "serve.log")

    def _token(self, log: Path) -> str:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            lines = log.read_text(errors="replace").splitlines()
            for i, line in enumerate(lines):
                if "admin token" in line and i + 1 < len(lines):
                    return lines[i + 1].strip()
            time.sleep(0.3)
        raise RuntimeError("the server printed no token")

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, headers={"Authorization": f"Bearer {self.token}"},
                             timeout=60, **kwargs)

    def ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=3).status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError("the server never became ready")

    def run(self, plan: dict[str, Any]) -> str | None:
        reply = self.call("POST", "/v1/runs", json={"plan": plan})
        return str(reply.json()["id"]) if reply.status_code == 202 else None

    def status(self, run_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/v1/runs/{run_id}").json())

    def wait(self, run_id: str, timeout: float = 900) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.status(run_id)
            if run["status"] in FINISHED:
                return run
            time.sleep(0.5)
        raise RuntimeError(f"run {run_id} never ended")

    def training(self, run_id: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.call("GET", f"/v1/runs/{run_id}/events", params={"stream": "false"}).json()["events"]
            if any(e["kind"] == "progress" and e["step"] == "train" for e in events):
                return
            time.sleep(0.3)
        raise RuntimeError(f"run {run_id} never trained")

    def markers(self) -> list[str]:
        found = []
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError):
                args = (entry / "cmdline").read_bytes().decode().split("\0")
                if "service.ray_head" in args and f"{self.process.pid}" == args[args.index("--parent") + 1]:
                    found.append(args[args.index("--marker") + 1])
        return found


def concurrent(api: Api, runs: int) -> dict[str, Any]:
    started = time.monotonic()
    with ThreadPoolExecutor(runs) as pool:
        ids = list(pool.map(lambda _: api.run(small_plan(20)), range(runs)))
    ended = [api.wait(run_id) for run_id in ids if run_id is not None]
    return {"runs": runs, "accepted": sum(i is not None for i in ids),
            "succeeded": sum(r["status"] == "succeeded" for r in ended),
            "seconds": round(time.monotonic() - started, 1), "heads": len(api.markers())}


def cancel(api: Api) -> dict[str, Any]:
    run_id = api.run(small_plan(5000))
    assert run_id is not None
    api.training(run_id)
    asked = time.monotonic()
    api.call("POST", f"/v1/runs/{run_id}/cancel")
    while api.status(run_id)["status"] not in FINISHED:
        time.sleep(0.05)
    return {"status": api.status(run_id)["status"], "seconds": round(time.monotonic() - asked, 2)}


def ray_kill(api: Api) -> dict[str, Any]:
    run_id = api.run(small_plan(5000))
    assert run_id is not None
    api.training(run_id)
    marker = api.markers()[0]
    raylet = next(p for p in marked_pids(marker) if b"raylet" in Path(f"/proc/{p}/cmdline").read_bytes())
    os.kill(raylet, signal.SIGKILL)
    killed, polls, answered = time.monotonic(), 0, 0
    while api.status(run_id)["status"] not in FINISHED:
        polls += 1
        with contextlib.suppress(httpx.HTTPError):
            answered += httpx.get(api.url + "/healthz", timeout=2).status_code == 200
        time.sleep(0.2)
    lost = api.status(run_id)
    interrupted_s = time.monotonic() - killed
    kept = {s["id"]: s["finished"] for s in lost["steps"] if s["status"] == "succeeded"}
    api.call("POST", f"/v1/runs/{run_id}/resume")
    resumed = api.wait(run_id)
    rerun = sum(1 for s in resumed["steps"] if s["id"] in kept and s["finished"] != kept[s["id"]])
    following = api.run(small_plan(20))
    return {"status": lost["status"], "error": lost["error"], "interrupted_s": round(interrupted_s, 1),
            "uptime": round(answered / max(polls, 1), 3), "polls": polls, "resume": resumed["status"],
            "kept_steps": len(kept), "kept_steps_rerun": rerun,
            "next": api.wait(following)["status"] if following else "refused", "heads_started": len(api.markers())}


def stop(api: Api) -> dict[str, Any]:
    markers = api.markers()
    asked = time.monotonic()
    api.process.send_signal(signal.SIGTERM)
    api.process.wait(120)
    while any(marked_pids(m) for m in markers) and time.monotonic() - asked < 60:
        time.sleep(0.2)
    api.log.close()
    return {"orphans": sum(len(marked_pids(m)) for m in markers), "seconds": round(time.monotonic() - asked, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("test-artifacts/control_plane.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agentml-cp-") as tmp:
        root = Path(tmp)
        warehouse = build_warehouse(root / "warehouse").root
        api = Api(root, warehouse, args.runs)
        result: dict[str, Any] = {}
        try:
            api.ready()
            result["concurrent"] = concurrent(api, args.runs)
            result["cancel"] = cancel(api)
            result["ray_kill"] = ray_kill(api)
        finally:
            result["stop"] = stop(api)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    c, k = result["concurrent"], result["ray_kill"]
    print(f"RESULT concurrent_ok={c['succeeded']}/{c['runs']} cancel_s={result['cancel']['seconds']} "
          f"uptime={k['uptime']} interrupted_s={k['interrupted_s']} resume={k['resume']} next={k['next']} "
          f"orphans={result['stop']['orphans']}")


if __name__ == "__main__":
    main()
