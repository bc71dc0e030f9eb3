"""The Ray cluster the API submits its runs to: one a RAY_ADDRESS names (`RemoteCluster`), or the API's own local
head (`LocalCluster`, started on the first run, restarted after it died, stopped with the API)."""
from __future__ import annotations

import sys
from dataclasses import replace
from typing import Protocol

from executor import ExecutionError, JobConfig, RayJobs
from service.ray_head import RUN_SLOT, HeadError, LocalRayHead


class Cluster(Protocol):
    """Where run jobs go."""

    local: bool  # a head this process started (its runs die with it)

    def jobs(self) -> RayJobs:
        """The job client, the cluster started first when it is ours and not running. Raises ExecutionError."""
        ...

    def current(self) -> RayJobs | None:
        """The job client while the cluster runs (never starts one)."""
        ...

    def lost(self) -> str | None:
        """Why our own cluster went away since the last call (once), else None."""
        ...

    def job_config(self, config: JobConfig) -> JobConfig:
        """`config` as jobs on this cluster need it."""
        ...

    def close(self) -> None: ...


class RemoteCluster:
    """A cluster someone else runs (RAY_ADDRESS=http://head:8265): it outlives the API, and so do its jobs."""

    local = False

    def __init__(self, jobs: RayJobs) -> None:
        self._jobs = jobs

    def jobs(self) -> RayJobs:
        return self._jobs

    def current(self) -> RayJobs | None:
        return self._jobs

    def lost(self) -> str | None:
        return None

    def job_config(self, config: JobConfig) -> JobConfig:
        return config  # the cluster's own `python` runs the entrypoint

    def close(self) -> None:
        return None


class LocalCluster:
    """The API's own Ray head on this machine (`service.ray_head`)."""

    local = True

    def __init__(self, head: LocalRayHead) -> None:
        self.head = head
        self._jobs: RayJobs | None = None

    def jobs(self) -> RayJobs:
        try:
            head = self.head.ensure()
        except HeadError as exc:
            raise ExecutionError(exc.message, hint=exc.hint) from None
        if self._jobs is None or self._jobs.address != head.address:
            self._jobs = RayJobs(head.address, headers=head.headers)
        return self._jobs

    def current(self) -> RayJobs | None:
        return self._jobs if self.head.head is not None else None

    def lost(self) -> str | None:
        reason = self.head.died()
        if reason is not None:
            self._jobs = None
        return reason

    def job_config(self, config: JobConfig) -> JobConfig:
        # this interpreter (a virtual environment's, activated or not) runs the entrypoint; one run slot per job
        return replace(config, python=sys.executable, resources={RUN_SLOT: 1})

    def close(self) -> None:
        self.head.stop()
        self._jobs = None
