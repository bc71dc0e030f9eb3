"""The experiment tracker's API on a live app (SQLite and PostgreSQL stores): the runs list's filters, search, sort and
pages; comparing runs; a run's artifacts and their downloads, governed like the run; /docs without internet.

Runs are recorded in the app's own store with the outputs real steps write (a model with its per-round history, an
evaluation, importance), so each check is exact; the browser test runs the real thing end to end."""
from __future__ import annotations

from typing import Any

import pytest
from api_support import Api, quick_plan

from executor import RunStore
from governance import Principal
from service.api.services import Services
from skills.artifacts import ArtifactStore
from skills.plan import Plan

ANN = Principal(user="ann", roles=["analyst"], attributes={"region": "north"})
BOB = Principal(user="bob", roles=["analyst"], attributes={"region": "south"})


def _services(api: Api) -> Services:
    services: Services = api.client.app.state.services  # type: ignore[attr-defined]
    return services


def _model(auc: float, eta: float, rounds: int) -> dict[str, Any]:
    return {"uri": "memory://model.json", "task": "classification", "target": "churn", "features": ["tenure", "fee"],
            "params": {"eta": eta, "max_depth": 4}, "num_rounds": rounds, "best_iteration": rounds - 1,
            "metrics": {"auc": auc}, "history": {"auc": [auc - 0.05 + 0.05 * i / rounds for i in range(rounds)]}}


def record(store: RunStore, principal: Principal, goal: str, *, cv: float | None, rows: int = 1000,
           status: str = "succeeded", importance: dict[str, float] | None = None) -> str:
    """A finished run with the outputs its train, evaluate and explain steps would have written."""
    plan = Plan.model_validate({"goal": goal, "steps": [
        {"id": "train", "skill": "train_xgboost", "inputs": {"target": "churn"}},
        {"id": "evaluate", "skill": "evaluate", "inputs": {}},
        {"id": "explain", "skill": "explain", "inputs": {}}]})
    run_id = store.create_run(plan, principal, prompt=goal)
    if cv is not None:
        store.update_step(run_id, "train", "succeeded", outputs={"model": _model(cv - 0.01, 0.1 if rows > 500 else 0.3,
                                                                                 40), "metrics": {"auc": cv - 0.01}})
        store.update_step(run_id, "evaluate", "succeeded", outputs={
            "metrics": {"auc": cv - 0.02}, "cv_metrics": {"auc": cv}, "cv_folds": [{"auc": cv}] * 5,
            "metric_name": "auc", "metric_value": cv - 0.02, "curves": {}})
        store.update_step(run_id, "explain", "succeeded", outputs={"importance": [
            {"feature": f, "importance": v} for f, v in (importance or {"tenure": 0.6, "fee": 0.4}).items()]})
        summary = {"goal": goal, "task": "classification", "target": "churn", "metric_name": "auc",
                   "metric_value": cv, "rows": rows, "elapsed_s": rows / 100, "run_ids": [run_id]}
        store.finish_run(run_id, status, result={"summary": summary})  # type: ignore[arg-type]
    else:
        store.finish_run(run_id, status)  # type: ignore[arg-type]
    return run_id


@pytest.fixture
def seeded(api: Api) -> dict[str, str]:
    store = _services(api).store
    return {"low": record(store, ANN, "churn by contract", cv=0.81, rows=2000),
            "high": record(store, ANN, "churn by tenure", cv=0.86, rows=400,
                           importance={"tenure": 0.2, "fee": 0.7, "region": 0.1}),
            "failed": record(store, ANN, "spend regression", cv=None, status="failed"),
            "bob": record(store, BOB, "bob's churn", cv=0.9)}


def _ids(api: Api, query: str, as_: str = "ann") -> list[str]:
    response = api.get(f"/v1/runs?{query}", as_=as_)
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["runs"]]


def test_runs_list_sorts_filters_searches_and_pages(api: Api, seeded: dict[str, str]) -> None:
    assert _ids(api, "sort=metric&order=desc") == [seeded["high"], seeded["low"], seeded["failed"]]  # no metric: last
    assert _ids(api, "sort=metric&order=asc")[:2] == [seeded["low"], seeded["high"]]
    assert _ids(api, "sort=rows&order=asc")[:2] == [seeded["high"], seeded["low"]]
    assert _ids(api, "status=failed") == [seeded["failed"]]
    assert set(_ids(api, "q=CHURN")) == {seeded["low"], seeded["high"], seeded["failed"]}  # goal or plan; not bob's
    assert _ids(api, "q=tenure") == [seeded["high"]]
    assert _ids(api, "q=100%25") == []  # % is a character, not a wildcard
    assert set(_ids(api, "task=classification")) == {seeded["low"], seeded["high"]}
    page = api.get("/v1/runs?limit=2&offset=2&sort=metric").json()
    assert page["total"] == 3 and page["limit"] == 2 and page["offset"] == 2 and len(page["runs"]) == 1
    assert set(_ids(api, "q=churn", as_="ada")) == {*seeded.values()}  # admins: everyone's
    assert _ids(api, "user=bob", as_="ada") == [seeded["bob"]]
    assert api.get("/v1/runs?user=bob").status_code == 403


def test_runs_list_shows_the_metric_for_what_it_is_with_its_columns(api: Api, seeded: dict[str, str]) -> None:
    [run] = [r for r in api.get("/v1/runs").json()["runs"] if r["id"] == seeded["high"]]
    assert run["metric"] == {"name": "auc", "value": 0.86, "protocol": "cross-validated", "folds": 5,
                             "holdout": pytest.approx(0.84), "label": "cross-validated auc (5-fold)"}
    assert run["facts"] == {"task": "classification", "target": "churn", "rows": 400, "rounds": 40, "eta": 0.3,
                            "wall_s": 4.0}


