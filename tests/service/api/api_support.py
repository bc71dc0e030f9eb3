"""Helpers of the API tests: the three users' tokens, a small real plan, and the `Api` wrapper around a live app."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

TOKENS = {"ann": "ann-token-0123456789abcdef", "bob": "bob-token-0123456789abcdef",
          "ada": "ada-token-0123456789abcdef"}
USERS: list[dict[str, Any]] = [
    {"user": "ann", "roles": ["analyst"], "attributes": {"region": "north"}},
    {"user": "bob", "roles": ["analyst"], "attributes": {"region": "south"}},
    {"user": "ada", "roles": ["admin"], "admin": True},
]
FINISHED = ("succeeded", "failed", "cancelled", "interrupted")


SELF_JOIN = ("SELECT a.customer_id, count(*) AS pairs, avg(a.amount - b.amount) AS drift "
             "FROM billing a JOIN billing b ON a.customer_id = b.customer_id GROUP BY a.customer_id")


def quick_plan() -> dict[str, Any]:
    """query -> report: a real run that needs no Ray (a second or two)."""
    return {"goal": "quick look", "steps": [
        {"id": "data", "skill": "query", "inputs": {"sql": "SELECT region, count(*) AS n FROM customers GROUP BY 1"}},
        {"id": "report", "skill": "report", "inputs": {"title": "Quick look", "notes": "customers per region"}},
    ]}


def slow_plan(steps: int = 25) -> dict[str, Any]:
    """`steps` governed self-joins of the billing history (~0.3 s each), then a report: long enough to cancel or
    kill mid-run, without Ray."""
    chain = [{"id": f"q{i}", "skill": "query", "inputs": {"sql": SELF_JOIN}} for i in range(steps)]
    return {"goal": "slow chain", "steps": [*chain, {"id": "report", "skill": "report", "inputs": {"title": "Slow"}}]}


def small_plan(rounds: int = 8, *, early_stopping: int = 20, where: str = "") -> dict[str, Any]:
    """query -> train_xgboost -> explain -> report on the demo customers: a real run that stays small."""
    sql = ("SELECT customer_id, tenure, monthly_charges, contract, payment_method, churn FROM customers" + where)
    model = {"$ref": "train.model"}
    return {"goal": "small churn model", "steps": [
        {"id": "data", "skill": "query", "inputs": {"sql": sql}},
        {"id": "train", "skill": "train_xgboost", "inputs": {
            "table": {"$ref": "data.table"}, "target": "churn", "exclude": ["customer_id"], "num_rounds": rounds,
            "early_stopping_rounds": early_stopping}},
        {"id": "explain", "skill": "explain", "inputs": {"model": model, "table": {"$ref": "data.table"},
                                                         "sample_rows": 300}},
        {"id": "report", "skill": "report", "inputs": {"title": "Small churn model", "model": model,
                                                       "metrics": {"$ref": "train.metrics"},
                                                       "importance": {"$ref": "explain.importance"}}},
    ]}


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[user]}"}


@dataclass
class Api:
    """A live app and shortcuts: `get/post(path, as_=user)`, `wait(run_id)` until the run ends."""

    client: TestClient

    def get(self, path: str, as_: str | None = "ann", **kwargs: Any) -> Any:
        return self.client.get(path, headers=auth(as_) if as_ else {}, **kwargs)

    def post(self, path: str, as_: str | None = "ann", **kwargs: Any) -> Any:
        return self.client.post(path, headers=auth(as_) if as_ else {}, **kwargs)

    def ready(self, timeout: float = 60) -> None:
        wait_for(lambda: self.client.get("/readyz").status_code == 200, timeout, "the API never became ready")

    def wait(self, run_id: str, statuses: tuple[str, ...] = FINISHED, timeout: float = 180, as_: str = "ann") -> Any:
        """The run once its status is one of `statuses` (fails after `timeout` seconds)."""
        found: dict[str, Any] = {}

        def done() -> bool:
            found.update(self.get(f"/v1/runs/{run_id}", as_=as_).json())
            return found.get("status") in statuses

        wait_for(done, timeout, f"run {run_id} never reached {statuses}: {found.get('status')} {found.get('error')}")
        return found


def wait_for(check: Callable[[], bool], timeout: float, message: str, every: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    pytest.fail(message)




def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`agentml serve` in a subprocess (service.api.serve under uvicorn), configured through AGENTML_* variables."""

    def __init__(self, env: dict[str, str], cwd: str, log: str) -> None:
        import os
        import subprocess
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        code = f"from service.api import serve; serve('127.0.0.1', {self.port})"
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env={**os.environ, **env},
                                        stdout=self._log, stderr=subprocess.STDOUT)

    def get(self, path: str, as_: str | None = "ann", **kwargs: Any) -> Any:
        import httpx

        return httpx.get(self.url + path, headers=auth(as_) if as_ else {}, timeout=30, **kwargs)

    def post(self, path: str, as_: str | None = "ann", **kwargs: Any) -> Any:
        import httpx

        return httpx.post(self.url + path, headers=auth(as_) if as_ else {}, timeout=60, **kwargs)

    def ready(self, timeout: float = 90) -> None:
        import httpx

        def up() -> bool:
            assert self.process.poll() is None, "the server exited"
            try:
                return httpx.get(self.url + "/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout, "the server never became ready", every=0.5)

    def log_text(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def kill(self) -> None:
        """SIGKILL: no lifespan shutdown, no last words."""
        self.process.kill()
        self.process.wait(30)
        self._log.close()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM: uvicorn's graceful shutdown (the lifespan closes the services)."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout)
        self._log.close()
        return int(self.process.returncode)
