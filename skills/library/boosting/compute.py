"""Compute: the one decision about workers, CPUs and GPUs for a training run or a Tune trial.

`scaling_for` is a pure function from cluster resources + settings to a `Compute`, which in turn gives xgboost's
`device` and threads, Ray Train's ScalingConfig and Tune's trial resources and concurrency. `require_ray` is the one
check, for skills that run on Ray whatever the backend, that the executor has started it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from skills.context import RuntimeSettings
from skills.errors import SkillError

if TYPE_CHECKING:
    from ray.train import ScalingConfig


@dataclass(frozen=True)
class Compute:
    """How a training run or a Tune trial uses the cluster."""

    num_workers: int = 1
    cpus_per_worker: int = 1
    use_gpu: bool = False
    max_concurrent_trials: int = 1
    reserved_cpus: float | None = None  # logical CPUs each worker reserves in Ray; None = cpus_per_worker
    room_cpus: float | None = None  # what each worker reserves for a streamed table (`data_room`)

    def streaming(self) -> Compute:
        """This compute for a table streamed through Ray Data: workers that would reserve every CPU of the cluster
        reserve `room_cpus` instead (see `data_room`). In-memory tables need no Data tasks and keep whole CPUs (which
        also keeps one worker per node on a cluster of small nodes)."""
        return replace(self, reserved_cpus=self.room_cpus)

    def xgb_params(self) -> dict[str, Any]:
        """xgboost's device and thread count: CUDA hist on GPU workers."""
        return {"device": "cuda" if self.use_gpu else "cpu", "nthread": self.cpus_per_worker}

    def worker_resources(self) -> dict[str, float]:
        """Ray resources of one training worker."""
        reserved = self.cpus_per_worker if self.reserved_cpus is None else self.reserved_cpus
        resources: dict[str, float] = {"CPU": float(reserved)}
        if self.use_gpu:
            resources["GPU"] = 1.0
        return resources

    def scaling_config(self) -> ScalingConfig:
        """Ray Train's ScalingConfig for these workers."""
        from ray.train import ScalingConfig

        return ScalingConfig(num_workers=self.num_workers, use_gpu=self.use_gpu,
                             resources_per_worker=self.worker_resources())

    def trial_resources(self) -> dict[str, float]:
        """Resources of one Tune trial. A multi-worker trial only drives an XGBoostTrainer whose workers hold the
        CPUs/GPUs, so the trial itself asks for no CPU (else it would block its own workers on small clusters);
        Tune refuses an empty resource bundle, hence one byte of memory."""
        if self.num_workers > 1:
            return {"cpu": 0.0, "memory": 1.0}
        return {key.lower(): value for key, value in self.worker_resources().items()}

    @property
    def reuse_actors(self) -> bool:
        """Whether Tune may reuse a finished trial's actor for the next trial: only for single-worker trials, which
        train in the actor itself. A trial that drives a Ray Train worker group cannot `reset_config()`, and Tune
        fails every trial after the first with "Trainable runner reuse requires reset_config()"."""
        return self.num_workers == 1


def scaling_for(resources: Mapping[str, float], settings: RuntimeSettings, num_workers: int | None = None) -> Compute:
    """Workers, CPUs, GPU use and trial concurrency from cluster resources (`ray.cluster_resources()`) and settings.

    GPUs: `settings.gpu_for(resources)` (false: never; auto: when the cluster has GPUs or can add GPU nodes; true:
    always, a SkillError when the cluster can never get one). A GPU asked for but not yet there is still requested,
    so the KubeRay autoscaler adds a GPU node. Concurrent Tune trials: what fits in the CPUs (and GPUs) after keeping
    one CPU for the driver, Tune's controller and Ray Data, at least 1 (so 1 on a 2-CPU machine, where Train-in-Tune
    trials were seen to contend, and 1 while GPU nodes are still to come)."""
    workers = max(1, num_workers or settings.num_workers)
    cpus = max(1, settings.cpus_per_worker)
    gpu = settings.gpu_for(resources)
    total = float(resources.get("CPU", 0.0))
    by_cpu = int(max(total - 1.0, 0.0) // (workers * cpus))
    concurrent = min(by_cpu, int(float(resources.get("GPU", 0.0)) // workers)) if gpu else by_cpu
    return Compute(num_workers=workers, cpus_per_worker=cpus, use_gpu=gpu, max_concurrent_trials=max(1, concurrent),
                   room_cpus=data_room(total, workers, cpus))


def data_room(total: float, workers: int, cpus: int) -> float | None:
    """CPUs each worker reserves so that one CPU of the cluster stays free for Ray Data, or None (all of
    `cpus`) when that one is free anyway.

    A streamed table reaches the workers through Ray Data tasks (read, split, encode), and Ray Train hands the
    workers' reservation to Ray Data as resources it may not use: workers that reserve every CPU leave Ray Data a
    budget of zero and the run waits forever (seen with 1 worker x 2 CPUs on a 2-CPU machine). The workers then
    reserve less, whole CPUs above one (Ray's rule for fractions), while xgboost still runs `cpus` threads: the data
    tasks end before the first boosting round."""
    if total <= 1.0 or workers * cpus < total:
        return None
    share = (total - 1.0) / workers
    return float(int(share)) if share >= 1.0 else max(round(share, 2), 0.01)


def cluster_compute(settings: RuntimeSettings, num_workers: int | None = None) -> Compute:
    """`scaling_for` the running Ray cluster (no resources known when Ray is not up)."""
    import ray

    resources = ray.cluster_resources() if ray.is_initialized() else {}
    return scaling_for(resources, settings, num_workers)


def require_ray(skill: str) -> None:
    """Raise a SkillError unless Ray is up: skills never call `ray.init`, the executor starts Ray for every step of
    a skill with `uses_ray=True`, whatever the backend."""
    import ray

    if not ray.is_initialized():
        raise SkillError(f"{skill} needs a running Ray cluster and Ray is not initialised", skill=skill,
                         hint="run the plan with backend='ray' (the executor starts Ray for this step), "
                              "or call ray.init() before calling the skill directly")
