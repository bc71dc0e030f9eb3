"""Run lifecycle and the small API findings of issue 14, on the in-process runner (fast, no Ray): resume reuses
finished steps, per-user limits answer 429 with Retry-After and record nothing, a start refused for want of Ray
(503) records nothing, failed runs count only finished-ok steps, an absurd Last-Event-ID is a 400, an impossible
budget and a goal that is no ML task get messages fit for the API. (The same lifecycle on real Ray jobs:
test_api_control_plane.py.)"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from api_support import Api, auth, quick_plan, slow_plan, small_plan, wait_for
from fastapi.testclient import TestClient

from service.api import create_app
from service.settings import Settings


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def test_an_absurd_last_event_id_is_a_400_not_a_500(api_for: Callable[..., Api], tmp_path: Path) -> None:
    api = api_for(_sqlite(tmp_path))
    run_id = api.post("/v1/runs", json={"plan": quick_plan()}).json()["id"]
    api.wait(run_id)
    reply = api.client.get(f"/v1/runs/{run_id}/events", params={"stream": "false"},
                           headers={**auth("ann"), "Last-Event-ID": "99999999999999999999"})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert "Last-Event-ID" in error["message"] and "2147483647" in error["message"] and error["hint"]
    ok = api.client.get(f"/v1/runs/{run_id}/events", params={"stream": "false"},
                        headers={**auth("ann"), "Last-Event-ID": "2"})
    assert ok.status_code == 200 and ok.json()["events"][0]["seq"] == 3


def test_a_failed_run_counts_only_the_steps_that_succeeded(api_for: Callable[..., Api], tmp_path: Path) -> None:
    api = api_for(_sqlite(tmp_path))
    plan = {"goal": "breaks", "steps": [
        {"id": "data", "skill": "query", "inputs": {"sql": "SELECT CAST(contract AS INTEGER) AS n FROM customers"}},
        {"id": "train", "skill": "train_xgboost", "inputs": {"table": {"$ref": "data.table"}, "target": "n"}}]}
    run = api.wait(api.post("/v1/runs", json={"plan": plan}).json()["id"])
    assert run["status"] == "failed", run
    assert [s["status"] for s in run["steps"]] == ["failed", "skipped"]
    assert (run["steps_done"], run["steps_total"]) == (0, 2)
    listed = api.get("/v1/runs").json()["runs"][0]
    assert (listed["steps_done"], listed["steps_total"]) == (0, 2)


def test_an_impossible_budget_says_it_is_too_small_and_the_minimum(api_for: Callable[..., Api],
                                                                   tmp_path: Path) -> None:
    api = api_for(_sqlite(tmp_path))
    reply = api.post("/v1/plans", json={"prompt": "Build a churn model", "budget": {"max_boosting_rounds": 1}})
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert "too small" in error["message"] and "installed skills" not in str(error), error
    least = int(error["hint"].split("to ")[1].split()[0])
    assert api.post("/v1/plans", json={"prompt": "Build a churn model",
                                       "budget": {"max_boosting_rounds": least}}).status_code == 200
    assert api.post("/v1/plans", json={"prompt": "Build a churn model",
                                       "budget": {"max_boosting_rounds": least - 1}}).status_code == 422


def test_a_goal_that_is_no_ml_task_gets_one_clean_question(api_for: Callable[..., Api], tmp_path: Path) -> None:
    api = api_for(_sqlite(tmp_path))
    reply = api.post("/v1/plans", json={"prompt": "a poem about the sea"})
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["candidates"] == ["churn"]
    assert "churn" not in error["message"] + (error["hint"] or "")  # the candidates once: in their own list
    assert "--" not in reply.text and "Re-run" not in reply.text  # no CLI flags in an API answer


def test_resume_runs_only_the_unfinished_steps(api_for: Callable[..., Api], tmp_path: Path) -> None:
    api = api_for(_sqlite(tmp_path))
    run_id = api.post("/v1/runs", json={"plan": slow_plan(12)}).json()["id"]
    wait_for(lambda: sum(s["status"] == "succeeded" for s in api.get(f"/v1/runs/{run_id}").json()["steps"]) >= 2,
             60, "no step finished")
    assert api.post(f"/v1/runs/{run_id}/cancel").status_code == 202
    before = api.wait(run_id)
    assert before["status"] == "cancelled", before
    kept = {s["id"]: s["finished"] for s in before["steps"] if s["status"] == "succeeded"}
    assert kept and len(kept) < len(before["steps"])

    resumed = api.post(f"/v1/runs/{run_id}/resume")
    assert resumed.status_code == 202 and resumed.json()["id"] == run_id, resumed.text
    after = api.wait(run_id)
    assert after["status"] == "succeeded" and after["steps_done"] == after["steps_total"], after
    assert {s["id"]: s["finished"] for s in after["steps"] if s["id"] in kept} == kept  # not run again
    events = api.get(f"/v1/runs/{run_id}/events", params={"stream": "false"}).json()["events"]
    assert sorted(e["step"] for e in events if e["kind"] == "step" and e["data"].get("reused")) == sorted(kept)
    assert api.post(f"/v1/runs/{run_id}/resume").status_code == 409  # it succeeded


def _count(api: Api) -> int:
    return len(api.get("/v1/runs").json()["runs"])


def test_too_many_active_runs_is_a_429_that_records_nothing(api_for: Callable[..., Api], tmp_path: Path) -> None:
    api = api_for(_sqlite(tmp_path), max_active_runs_per_user=1)
    first = api.post("/v1/runs", json={"plan": slow_plan(20)}).json()["id"]
    refused = api.post("/v1/runs", json={"plan": quick_plan()})
    assert refused.status_code == 429, refused.text
    assert refused.headers["Retry-After"].isdigit() and "1 at once" in refused.json()["error"]["message"]
    assert _count(api) == 1
    assert api.post("/v1/runs", json={"plan": quick_plan()}, as_="bob").status_code == 202  # a limit per user
    api.post(f"/v1/runs/{first}/cancel")
    api.wait(first)
    assert api.post("/v1/runs", json={"plan": quick_plan()}).status_code == 202  # room again


def test_boosting_rounds_per_day_is_a_429_that_says_when(api_for: Callable[..., Api], tmp_path: Path) -> None:
    from service.api.quotas import plan_rounds
    from skills.plan import Plan
    from skills.registry import load_registry

    rounds = plan_rounds(Plan.model_validate(small_plan(rounds=8)), load_registry())
    api = api_for(_sqlite(tmp_path), max_concurrent_runs=1, max_boosting_rounds_per_day=rounds + rounds // 2)
    busy = api.post("/v1/runs", json={"plan": slow_plan(20)}).json()["id"]  # holds the one slot: nothing trains
    waiting = api.post("/v1/runs", json={"plan": small_plan(rounds=8)}).json()["id"]
    api.post(f"/v1/runs/{waiting}/cancel")
    over = api.post("/v1/runs", json={"plan": small_plan(rounds=8)})
    assert over.status_code == 429, over.text
    error = over.json()["error"]
    assert f"daily limit of {rounds + rounds // 2}" in error["message"] and "after" in error["hint"], error
    assert 86000 < int(over.headers["Retry-After"]) <= 86400  # when the first one leaves the 24-hour window
    assert _count(api) == 2
    assert api.post("/v1/runs", json={"plan": quick_plan()}).status_code == 202  # no boosting: still fine
    api.post(f"/v1/runs/{busy}/cancel")
    api.wait(busy)


def test_a_start_refused_for_want_of_ray_records_no_run(settings_for: Callable[..., Settings],
                                                        tmp_path: Path) -> None:
    settings: Settings = settings_for(_sqlite(tmp_path), runner="jobs", ray_address="http://127.0.0.1:9")
    with TestClient(create_app(settings)) as client:
        api = Api(client)
        reply = api.post("/v1/runs", json={"plan": quick_plan()})
        assert reply.status_code == 503, reply.text
        assert reply.json()["error"]["type"] == "ray_unavailable" and reply.json()["error"]["hint"]
        assert _count(api) == 0


def test_a_gcs_address_is_refused_at_start_with_the_fix(settings_for: Callable[..., Settings],
                                                        tmp_path: Path) -> None:
    from executor import ExecutionError

    try:
        create_app(settings_for(_sqlite(tmp_path), runner="jobs", ray_address="127.0.0.1:6379"))
    except ExecutionError as exc:
        assert "dashboard address" in exc.message and "http://" in (exc.hint or "")
    else:
        raise AssertionError("a GCS address was taken for the job API")
