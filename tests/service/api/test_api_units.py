"""The API's pure parts without a server: the DAG drawing, the run page panels, headline metrics, error mapping, the
Ray job entrypoint's configuration and the runner's settling of runs."""
from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from api_support import quick_plan
from fastapi import FastAPI
from fastapi.testclient import TestClient

from executor import JobInfo, RunResult, RunStore, StepResult
from executor.jobs import JobConfig, run_job
from governance import Principal
from planner.ooda import CandidateScore, Iteration
from service.api import errors
from service.api.dag import dag_svg, layers
from service.api.panels import ooda_panel, panels
from service.api.runner import RayJobRunner, settle
from service.api.views import headline_metric, summaries
from service.demo import DemoWarehouse
from service.jobs import main
from skills.plan import Plan
from skills.registry import load_registry

DIAMOND = Plan.model_validate({"steps": [
    {"id": "a", "skill": "query", "inputs": {}},
    {"id": "b", "skill": "features", "inputs": {"x": {"$ref": "a.table"}}},
    {"id": "c", "skill": "<b>evil</b>", "inputs": {"x": {"$ref": "a.table"}}},
    {"id": "d", "skill": "report", "inputs": {"x": {"$ref": "b.table"}, "y": {"$ref": "c.table"}}},
]})
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def _run(steps: dict[str, StepResult], result: dict[str, Any] | None = None, run_id: str = "r1") -> RunResult:
    return RunResult(id=run_id, user="ann", status="succeeded", created=NOW, updated=NOW, plan={}, steps=steps,
                     result=result or {})


def test_dag_layers_follow_the_dependencies() -> None:
    assert layers(DIAMOND) == [["a"], ["b", "c"], ["d"]]


def test_dag_svg_has_a_node_per_step_with_its_status_and_escapes_text() -> None:
    svg = dag_svg(DIAMOND, {"a": "succeeded", "b": "running"})
    assert svg.count('<g class="node') == 4 and svg.count('class="edge"') == 4
    assert 'class="node st-succeeded" data-step="a"' in svg and 'class="node st-pending" data-step="d"' in svg
    assert "<b>evil" not in svg and "&lt;b&gt;evil" in svg  # a skill name is text, never markup
    ys = [float(y) for y in re.findall(r'translate\([\d.]+,([\d.]+)\)', svg)]
    assert ys[0] < ys[1] == ys[2] < ys[3]  # top-down layers


def _iteration() -> dict[str, Any]:
    candidates = [CandidateScore(name="billing_amount_avg", description="avg spend", source="rules",
                                 features=["billing_amount_avg_92d"], race_metric=0.89, cv_delta=0.004,
                                 p_value=0.02, accepted=True, reason="better in 5/5 folds"),
                  CandidateScore(name="tenure_ratio", description="ratio", source="rules", features=["t_r"],
                                 race_metric=0.85, stopped_early=True, reason="stopped by ASHA",
                                 motivation="slice tenure in [0, 6) (error x1.90, 80 rows)")]
    return Iteration(index=1, candidates=candidates, accepted=["billing_amount_avg"], metric_name="auc",
                     baseline_value=0.84, metric_value=0.846, run_ids=["child1"], why="kept one group"
                     ).model_dump(mode="json")


def test_ooda_panel_shows_candidates_accepted_and_gain() -> None:
    panel = ooda_panel({"status": "done", "stopped": "reached the limit", "iterations": [_iteration()]})
    assert panel is not None and panel.key == "ooda"
    assert "billing_amount_avg" in panel.html and "tenure_ratio" in panel.html and "stopped by ASHA" in panel.html
    assert "slice tenure in [0, 6)" in panel.html  # what motivated the candidate
    assert "0.006" in panel.html  # the gain: 0.846 - 0.84
    assert panel.html.count("<svg") == 1 and "1: billing_amount_avg" in panel.html  # the race, drawn
    assert ooda_panel(None) is None


def test_ooda_child_runs_are_labelled_with_their_parent() -> None:
    parent = _run({}, {"ooda": {"status": "done", "iterations": [_iteration()]}}, run_id="parent")
    child = _run({}, run_id="child1")
    labelled = {s.id: s.part_of for s in summaries([child, parent])}
    assert labelled == {"child1": "parent", "parent": None}


def test_panels_draw_trials_and_importance_from_step_outputs() -> None:
    trials = [{"trial_id": "t1", "params": {"eta": 0.1}, "rounds": 30, "metric": 0.88, "history": [0.8, 0.85, 0.88],
               "stopped_early": False},
              {"trial_id": "t2", "params": {"eta": 0.3}, "rounds": 2, "metric": 0.8, "history": [0.78, 0.8],
               "stopped_early": True}]
    importance = [{"feature": "tenure", "importance": 0.4, "direction": "decreases"},
                  {"feature": "contract", "importance": 0.3, "direction": "increases", "level": "Month-to-month"}]
    run = _run({"tune": StepResult(id="tune", skill="tune", status="succeeded", outputs={"trials": trials}),
                "explain": StepResult(id="explain", skill="explain", status="succeeded",
                                      outputs={"importance": importance}),
                "residuals": StepResult(id="residuals", skill="residuals", status="succeeded",
                                        outputs={"slices": "not a list"})})
    drawn = {p.key: p.html for p in panels(run)}
    assert set(drawn) == {"trials", "importance"}  # the malformed residuals output is left out, not a crash
    assert "<svg" in drawn["trials"] and "1 stopped early" in drawn["trials"]
    assert "<svg" in drawn["importance"] and "Month-to-month" in drawn["importance"]


