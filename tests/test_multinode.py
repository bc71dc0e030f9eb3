"""Two Ray nodes, as two pods: a head, and a second node in its own mount namespace where the driver's folders (the
warehouse, the CLI's output folder) are hidden under an empty tmpfs, as they would be on another machine. Artifacts
live on the S3-compatible server on loopback. `agentml run` with two training workers must succeed without worker
restarts, with one training worker on each node, and leave its model and checkpoints in the bucket.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

VENV_BIN = Path(sys.executable).parent
# Ports Ray otherwise fixes per machine (the session's in-process Ray holds them): every node gets free ones (from the
# ephemeral range, 32768 and up, so they never meet the worker port ranges below 30000).
_FIXED_PORTS = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                "metrics-export-port", "ray-client-server-port")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _isolation() -> list[str]:
    """The command prefix that gives a process a private mount namespace: as root, or in a user namespace."""
    for prefix in (["unshare", "-m", "--propagation", "private"], ["unshare", "-rm", "--propagation", "private"]):
        with contextlib.suppress(OSError):
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0:
                return prefix
    pytest.fail("this test needs a private mount namespace (unshare -m as root, or unshare -rm): run it as root "
                "or enable unprivileged user namespaces")


@dataclass(frozen=True)
class Cluster:
    address: str  # the GCS address clients join
    hidden: Path  # the driver's folder, not visible on the second node
    env: dict[str, str]


def _ray_start(args: list[str], env: dict[str, str], log: Path, prefix: list[str] | None = None,
               hide: Path | None = None) -> subprocess.Popen[bytes]:
    ports = [f"--{name}={_free_port()}" for name in _FIXED_PORTS]
    command = [str(VENV_BIN / "ray"), "start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
               *ports, *args]
    if prefix is not None and hide is not None:  # mount an empty tmpfs over the driver's folder, then become Ray
        command = [*prefix, "sh", "-c", f'mount -t tmpfs tmpfs "{hide}" && exec "$@"', "ray-node", *command]
    return subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _probe(code: str, env: dict[str, str], timeout: float = 120) -> str:
    """Run `code` in a fresh interpreter joined to the cluster (this process keeps its own Ray); its stdout."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def two_nodes(s3_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    prefix = _isolation()
    temp = tempfile.mkdtemp(prefix="agentml-mn-", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    hidden = Path(tempfile.mkdtemp(prefix="agentml-driver-", dir="/tmp"))
    logs = tmp_path_factory.mktemp("ray-logs")
    port = _free_port()
    env = {**os.environ, "AWS_ENDPOINT_URL": s3_server.endpoint, "RAY_ADDRESS": "",  # s3_server set the keys
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "OMP_WAIT_POLICY": "PASSIVE",
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    nodes = [_ray_start(["--head", f"--port={port}", "--num-cpus=1", f"--temp-dir={temp}",
                         f"--dashboard-port={_free_port()}", "--include-dashboard=true",
                         "--dashboard-host=127.0.0.1", "--min-worker-port=20002", "--max-worker-port=24999"],
                        env, logs / "head.log")]
    address = f"127.0.0.1:{port}"
    client_env = {**env, "RAY_ADDRESS": address}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the head first, then the second node joins it
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                _probe("import ray; ray.init(); print(len(ray.nodes()))", client_env, timeout=60)
                break
            time.sleep(2)
        nodes.append(_ray_start([f"--address={address}", "--num-cpus=1", "--min-worker-port=25002",
                                 "--max-worker-port=29999"], env, logs / "node2.log", prefix, hidden))
        alive = "import ray; ray.init(); print(sum(n['Alive'] for n in ray.nodes()))"
        while time.monotonic() < deadline + 60:
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                if _probe(alive, client_env, timeout=60).strip().endswith("2"):
                    break
            time.sleep(2)
        else:
            pytest.fail("the second Ray node never joined: " + (logs / "node2.log").read_text()[-2000:])
        yield Cluster(address, hidden, client_env)
    finally:
        for node in reversed(nodes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGTERM)
            try:
                node.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
        for pid in _own_pids(temp):  # workers that left the process groups
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(hidden, ignore_errors=True)


def _own_pids(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
    return pids


def test_the_second_node_cannot_see_the_driver_s_folders(two_nodes: Cluster) -> None:
    marker = two_nodes.hidden / "driver-only.txt"
    marker.write_text("on the driver's machine")
    seen = _probe(f"""
        import json, os, ray
        ray.init()
        here = ray.get_runtime_context().get_node_id()
        others = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != here]

        @ray.remote(num_cpus=1)
        def look():
            return ray.get_runtime_context().get_node_id(), os.path.exists({str(marker)!r})

        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
        print(json.dumps([ray.get(look.options(scheduling_strategy=On(n, soft=False)).remote()) for n in others]))
    """, two_nodes.env)
    found = json.loads(seen.strip().splitlines()[-1])
    assert len(found) == 1 and found[0][1] is False  # the other node has the path, but not the driver's file


def test_a_run_trains_on_both_nodes_with_artifacts_in_the_bucket(two_nodes: Cluster, s3_server) -> None:
    from service.demo import build_warehouse

    warehouse = build_warehouse(two_nodes.hidden / "warehouse").root
    out = two_nodes.hidden / "out"
    prefix = f"multinode-{secrets.token_hex(4)}"
    env = {**two_nodes.env, "AGENTML_RAY_ADDRESS": two_nodes.address, "AGENTML_ARTIFACTS": s3_server.uri(prefix)}
    ran = subprocess.run([str(VENV_BIN / "agentml"), "run", "Build a quick churn model", "--warehouse",
                          str(warehouse), "--policies", str(warehouse / "policies.yaml"), "--user", "ann", "--role",
                          "analyst", "--attr", "region=north", "--workers", "2", "--iterations", "0", "--yes",
                          "--out", str(out)], env=env, capture_output=True, text=True, timeout=900)
    assert ran.returncode == 0, ran.stderr[-4000:]
    result = json.loads((out / "result.json").read_text())
    assert result["target"] == "churn" and 0.6 < result["baseline_value"] <= 1
    keys = s3_server.keys(prefix)
    assert any(k.endswith("/model.json") for k in keys) and any("checkpoint" in k for k in keys), keys[:20]
    workers = json.loads(_probe("""
        import json, ray
        from ray.util.state import list_actors
        ray.init()
        actors = list_actors(filters=[("class_name", "=", "RayTrainWorker")], detail=True, limit=1000)
        print(json.dumps([a.node_id for a in actors]))
    """, two_nodes.env).strip().splitlines()[-1])
    # two training workers in all (a restarted worker group would add more), one on each node
    assert len(workers) == 2 and len(set(workers)) == 2, workers
