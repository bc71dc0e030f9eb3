"""Ray for the executor: start or join a cluster (`ensure_ray`), and relay progress from step tasks to the driver.

Skills never call ray.init: the executor does, here, once per process. Ray is imported lazily because its import
costs about a second that local runs without Ray should not pay.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from executor.errors import ExecutionError

if TYPE_CHECKING:
    from skills.artifacts import ArtifactStore

_dashboard_url: str | None = None


def ray_init_options(address: str | None = None, *, num_cpus: int | None = None) -> dict[str, Any]:
    """The keyword arguments of `ray.init` for joining `address` (or RAY_ADDRESS), or for a local cluster."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address.startswith(("http://", "https://")):
        raise ExecutionError(
            f"RAY_ADDRESS={address} is a dashboard address, which only job submission understands",
            hint="submit the run as a Ray job, or set RAY_ADDRESS to the cluster's GCS address (host:6379) or ray://")
    if address:
        return {"address": address, "log_to_driver": False}
    # "local": a new cluster even when a `ray start` one runs on this machine (ray.init() would join that one and
    # refuse num_cpus). The dashboard stays on: Tune trials were seen to hang on leaked placement groups without it.
    return {"address": "local", "num_cpus": num_cpus, "include_dashboard": True, "log_to_driver": False}


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None) -> str | None:
    """Connect to Ray once per process; returns the dashboard URL when this call started or joined it.

    `address` (or the RAY_ADDRESS environment variable) joins an existing cluster (`host:6379`, `auto`, `ray://...`).
    Without one a local cluster starts with the dashboard on and `num_cpus` CPUs (None: all of this machine's).
    An existing connection is kept as it is.
    """
    global _dashboard_url
    import ray

    if ray.is_initialized():
        return _dashboard_url
    context = ray.init(**ray_init_options(address, num_cpus=num_cpus))
    url = getattr(context, "dashboard_url", None)
    _dashboard_url = f"http://{url}" if url and "://" not in url else url
    return _dashboard_url


def check_artifacts_reach_every_node(artifacts: ArtifactStore, nodes: Sequence[Mapping[str, Any]]) -> None:
    """Refuse, before anything runs, an artifact store that only one machine reads on a cluster of several nodes
    (`nodes` as `ray.nodes()` lists them): tasks, Train workers and Tune trials on other nodes would not find the
    tables the driver wrote, and the driver would not find their checkpoints."""
    alive = [node for node in nodes if node.get("Alive")]
    if len(alive) > 1 and not artifacts.every_node_reads:
        raise ExecutionError(
            f"the artifact store {artifacts.root} is a local folder, which the other {len(alive) - 1} node(s) of this "
            "Ray cluster cannot read", field="artifacts",
            hint="set AGENTML_ARTIFACTS to s3://bucket/prefix (gs://, hdfs:// also work), or to a path on a shared "
                 "volume mounted at the same place on every node and set AGENTML_ARTIFACTS_SHARED=true")


def check_cluster_storage(artifacts: ArtifactStore) -> None:
    """`check_artifacts_reach_every_node` on the cluster this process is connected to."""
    import ray

    check_artifacts_reach_every_node(artifacts, ray.nodes())


class ProgressRelay:
    """A tiny actor between step tasks and the driver: tasks push Progress, the driver drains it.

    `push` answers whether the run was cancelled, so a long skill stops at its next progress report.
    """

    def __init__(self) -> None:
        self._pending: list[Any] = []
        self._cancelled = False

    def push(self, progress: Any) -> bool:
        self._pending.append(progress)
        return self._cancelled

    def drain(self) -> list[Any]:
        pending, self._pending = self._pending, []
        return pending

    def cancel(self) -> None:
        self._cancelled = True


def start_relay() -> Any:
    """A ProgressRelay actor that takes no CPU (it only holds a list), so it never blocks a small cluster."""
    import ray

    return ray.remote(ProgressRelay).options(num_cpus=0).remote()
