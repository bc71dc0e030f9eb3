"""POST /v1/plans: prompt -> validated plan with a preview, built only from what the caller may see and within their
budget; 422 with the candidates or every problem; and its latency (p50, offline rule-based planner)."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from api_support import Api

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PROMPT = "Build a churn model and tell me why users are leaving"


def test_a_prompt_becomes_a_validated_plan_over_the_callers_catalog(api: Api) -> None:
    ann = api.post("/v1/plans", json={"prompt": PROMPT, "budget": {"max_trials": 3, "max_boosting_rounds": 300}})
    assert ann.status_code == 200, ann.text
    body = ann.json()
    assert body["planner"] == "rules"
    skills = [s["skill"] for s in body["plan"]["steps"]]
    assert skills[0] == "query" and {"explain", "report"} <= set(skills)
    assert body["preview"]["total_trials"] <= 3 and body["preview"]["total_rounds"] <= 300  # within the budget
    ada = api.post("/v1/plans", json={"prompt": PROMPT}, as_="ada").json()
    excluded = {who: set(b["plan"]["metadata"]["exclude"]) for who, b in (("ann", body), ("ada", ada))}
    assert "name" in excluded["ada"] and "name" not in excluded["ann"]  # ann's planner never saw customers.name
    rows = {who: next(s["rows"] for s in b["preview"]["steps"] if s["skill"] == "query")
            for who, b in (("ann", body), ("ada", ada))}
    assert 0 < rows["ann"] < rows["ada"] == 7043  # governed row counts: ann sees her region only
    records = api.get("/v1/audit", as_="ada", params={"user": "ann"}).json()["records"]
    assert any("count" in r["sql"].lower() and "north" in (r["rewritten"] or "") for r in records)


def test_an_ambiguous_prompt_is_422_with_candidates(api: Api) -> None:
    response = api.post("/v1/plans", json={"prompt": "Build a model"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "plan_invalid" and error["candidates"] == ["churn"] and error["hint"]
    chosen = api.post("/v1/plans", json={"prompt": "Build a model", "target": "churn",
                                         "budget": {"max_trials": 2}})
    assert chosen.status_code == 200 and chosen.json()["plan"]["metadata"]["target"] == "churn"


def test_the_llm_planner_needs_a_model(api: Api) -> None:
    response = api.post("/v1/plans", json={"prompt": PROMPT, "planner": "llm"})
    assert response.status_code == 422 and "AGENTML_LLM_MODEL" in response.json()["error"]["hint"]


def test_skills_list_their_schemas(api: Api) -> None:
    skills = {s["name"]: s for s in api.get("/v1/skills").json()["skills"]}
    assert {"query", "features", "train_xgboost", "tune", "evaluate", "explain", "residuals", "report"} <= set(skills)
    assert "sql" in skills["query"]["input_schema"]["properties"] and skills["tune"]["uses_ray"]


def test_plan_latency_p50(api: Api) -> None:
    """Measured, not assumed: 30 requests after a warm-up, through the whole HTTP stack of the app."""
    body = {"prompt": PROMPT, "budget": {"max_trials": 3}}
    assert api.post("/v1/plans", json=body).status_code == 200  # warm-up (first catalog, first parse)
    seconds = []
    for _ in range(30):
        started = time.perf_counter()
        assert api.post("/v1/plans", json=body).status_code == 200
        seconds.append(time.perf_counter() - started)
    p50, p90 = statistics.median(seconds), statistics.quantiles(seconds, n=10)[-1]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "api-plans-latency.json").write_text(json.dumps(
        {"route": "POST /v1/plans", "planner": "rules (offline)", "requests": len(seconds),
         "p50_ms": round(p50 * 1000, 1), "p90_ms": round(p90 * 1000, 1)}, indent=2))
    print(f"\nPOST /v1/plans: p50 {p50 * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms over {len(seconds)} requests")
    assert p50 < 1.0  # generous on a shared 2-core machine; the number itself is in test-artifacts/


def test_include_and_exclude_choose_the_training_columns(api: Api) -> None:
    body = api.post("/v1/plans", json={"prompt": PROMPT, "exclude": ["tenure"]}).json()
    excluded = {e["column"]: e["reason"] for e in body["plan"]["metadata"]["excluded"]}
    assert excluded["tenure"] == "you asked to leave it out (--exclude)"
    assert {"column": "tenure", "reason": excluded["tenure"]} in body["preview"]["excluded"]
    key = next(c for c, why in excluded.items() if why.startswith("identifier"))  # left out from the data
    back = api.post("/v1/plans", json={"prompt": PROMPT, "include": [key]}).json()
    assert key not in {e["column"] for e in back["plan"]["metadata"]["excluded"]}
    wrong = api.post("/v1/plans", json={"prompt": PROMPT, "include": ["tenur"]})
    assert wrong.status_code == 422 and wrong.json()["error"]["candidates"] == ["tenure"]
    plan = api.post("/v1/runs", json={"plan": body["plan"], "exclude": ["tenure"]})
    assert plan.status_code == 422  # a given plan already says what each model trains on