@pytest.mark.parametrize("query", ["sort=bogus", "order=sideways", "limit=0", "limit=501", "offset=-1",
                                   "status=done", "task=poetry", "q=", "unknown=1"])
def test_bad_runs_list_queries_name_the_problem(api: Api, query: str) -> None:
    response = api.get(f"/v1/runs?{query}")
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "request_invalid" and error["problems"][0]["field"] == f"query.{query.split('=')[0]}"


def test_compare_lines_up_params_metrics_curves_and_importance(api: Api, seeded: dict[str, str]) -> None:
    response = api.get(f"/v1/compare?runs={seeded['low']},{seeded['high']}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["run"]["id"] for s in body["runs"]] == [seeded["low"], seeded["high"]]
    params = {r["name"]: r for r in body["params"]}
    assert params["eta"]["values"] == [0.1, 0.3] and params["eta"]["differs"]
    assert params["max_depth"]["values"] == [4, 4] and not params["max_depth"]["differs"]
    metrics = {r["name"]: r["values"] for r in body["metrics"]}
    assert metrics["cross-validated auc"] == [0.81, 0.86]
    assert all(len(s["curve"]) == 40 and s["curve_metric"] == "auc" for s in body["runs"])
    importance = {r["name"]: r["values"] for r in body["importance"]}
    assert importance == {"fee": [0.4, 0.7], "tenure": [0.6, 0.2], "region": [None, 0.1]}
    assert body["importance"][0]["name"] == "fee"  # largest first


def test_compare_shows_only_runs_the_caller_may_see(api: Api, seeded: dict[str, str]) -> None:
    hidden = api.get(f"/v1/compare?runs={seeded['low']},{seeded['bob']}")
    assert hidden.status_code == 404 and seeded["bob"] in hidden.json()["error"]["message"]
    missing = api.get(f"/v1/compare?runs={seeded['low']},nosuchrun")
    assert missing.status_code == 404  # the same answer: bob's run ids are not confirmed to ann
    assert api.get(f"/v1/compare?runs={seeded['low']},{seeded['bob']}", as_="ada").status_code == 200
    for bad in (seeded["low"], f"{seeded['low']},../etc", ",".join(f"run{i}" for i in range(11))):
        response = api.get(f"/v1/compare?runs={bad}")
        assert response.status_code == 422 and "2 to 10 run ids" in response.json()["error"]["message"]


def test_artifacts_are_listed_and_downloaded_only_by_their_owner(api: Api) -> None:
    created = api.post("/v1/runs", json={"plan": quick_plan()}).json()
    run = api.wait(created["id"])
    assert run["status"] == "succeeded"
    listed = api.get(f"/v1/runs/{run['id']}/artifacts")
    assert listed.status_code == 200
    items = {a["path"]: a for a in listed.json()["artifacts"]}
    assert "plan.json" in items and "file://" not in listed.text and "/tmp" not in listed.text
    report = next(a for a in items.values() if a["kind"] == "report")
    table = next(a for a in items.values() if a["kind"] == "table")
    assert report["step"] == "report" and report["size"] > 500 and table["step"] == "data"
    got = api.get(report["download"])
    assert got.status_code == 200 and got.headers["content-disposition"].startswith("attachment")
    stored: ArtifactStore = _services(api).artifacts
    assert got.content == stored.get_bytes(f"{report['run']}/{report['path']}")
    assert int(got.headers["content-length"]) == report["size"]
    plan = api.get(items["plan.json"]["download"]).json()
    assert plan["goal"] == "quick look"
    assert api.get(f"/v1/runs/{run['id']}/artifacts", as_="bob").status_code == 403
    assert api.get(report["download"], as_="bob").status_code == 403
    assert api.get(report["download"], as_="ada").status_code == 200


def test_artifact_paths_cannot_leave_the_run(api: Api, seeded: dict[str, str]) -> None:
    mine = api.post("/v1/runs", json={"plan": quick_plan()}).json()["id"]
    api.wait(mine)
    stored: ArtifactStore = _services(api).artifacts
    stored.put_bytes(f"{seeded['bob']}/train/model.json", b"bob's model")
    base = f"/v1/runs/{mine}/artifacts"
    for path in (f"{seeded['bob']}/train/model.json", f"{mine}/../{seeded['bob']}/train/model.json",
                 f"{mine}/%2e%2e/{seeded['bob']}/train/model.json", f"{mine}//etc/passwd", f"{mine}/nothing/here",
                 f"{mine}/report/..%2f..%2f..%2fpasswd", "file:///etc/passwd"):
        response = api.get(f"{base}/{path}")
        assert response.status_code == 404, (path, response.status_code)
        assert b"bob's model" not in response.content


def test_docs_work_without_internet(api: Api) -> None:
    for page, asset in (("/docs", "/static/docs/swagger-ui-bundle.js"), ("/redoc", "/static/docs/redoc.standalone.js")):
        html = api.get(page, as_=None)
        assert html.status_code == 200 and asset in html.text
        assert "cdn" not in html.text.lower() and "fonts.googleapis" not in html.text
        js = api.get(asset, as_=None)
        assert js.status_code == 200 and len(js.content) > 500_000
    assert api.get("/static/docs/swagger-ui.css", as_=None).status_code == 200
