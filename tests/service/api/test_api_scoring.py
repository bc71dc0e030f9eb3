"""POST /v1/runs/{id}/score and GET /v1/models: a small run registers its model; the analyst scores the rows of her
region only, with reasons; another user's run, a denied column and a run without a model are refused."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from api_support import Api, quick_plan, small_plan, wait_for

pytestmark = pytest.mark.ray  # scoring runs Ray Data


def test_score_a_runs_model_through_the_api(api_for: Any, tmp_path: Path, demo: Any) -> None:
    api: Api = api_for(f"sqlite:///{tmp_path / 'runs.db'}")
    run_id = api.post("/v1/runs", json={"plan": small_plan(), "iterations": 0}).json()["id"]
    assert api.wait(run_id)["status"] == "succeeded"
    # the session registers the model once its final report ran, just after the run's own status
    wait_for(lambda: bool(api.get("/v1/models").json()["models"]), 60, "the model was never registered")
    models = api.get("/v1/models").json()["models"]
    assert [(m["run_id"], m["name"], m["version"]) for m in models] == [(run_id, "customers-churn", 1)]
    assert api.get("/v1/models", as_="bob").json()["models"] == []  # ann's model

    response = api.post(f"/v1/runs/{run_id}/score", json={"table": "customers", "where": "tenure < 12"})
    assert response.status_code == 200, response.text
    body = response.json()
    customers = pq.read_table(demo.customers, columns=["region", "tenure"]).to_pylist()
    assert body["rows"] == sum(1 for c in customers if c["region"] == "north" and c["tenure"] < 12)
    assert len(body["preview"]) == 10 and all(len(row["reasons"]) == 3 for row in body["preview"])
    assert api.get(f"/v1/runs/{body['run_id']}").json()["status"] == "succeeded"  # a recorded scoring run

    denied = api.post(f"/v1/runs/{run_id}/score", json={"where": "name = 'x'"})
    assert denied.status_code == 403 and "name" in denied.json()["error"]["message"]
    assert api.post(f"/v1/runs/{run_id}/score", json={}, as_="bob").status_code == 403  # another user's run
    no_model = api.post("/v1/runs", json={"plan": quick_plan(), "iterations": 0}).json()["id"]
    api.wait(no_model)
    missing = api.post(f"/v1/runs/{no_model}/score", json={"table": "customers"})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "no_model"
    bad = api.post(f"/v1/runs/{run_id}/score", json={"table": "customers", "limit": 0})
    assert bad.status_code == 422
