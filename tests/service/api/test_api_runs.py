"""Runs through the API on a SQLite file and on PostgreSQL: start, follow (JSON and SSE), inspect, report, logs,
cancel, and who may see what. Every run is a real run of the real skills on the demo warehouse; these plans need no
Ray (training runs are in the browser, Ray job and restart tests)."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from api_support import TOKENS, Api, quick_plan, slow_plan, small_plan, wait_for


def sse_events(api: Api, run_id: str, after: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """The whole server-sent-events stream of a finished run: (event, data) pairs."""
    out: list[tuple[str, dict[str, Any]]] = []
    kind = ""
    with api.client.stream("GET", f"/v1/runs/{run_id}/events", params={"after": after},
                           headers={"Authorization": f"Bearer {TOKENS['ann']}"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                out.append((kind, json.loads(line.split(":", 1)[1])))
    return out


def test_a_run_from_start_to_report(api: Api) -> None:
    created = api.post("/v1/runs", json={"plan": quick_plan()})
    assert created.status_code == 202, created.text
    run_id = created.json()["id"]
    assert created.json()["links"]["dashboard"] == f"/runs/{run_id}"
    assert [r["id"] for r in api.get("/v1/runs", as_="ann").json()["runs"]] == [run_id]
    assert api.get("/v1/runs", as_="bob").json()["runs"] == []
    assert api.get(f"/v1/runs/{run_id}", as_="bob").status_code == 403
    assert api.get(f"/v1/runs/{run_id}/report", as_="bob").status_code == 403
    assert api.post(f"/v1/runs/{run_id}/cancel", as_="bob").status_code == 403

    run = api.wait(run_id)
    assert run["status"] == "succeeded", run
    assert run["user"] == "ann" and run["steps_done"] == run["steps_total"] == 2
    assert [s["status"] for s in run["steps"]] == ["succeeded"] * 2
    data = run["steps"][0]
    assert data["outputs"]["rows"] == 1 and "traceback" not in data  # the row filter: ann sees her region only
    assert api.get(f"/v1/runs/{run_id}", as_="ada").status_code == 200  # admins see every run
    assert {r["id"] for r in api.get("/v1/runs", as_="ada").json()["runs"]} >= {run_id}

    _check_events(api, run_id)
    _check_report_and_logs(api, run_id)
    again = api.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 409 and "already ended" in again.json()["error"]["message"]


def _check_events(api: Api, run_id: str) -> None:
    events = api.get(f"/v1/runs/{run_id}/events", params={"stream": "false"}).json()["events"]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    finished = {e["step"] for e in events if e["kind"] == "step" and e["data"]["status"] == "succeeded"}
    assert finished == {"data", "report"}
    assert any(e["kind"] == "progress" and e["step"] == "data" for e in events)
    streamed = sse_events(api, run_id)
    assert [d["seq"] for k, d in streamed if k != "end"] == seqs
    assert streamed[-1] == ("end", {"status": "succeeded"})
    resumed = sse_events(api, run_id, after=seqs[-2])
    assert [d.get("seq") for _, d in resumed] == [seqs[-1], None]


def _check_report_and_logs(api: Api, run_id: str) -> None:
    report = api.get(f"/v1/runs/{run_id}/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "script-src" not in report.headers["content-security-policy"]  # default-src 'none': no script runs
    assert "Quick look" in report.text and "customers per region" in report.text
    logs = api.get(f"/v1/runs/{run_id}/logs")
    assert logs.status_code == 200 and "succeeded" in logs.text and "report" in logs.text


def test_bad_plans_are_refused_with_every_problem(api: Api) -> None:
    plan = small_plan()
    plan["steps"][0]["inputs"]["sql"] = "SELECT name, churn FROM customers"  # `name` is denied to analysts
    plan["steps"][1]["skill"] = "train_xgbost"
    plan["steps"][2]["inputs"]["table"] = {"$ref": "nowhere.table"}
    response = api.post("/v1/runs", json={"plan": plan})
    assert response.status_code == 422
    body = response.json()["error"]
    assert body["type"] == "plan_invalid"
    kinds = {p["kind"] for p in body["problems"]}
    assert {"access", "unknown_skill", "unknown_ref"} <= kinds, body
    assert all(p["hint"] for p in body["problems"] if p["kind"] != "unknown_ref")
    assert api.get("/v1/runs").json()["runs"] == []  # nothing was recorded


def test_a_plan_cannot_hand_a_skill_the_warehouse_files(api: Api, demo: Any) -> None:
    # the raw Parquet behind `customers` holds every region and the denied `name`: only governed SQL may read it
    plan = small_plan()
    raw = Path(demo.customers).resolve()
    plan["steps"][1]["inputs"]["table"] = {"uri": raw.as_uri(), "rows": 7043, "columns": ["name", "churn"]}
    response = api.post("/v1/runs", json={"plan": plan})
    assert response.status_code == 422, response.text
    problem = response.json()["error"]["problems"][0]
    assert (problem["kind"], problem["step"], problem["field"]) == ("access", "train", "table")
    assert api.get("/v1/runs").json()["runs"] == []


def test_a_plan_without_steps_is_refused(api: Api) -> None:
    response = api.post("/v1/runs", json={"plan": {"goal": "predict churn", "steps": []}})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "plan_invalid"
    assert [(p["kind"], p["field"]) for p in error["problems"]] == [("plan", "steps")]
    assert "no steps" in error["problems"][0]["message"] and error["problems"][0]["hint"]
    assert api.get("/v1/runs").json()["runs"] == []  # nothing was recorded


DUPLICATE_X = "customers AS x, (SELECT 1 AS a) AS x WHERE x.churn IS NOT NULL"


@pytest.mark.parametrize("sources", [DUPLICATE_X,
                                     f"(SELECT 1 AS b) AS y SEMI JOIN (SELECT 1 AS c) AS x ON TRUE, {DUPLICATE_X}"])
def test_duplicate_source_names_are_refused_not_a_500(api: Api, sources: str) -> None:
    plan = quick_plan()
    plan["steps"][0]["inputs"]["sql"] = f"SELECT x.churn, x.region FROM {sources}"
    response = api.post("/v1/runs", json={"plan": plan})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "plan_invalid"
    problem = error["problems"][0]
    assert (problem["kind"], problem["step"], problem["field"]) == ("schema", "data", "sql")
    assert problem["message"] == "two sources in one FROM share the name 'x'"
    assert problem["hint"] == "give each table, subquery and CTE its own alias"
    assert api.get("/v1/runs").json()["runs"] == []  # nothing was recorded, nothing ran
    refused = [r for r in api.get("/v1/audit", as_="ada", params={"user": "ann"}).json()["records"]
               if r["action"] == "plan"]
    assert refused[-1]["verdict"] == "denied" and refused[-1]["sql"] == plan["steps"][0]["inputs"]["sql"]
    assert "share the name 'x'" in refused[-1]["reason"] and refused[-1]["detail"]["source"] == "client"


@pytest.mark.parametrize("body", [{}, {"prompt": "x", "plan": {"steps": []}}, {"prompt": ""},
                                  {"plan": small_plan(), "iterations": 9}, {"prompt": "churn\x00model"}])
def test_bad_requests_are_422_with_reasons(api: Api, body: dict[str, Any]) -> None:
    response = api.post("/v1/runs", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "request_invalid" and error["problems"] and all(p["message"] for p in error["problems"])


def test_unknown_runs_are_404(api: Api) -> None:
    for path in ("/v1/runs/nope", "/v1/runs/nope/report", "/v1/runs/nope/events", "/v1/runs/nope/logs"):
        response = api.get(path)
        assert response.status_code == 404 and response.json()["error"]["type"] == "not_found"
    assert api.get("/v1/runs/bad%20id").status_code == 422


def test_cancel_a_queued_and_a_running_run(api_for: Callable[..., Api], tmp_path: Any) -> None:
    api = api_for(f"sqlite:///{tmp_path / 'cancel.db'}", max_concurrent_runs=1)
    first = api.post("/v1/runs", json={"plan": slow_plan()}).json()["id"]
    # the one run slot is taken before the second run is queued (else the second may get it first and run a step)
    wait_for(lambda: api.get(f"/v1/runs/{first}").json()["status"] == "running", 30, "the first run never started")
    second = api.post("/v1/runs", json={"plan": quick_plan()}).json()["id"]
    assert api.post(f"/v1/runs/{second}/cancel").status_code == 202
    run = api.wait(second)
    assert run["status"] == "cancelled" and {s["status"] for s in run["steps"]} == {"cancelled"}

    def started() -> bool:  # checked often: on an idle machine the whole chain takes about a second
        return api.get(f"/v1/runs/{first}").json()["steps"][0]["status"] == "succeeded"

    wait_for(started, 60, "the first run never finished its first step", every=0.02)
    assert api.post(f"/v1/runs/{first}/cancel").status_code == 202
    run = api.wait(first, timeout=60)
    steps = {s["id"]: s["status"] for s in run["steps"]}
    assert run["status"] == "cancelled" and steps["q0"] == "succeeded"  # finished steps are kept
    assert steps["report"] == "cancelled" and run["steps"][0]["outputs"]["rows"] > 0
    kinds = [e["kind"] for e in api.get(f"/v1/runs/{first}/events", params={"stream": False}).json()["events"]]
    assert "cancel_requested" in kinds


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the store is not what this is about
def test_cli_and_api_plan_alike_and_leave_the_same_result_document(api: Api, demo: Any, tmp_path: Path) -> None:
    """One prompt, one principal: `agentml plan` and POST /v1/plans give the same plan, and the API's run and
    `agentml run` go through the same session (service.session.run_session): the same document (result.json for
    the CLI), the same final report run. The OODA loop's part of that document is checked through a Ray job
    (test_api_ray_jobs): Tune inside the API process is what issue 14's control plane removes."""
    import jsonschema
    from typer.testing import CliRunner

    from service.cli import app
    from service.results import SessionSummary

    prompt = "Build a quick churn model and tell me why users are leaving"
    cli = CliRunner().invoke(app, ["plan", prompt, "--warehouse", str(demo.root), "--policies", str(demo.policies),
                                   "--user", "ann", "--role", "analyst", "--attr", "region=north", "--json",
                                   "--out", str(tmp_path / "planned")])
    assert cli.exit_code == 0, cli.output
    planned = api.post("/v1/plans", json={"prompt": prompt}).json()["plan"]
    assert planned == json.loads(cli.stdout)
    early = api.post("/v1/runs", json={"plan": planned}).json()["id"]
    run = api.wait(early)
    assert run["status"] == "succeeded", run
    wait_for(lambda: api.get(f"/v1/runs/{early}/result").status_code == 200, 300, "no result document")
    doc = api.get(f"/v1/runs/{early}/result").json()
    jsonschema.validate(doc, SessionSummary.model_json_schema())
    assert (doc["task"], doc["target"], doc["metric_name"]) == ("classification", "churn", "auc")
    assert doc["iterations"] == [] and doc["stopped"] == "the OODA loop did not run"
    assert 0.7 < doc["baseline_value"] <= 1 and doc["drivers"]
    assert api.get(f"/v1/runs/{early}/result", as_="bob").status_code in (403, 404)  # another user's run
    # the session's final report ran as a run of its own, listed as part of the first one
    assert doc["run_ids"][0] == early and len(doc["run_ids"]) == 2 and doc["report"] and doc["model"]
    listed = {r["id"]: r for r in api.get("/v1/runs").json()["runs"]}
    assert listed[doc["run_ids"][1]]["part_of"] == early and listed[doc["run_ids"][1]]["status"] == "succeeded"
    ran = CliRunner().invoke(app, ["run", prompt, "--warehouse", str(demo.root), "--policies", str(demo.policies),
                                   "--user", "ann", "--role", "analyst", "--attr", "region=north", "--iterations", "0",
                                   "--yes", "--out", str(tmp_path / "ran")])
    assert ran.exit_code == 0, ran.output
    written = json.loads((tmp_path / "ran" / "result.json").read_text())
    assert set(written) == set(doc) and len(written["run_ids"]) == 2 and (tmp_path / "ran" / "report.html").exists()
    same = ("task", "target", "metric_name", "features", "stopped", "iterations", "metric_protocol")
    assert {k: written[k] for k in same} == {k: doc[k] for k in same}
    assert abs(written["baseline_value"] - doc["baseline_value"]) < 0.02  # same plan, data and seed


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_run_without_a_result_document_says_why(api: Api) -> None:
    run_id = api.post("/v1/runs", json={"plan": slow_plan()}).json()["id"]
    missing = api.get(f"/v1/runs/{run_id}/result")
    assert missing.status_code == 404 and "has no result document" in missing.json()["error"]["message"]
    api.post(f"/v1/runs/{run_id}/cancel")