EVALUATED = {"metric_name": "auc", "metric_value": 0.83, "protocol": "5-fold stratified CV, seed 0",
             "cv_metrics": {"auc": 0.83}, "metrics": {"auc": 0.89, "logloss": 0.3},
             "metrics_protocol": "validation (used for tuning)"}


def test_headline_metric_is_the_cross_validated_one_with_the_validation_number_beside_it() -> None:
    steps = {"train": StepResult(id="train", skill="train_xgboost", status="succeeded", outputs={"metrics": {
                 "logloss": 0.4, "auc": 0.81}}),
             "evaluate": StepResult(id="evaluate", skill="evaluate", status="succeeded",
                                    outputs={"metric_name": "auc", "metric_value": 0.83})}
    assert headline_metric(_run(steps)).model_dump() == {"name": "auc", "value": 0.83, "protocol": "holdout",
                                                         "folds": None, "holdout": None, "label": "holdout auc"}
    steps["evaluate"].outputs.update(metrics={"auc": 0.83}, cv_metrics={"auc": 0.85}, cv_folds=[{}] * 5)
    metric = headline_metric(_run(steps))  # the cross-validated value, named so, with the holdout beside it
    assert (metric.value, metric.holdout, metric.label) == (0.85, 0.83, "cross-validated auc (5-fold)")
    final = headline_metric(_run(steps, {"summary": {"metric_name": "auc", "metric_value": 0.87}}))
    assert (final.value, final.holdout) == (0.87, None)  # the OODA loop's final model: no holdout of another model
    del steps["evaluate"]
    assert headline_metric(_run(steps)).model_dump() == {"name": "auc", "value": 0.81, "protocol": "validation",
                                                         "folds": None, "holdout": None, "label": "validation auc"}
    assert headline_metric(_run({})) is None


def test_the_run_page_headline_is_the_cross_validated_number(tmp_path: Path) -> None:
    from jinja2 import Environment, FileSystemLoader

    from service.api.views import detail

    steps = {"evaluate": StepResult(id="evaluate", skill="evaluate", status="succeeded", outputs=EVALUATED)}
    env = Environment(loader=FileSystemLoader(Path(__file__).parents[3] / "service/api/templates"), autoescape=True)
    env.globals["url_for"] = lambda *a, **k: ""
    html = env.get_template("run.html").render(run=detail(_run(steps), None), finished=True, dag="", panels=[],
                                               request=None, user=None, ray_dashboard=None)
    head = re.search(r'<dd id="run-metric">(.*?)</dd>', html, re.S).group(1)
    assert re.sub(r"<[^>]+>", "", head).startswith("cross-validated auc 0.8300")
    assert "(validation, used for tuning: 0.8900)" in head and "held-out" not in html


