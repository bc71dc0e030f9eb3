"""Runs as Ray jobs on a real cluster: `ray start --head` on loopback (token authentication on, as in the Helm chart),
the API as an `agentml serve` subprocess with RAY_ADDRESS=http://127.0.0.1:<dashboard>, the run store on a shared
SQLite file. A job runs, survives the API's death, is tracked by the next API process, reads back its status and
logs; another is stopped by a cancel."""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from api_support import Server, free_port, quick_plan, small_plan, wait_for

from service.results import SessionSummary

pytestmark = pytest.mark.ray


_FIXED_PORTS = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                "metrics-export-port", "ray-client-server-port")


@dataclass(frozen=True)
class RayHead:
    """A running single-node cluster: its dashboard (job API) address and the environment its clients need."""

    address: str
    env: dict[str, str]


def _own_pids(marker: str) -> list[int]:
    """Processes whose command line names our cluster's private temp dir (only ours can)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHead]:
    """`ray start --head --block` in its own session (so stopping it touches no other Ray on this machine)."""
    temp = tempfile.mkdtemp(prefix="agentml-ray-", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    dashboard = free_port()
    venv_bin = str(Path(sys.executable).parent)
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = (tmp_path_factory.mktemp("ray") / "ray-start.log").open("wb")
    head = subprocess.Popen(
        [str(Path(venv_bin) / "ray"), "start", "--head", "--block", f"--port={free_port()}",
         f"--dashboard-port={dashboard}", "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
         "--node-ip-address=127.0.0.1", f"--temp-dir={temp}", "--disable-usage-stats",
         # the session's in-process Ray (ray_cluster) holds Ray's fixed default ports: every other port is free
         *(f"--{name}={free_port()}" for name in _FIXED_PORTS), "--min-worker-port=20002",
         "--max-worker-port=29999"],
        env={**os.environ, **env, "RAY_ADDRESS": ""}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"

    def up() -> bool:
        assert head.poll() is None, "ray start exited"
        try:
            reply = httpx.get(f"{address}/api/jobs/", timeout=3,
                              headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})
        except httpx.HTTPError:
            return False
        return reply.status_code == 200

    try:
        wait_for(up, 120, "the Ray head never answered", every=1)
        yield RayHead(address, env)
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(10)
        _kill(_own_pids(temp))  # workers and job drivers that left the process group
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _start_run(server: Server, plan: dict[str, Any]) -> str:
    response = server.post("/v1/runs", json={"plan": plan})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_runs_are_ray_jobs_that_outlive_the_api(ray_head: RayHead, server_env: Callable[..., dict[str, str]],
                                                servers: Callable[[dict[str, str]], Server], tmp_path: Path) -> None:
    env = server_env(f"sqlite:///{tmp_path / 'runs.db'}", AGENTML_RAY_ADDRESS=ray_head.address, AGENTML_RUNNER="jobs",
                     **ray_head.env)
    first = servers(env)
    assert first.get("/readyz").json()["checks"]["ray"] == "ok"
    run_id = _start_run(first, small_plan())
    stopped = _start_run(first, quick_plan())
    assert first.post(f"/v1/runs/{stopped}/cancel").status_code == 202

    wait_for(lambda: first.get(f"/v1/runs/{run_id}").json()["status"] == "running", 120, "the job never started")
    first.kill()  # the job does not depend on the API: it keeps running and writing to the store

    second = servers(env)
    try:
        run = second.get(f"/v1/runs/{run_id}").json()
        assert run["status"] in ("running", "succeeded"), run  # not "interrupted": the job is the truth
        run = _wait(second, run_id)
        assert run["status"] == "succeeded", run
        assert run["job"]["id"] == f"agentml-{run_id}"
        wait_for(lambda: second.get(f"/v1/runs/{run_id}").json()["job"]["status"] == "SUCCEEDED", 60,
                 "Ray never reported the job as succeeded")  # the driver exits just after writing its result
        assert run["metric"]["name"] == "auc" and run["metric"]["value"] > 0.6
        assert f"run {run_id} succeeded" in second.get(f"/v1/runs/{run_id}/logs").text  # the driver's stdout
        assert "<svg" in second.get(f"/v1/runs/{run_id}/report").text

        cancelled = _wait(second, stopped)
        assert cancelled["status"] == "cancelled" and cancelled["job"]["status"] == "STOPPED"
        assert "cancelled" in (cancelled["error"] or "")
        audited = second.get("/v1/audit", as_="ada", params={"user": "ann"}).json()["records"]
        assert any("customers" in r["sql"] and r["verdict"] == "allowed" for r in audited)  # the job's queries
    finally:
        second.stop()


def _wait(server: Server, run_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def done() -> bool:
        found.update(server.get(f"/v1/runs/{run_id}").json())
        return found["status"] not in ("queued", "running")

    wait_for(done, 240, f"run {run_id} never ended", every=1)
    return found


def test_the_ooda_loop_runs_inside_the_job(ray_head: RayHead, server_env: Callable[..., dict[str, str]],
                                           servers: Callable[[dict[str, str]], Server], tmp_path: Path) -> None:
    env = server_env(f"sqlite:///{tmp_path / 'runs.db'}", AGENTML_RAY_ADDRESS=ray_head.address, AGENTML_RUNNER="jobs",
                     **ray_head.env)
    server = servers(env)
    try:
        response = server.post("/v1/runs", json={"prompt": "Build a churn model and tell me why users are leaving",
                                                 "budget": {"max_trials": 2}, "iterations": 1})
        assert response.status_code == 202, response.text
        run = _wait(server, run_id := str(response.json()["id"]))
        assert run["status"] == "succeeded" and run["job"]["id"] == f"agentml-{run_id}", run
        wait_for(lambda: (server.get(f"/v1/runs/{run_id}").json()["result"] or {}).get("ooda", {}).get("status")
                 not in (None, "running"), 240, "the OODA loop never finished in the job")
        ooda = server.get(f"/v1/runs/{run_id}").json()["result"]["ooda"]
        assert ooda["status"] == "done" and ooda["error"] is None, ooda
        assert len(ooda["iterations"]) == 1 and ooda["iterations"][0]["candidates"], ooda
        events = server.get(f"/v1/runs/{run_id}/events", params={"stream": "false"}).json()["events"]
        assert [e["data"]["status"] for e in events if e["kind"] == "ooda"] == ["running", "done"]
        # the job leaves the same session document the CLI writes as result.json
        wait_for(lambda: server.get(f"/v1/runs/{run_id}/result").status_code == 200, 60, "no result document")
        doc = server.get(f"/v1/runs/{run_id}/result").json()
        jsonschema.validate(doc, SessionSummary.model_json_schema())
        assert doc["target"] == "churn" and len(doc["iterations"]) == 1 and doc["run_ids"][0] == run_id
        ooda_runs = [r for it in doc["iterations"] for r in it["run_ids"]]
        assert doc["run_ids"] == [run_id, *ooda_runs, doc["run_ids"][-1]] and len(doc["run_ids"]) == len(ooda_runs) + 2
        report_run = server.get(f"/v1/runs/{doc['run_ids'][-1]}").json()  # the final report, run inside the job
        assert report_run["status"] == "succeeded" and [s["skill"] for s in report_run["steps"]] == ["report"]
    finally:
        server.stop()
