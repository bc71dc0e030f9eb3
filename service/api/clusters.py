"""The Ray cluster the API submits its runs to: one a RAY_ADDRESS names (`RemoteCluster`), or the API's own local
head (`LocalCluster`, started on the first run, restarted after it died, stopped with the API)."""
from __future__ import annotations

import sys
from dataclasses import replace
from typing import Protocol

from executor import ExecutionError, JobConfig, RayJobs
from service.ray_head import RUN_SLOT, Head, HeadError, LocalRayHead


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

    def replaced(self, jobs: RayJobs) -> bool:
        """After a call on `jobs` failed: whether that was our own head going down (waited for), so that `jobs()`
        now gives a new one to ask again."""
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

    def replaced(self, jobs: RayJobs) -> bool:
        return False  # someone else's cluster: its errors are its own

    def job_config(self, config: JobConfig) -> JobConfig:
        return config  # the cluster's own `python` runs the entrypoint

    def close(self) -> None:
        return None


class LocalCluster:
    """The API's own Ray head on this machine (`service.ray_head`)."""

    local = True

    def __init__(self, head: LocalRayHead, *, settle_s: float = 20.0) -> None:
        self.head = head
        self.settle_s = settle_s
        self._jobs: RayJobs | None = None

    def jobs(self) -> RayJobs:
        """The job client of the running head (started now when needed), checked to answer: a head that is going
        down is waited for (up to `settle_s`) and replaced."""
        jobs = self._client(self._ensure())
        try:
            jobs.ping()
        except ExecutionError:
            if not self.replaced(jobs):
                raise
            jobs = self._client(self._ensure())
        return jobs

    def replaced(self, jobs: RayJobs) -> bool:
        head = self.head.head
        return head is None or head.address != jobs.address or self.head.wait_gone(head, self.settle_s)

    def current(self) -> RayJobs | None:
        head = self.head.head
        return self._client(head) if head is not None else None

    def lost(self) -> str | None:
        return self.head.died()

    def _ensure(self) -> Head:
        try:
            return self.head.ensure()
        except HeadError as exc:
            raise ExecutionError(exc.message, hint=exc.hint) from None

    def _client(self, head: Head) -> RayJobs:
        jobs = self._jobs
        if jobs is None or jobs.address != head.address:
            jobs = self._jobs = RayJobs(head.address, headers=head.headers)
        return jobs

    def job_config(self, config: JobConfig) -> JobConfig:
        # this interpreter (a virtual environment's, activated or not) runs the entrypoint; one run slot per job
        return replace(config, python=sys.executable, resources={RUN_SLOT: 1})

    def close(self) -> None:
        self.head.stop()
        self._jobs = None