def test_an_unexpected_error_is_a_500_without_a_stack_trace(caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail in /srv/app/module.py line 42")

    with caplog.at_level(logging.ERROR, logger="agentml.api"):
        response = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert response.status_code == 500
    body = response.json()["error"]
    assert body["type"] == "internal" and "secret" not in response.text and "Traceback" not in response.text
    error_id = body["message"].split()[-1]
    assert any(error_id in r.getMessage() for r in caplog.records)  # operators find it in the log


def test_job_entrypoint_keeps_secrets_off_the_command_line() -> None:
    config = JobConfig(store_url="postgresql://u:pw@db/agentml", warehouse="/data/my warehouse",
                       artifacts="s3://bucket/a", module="service.jobs", policies=None)
    line = config.entrypoint("abc123")
    assert line.startswith("python -m service.jobs run --run-id abc123")
    assert "'/data/my warehouse'" in line and "pw" not in line and "--policies" not in line
    assert config.runtime_env()["env_vars"]["AGENTML_RUN_STORE_URL"] == "postgresql://u:pw@db/agentml"
    ooda = config.entrypoint("abc123", ["--iterations", "2"])
    assert ooda.startswith("python -m service.jobs run --run-id abc123") and ooda.endswith("--iterations 2")


def test_job_entrypoint_needs_a_store(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("AGENTML_RUN_STORE_URL", raising=False)
    assert main(["run", "--run-id", "x", "--warehouse", "w", "--artifacts", "a"]) == 2  # service.jobs' main
    assert "AGENTML_RUN_STORE_URL" in capsys.readouterr().err


def test_run_job_runs_a_stored_run_as_its_principal(demo: DemoWarehouse, tmp_path: Path) -> None:
    """What a Ray job's entrypoint does, in this process: load the run from the store, run it, record it."""
    store = RunStore(f"sqlite:///{tmp_path / 'runs.db'}")
    ann = Principal(user="ann", roles=["analyst"], attributes={"region": "north"})
    run_id = store.create_run(Plan.model_validate(quick_plan()), ann, backend="ray-job")
    result = run_job(run_id, store, registry=load_registry(), warehouse=str(demo.root), artifacts=str(tmp_path / "a"),
                     policies=str(demo.policies), audit=str(tmp_path / "audit.jsonl"))
    assert result.status == "succeeded" and result.steps["data"].outputs["rows"] == 1  # ann's region only
    assert "north" in (tmp_path / "audit.jsonl").read_text()
    missing = store.create_run(Plan.model_validate(quick_plan()), ann)
    with pytest.raises(Exception, match="does not exist"):
        run_job(missing, store, registry=load_registry(), warehouse=str(tmp_path / "nowhere"),
                artifacts=str(tmp_path / "a"))
    assert store.get_run(missing).status == "failed" and "warehouse" in (store.get_run(missing).error or "")


def test_settle_ends_a_run_its_driver_could_not(tmp_path: Path) -> None:
    store = RunStore(f"sqlite:///{tmp_path / 'runs.db'}")
    run_id = store.create_run(Plan.model_validate(quick_plan()), Principal(user="ann"))
    store.update_step(run_id, "data", "running", started=NOW)
    settle(store, store.get_run(run_id), "failed", "the Ray job ended FAILED", "read the logs")
    run = store.get_run(run_id)
    assert run.status == "failed" and run.error == "the Ray job ended FAILED"
    assert (run.steps["data"].status, run.steps["report"].status) == ("failed", "skipped")
    assert store.events(run_id)[-1].data == {"status": "failed"}


class _DyingHead:
    """Our own local head the way a killed raylet leaves it: the job is FAILED a moment before the head exits."""

    local = True
    address = "http://127.0.0.1:8265"

    def __init__(self) -> None:
        self.reason: str | None = None
        self.gone = False

    def info(self, job_id: str) -> JobInfo:
        return JobInfo(job_id, "FAILED", "Job supervisor actor died")

    def current(self) -> _DyingHead | None:
        return None if self.gone else self

    def lost(self) -> str | None:
        reason, self.reason = self.reason, None
        return reason

    def job_config(self, config: JobConfig) -> JobConfig:
        return config


def test_a_job_failed_by_its_dying_head_ends_interrupted_not_failed(tmp_path: Path) -> None:
    store = RunStore(f"sqlite:///{tmp_path / 'runs.db'}")
    run_id = store.create_run(Plan.model_validate(quick_plan()), Principal(user="ann"), backend="ray-job")
    store.update_run(run_id, status="running", job_id=f"agentml-{run_id}")
    head = _DyingHead()
    runner = RayJobRunner(store, head, JobConfig(store.url, None, str(tmp_path), "service.jobs"), head_grace_s=60)  # type: ignore[arg-type]
    with runner._lock:
        runner._submitted[run_id] = head.address
    runner.track_once()
    assert store.get_run(run_id).status == "running"  # not "failed" while the head may be on its way out
    head.reason, head.gone = "the local Ray head stopped (exit code 1)", True
    runner.track_once()
    run = store.get_run(run_id)
    assert run.status == "interrupted" and "Ray head stopped" in (run.error or ""), run.error

    # a job that failed on a head that stays up is "failed" once the grace has passed
    other = store.create_run(Plan.model_validate(quick_plan()), Principal(user="ann"), backend="ray-job")
    store.update_run(other, status="running", job_id=f"agentml-{other}")
    head.gone = False
    runner = RayJobRunner(store, head, JobConfig(store.url, None, str(tmp_path), "service.jobs"), head_grace_s=0)  # type: ignore[arg-type]
    runner.track_once()
    assert store.get_run(other).status == "failed" and "FAILED" in (store.get_run(other).error or "")


def test_an_unexpected_ooda_failure_is_recorded_not_left_running(tmp_path: Path) -> None:
    from service.session import SessionEnv, improve_stored
    from skills.artifacts import ArtifactStore
    from skills.plan import Plan

    store = RunStore(f"sqlite:///{tmp_path / 'runs.db'}")
    plan = Plan.model_validate(quick_plan())
    run_id = store.create_run(plan, Principal(user="ann"), status="succeeded")
    # no engine at all: the loop breaks in a way nobody planned for
    env = SessionEnv(Principal(user="ann"), None, ArtifactStore(tmp_path / "a"), store,  # type: ignore[arg-type]
                     registry=load_registry())
    improve_stored(env, store.get_run(run_id), plan, iterations=1)
    ooda = store.get_run(run_id).result["ooda"]
    assert ooda["status"] == "failed" and "unexpectedly (AttributeError)" in ooda["error"] and ooda["hint"]
    assert [e.data["status"] for e in store.events(run_id) if e.kind == "ooda"] == ["running", "failed"]