def test_a_runs_compute_is_checked_and_kept_with_the_run(api_for: Callable[..., Api], tmp_path: Path) -> None:
    api = api_for(f"sqlite:///{tmp_path / 'runs.db'}", max_workers=4, gpu_autoscaling=True)
    compute = {"workers": 3, "cpus_per_worker": 2, "gpu": "false"}
    created = api.post("/v1/runs", json={"plan": quick_plan(), "compute": compute})
    assert created.status_code == 202, created.text
    run = api.wait(created.json()["id"])
    assert run["status"] == "succeeded", run
    assert {k: run["settings"][k] for k in ("num_workers", "cpus_per_worker", "use_gpu", "gpu_autoscaling")} == {
        "num_workers": 3, "cpus_per_worker": 2, "use_gpu": False, "gpu_autoscaling": True}

    too_many = api.post("/v1/runs", json={"plan": quick_plan(), "compute": {"workers": 5}})
    assert too_many.status_code == 422, too_many.text
    error = too_many.json()["error"]
    assert error["type"] == "compute_invalid" and "over the limit of 4" in error["message"]
    assert error["problems"][0]["field"] == "compute.workers" and "AGENTML_MAX_WORKERS" in error["hint"]
    for bad in ({"workers": 0}, {"gpu": "maybe"}, {"cores": 2}):
        refused = api.post("/v1/runs", json={"plan": quick_plan(), "compute": bad})
        assert refused.status_code == 422 and refused.json()["error"]["type"] == "request_invalid", bad
    assert len(api.get("/v1/runs").json()["runs"]) == 1  # nothing refused was recorded
