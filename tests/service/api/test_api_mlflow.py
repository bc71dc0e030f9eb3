"""A run the API starts (in-process runner) is exported to a real `mlflow server` when AGENTML_MLFLOW_URI is set,
as `agentml run` and the Ray-job entrypoint export theirs (tests/service/test_mlflow_export.py reads an export back
in detail)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from api_support import Api, small_plan, wait_for

pytestmark = pytest.mark.ray


def test_an_api_run_is_exported_to_mlflow(api_for: Callable[..., Api], mlflow_server: str, tmp_path: Path) -> None:
    import os

    import mlflow
    from mlflow import MlflowClient

    before = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_REGISTRY_URI"))
    api = api_for(f"sqlite:///{tmp_path / 'runs.db'}", mlflow_uri=mlflow_server, mlflow_experiment="api-runs")
    reply = api.post("/v1/runs", json={"plan": small_plan(rounds=6)})
    assert reply.status_code == 202, reply.text
    run_id = reply.json()["id"]
    run: dict[str, Any] = api.wait(run_id)
    assert run["status"] == "succeeded", run["error"]
    summary: dict[str, Any] = {}

    def summarized() -> bool:  # the session publishes its model after its first run ended
        summary.update(api.get(f"/v1/runs/{run_id}").json()["result"].get("summary") or {})
        return bool(summary)

    wait_for(summarized, 120, "the session never stored its summary")
    exported = summary["mlflow"]
    assert exported["status"] == "exported", exported

    # the export ran in this process (in-process runner) and left MLflow's process-wide settings as they were
    assert (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"),
            os.environ.get("MLFLOW_REGISTRY_URI")) == before
    client = MlflowClient(mlflow_server, mlflow_server)
    experiment = client.get_experiment_by_name("api-runs")
    assert experiment is not None
    found = client.get_run(exported["run_id"])
    assert found.info.experiment_id == experiment.experiment_id
    assert found.data.params["user"] == "ann"
    assert any(key.startswith("valid_") for key in found.data.metrics)
