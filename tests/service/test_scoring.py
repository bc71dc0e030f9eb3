"""`agentml score` and `agentml models` end to end in subprocesses on the demo warehouse: a quick run registers its
model as a version; scoring as the analyst (ann, region north) scores exactly the rows she may see, on Ray Data, with
three reasons per row; denied columns, unknown tables and runs, and tables lacking the model's columns are refused.
The run asks a question about the future ("which customers will churn next month"), so it trains then scores (the
planner's `score` step), and its AGENTML_MLFLOW_URI points at a port where nothing listens: the run still succeeds
and says why the model was not exported."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_cli import agentml, as_analyst, no_trace

from service.demo import build_warehouse

pytestmark = pytest.mark.ray
QUESTION = "Which customers will churn next month? A quick model is enough."  # train_xgboost, then score


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory):
    """A quick churn model trained as the analyst (no OODA iterations), in its own --out folder, with an MLflow
    tracking URI where nothing listens."""
    root = tmp_path_factory.mktemp("scoring")
    demo = build_warehouse(root / "wh")
    out = root / "run"
    unreachable = f"http://127.0.0.1:{_closed_port()}"
    proc = agentml("run", QUESTION, *as_analyst(demo), "--out", str(out), "--iterations", "0",
                   "--budget-rounds", "400", "--yes", cwd=root, settings={"AGENTML_MLFLOW_URI": unreachable})
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = json.loads((out / "result.json").read_text())["run_ids"][0]
    return demo, out, run_id, proc, unreachable


@pytest.fixture(scope="module")
def trained(session):
    demo, out, run_id, _, _ = session
    return demo, out, run_id


def _north_ids(demo) -> list[int]:
    customers = pq.read_table(demo.customers, columns=["customer_id", "region"]).to_pylist()
    return sorted(c["customer_id"] for c in customers if c["region"] == "north")


def test_a_question_about_next_month_trains_then_scores_what_the_analyst_may_see(session) -> None:
    demo, out, run_id, proc, _ = session
    plan = json.loads((out / "plan.json").read_text())
    assert [s["id"] for s in plan["steps"]][-3:] == ["score", "report", "final_report"]
    scores = json.loads((out / "result.json").read_text())["scores"]
    assert (scores["table"], scores["run_id"], scores["step"]) == ("customers", run_id, "score")
    table = pq.read_table(scores["uri"].removeprefix("file://"))
    assert scores["rows"] == table.num_rows == len(_north_ids(demo))
    assert sorted(table.column("customer_id").to_pylist()) == _north_ids(demo)  # every row she may see, only those
    assert all(len(r) == 3 for r in table.column("reasons").to_pylist())
    assert f"Scores: {scores['rows']} rows of customers" in " ".join(proc.stdout.split())


def test_an_unreachable_mlflow_server_does_not_fail_the_run_and_says_why(session) -> None:
    from executor import RunStore

    _, out, run_id, proc, unreachable = session
    exported = json.loads((out / "result.json").read_text())["mlflow"]
    assert (exported["status"], exported["uri"]) == ("failed", unreachable)
    assert "did not answer" in exported["error"] and "AGENTML_MLFLOW_URI" in exported["hint"]
    assert "MLflow: not exported" in proc.stdout and "did not answer" in " ".join(proc.stdout.split())
    version = json.loads((out / "artifacts" / "models" / f"{run_id}.json").read_text())
    assert version["mlflow"]["status"] == "failed" and version["mlflow"]["run_id"] is None
    warnings = [e for e in RunStore(f"sqlite:///{out / 'runs.db'}").events(run_id) if e.kind == "warning"]
    assert len(warnings) == 1 and "not exported to MLflow" in warnings[0].message


def test_the_run_registered_its_model_as_a_version(trained) -> None:
    demo, out, run_id = trained
    doc = json.loads((out / "artifacts" / "models" / f"{run_id}.json").read_text())
    assert (doc["name"], doc["version"], doc["user"]) == ("customers-churn", 1, "ann")
    customers = pq.read_table(demo.customers, columns=["region"]).column("region").to_pylist()
    assert doc["data"]["rows"] == customers.count("north") and len(doc["data"]["sha256"]) == 64
    assert "FROM customers" in doc["data"]["sql"] and doc["data"]["specs"]  # the billing features
    assert doc["metric_name"] == "auc" and 0.7 < doc["metric_value"] <= 1 and doc["features"]
    listed = agentml("models", "--run-dir", str(out), cwd=out)
    assert listed.returncode == 0 and "customers-churn" in listed.stdout and run_id in listed.stdout


def test_score_covers_exactly_the_rows_the_analyst_may_see_with_reasons(trained, tmp_path: Path) -> None:
    demo, out, run_id = trained
    file = tmp_path / "scores.parquet"
    proc = agentml("score", run_id, "--table", "customers", "--run-dir", str(out), *as_analyst(demo),
                   "--out", str(file), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    no_trace(proc)
    result = json.loads(proc.stdout)
    north = _north_ids(demo)
    scores = pq.read_table(file)
    assert result["rows"] == scores.num_rows == len(north)
    assert sorted(scores.column("customer_id").to_pylist()) == north  # every row she may see, and only those
    assert all(0 <= s <= 1 for s in scores.column("score").to_pylist())
    reasons = scores.column("reasons").to_pylist()
    assert all(len(r) == 3 and all(x["feature"] and x["contribution"] is not None for x in r) for r in reasons)
    assert len(result["preview"]) == 10 and set(result["preview"][0]) == {"customer_id", "score", "prediction",
                                                                          "reasons"}
    assert result["scores"].startswith("file://") and "/score/scores" in result["scores"]


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--where", "name LIKE 'A%'"], 3, "name"),  # a column the analyst may not read
    (["--table", "payroll"], 3, "does not exist or you may not read it"),
    (["--table", "billing"], 2, "lacks column(s) the model needs"),
])
def test_refusals_are_clear(trained, tmp_path: Path, args: list[str], code: int, message: str) -> None:
    demo, out, run_id = trained
    proc = agentml("score", run_id, "--run-dir", str(out), *as_analyst(demo), *args, cwd=tmp_path)
    no_trace(proc)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr


def test_unknown_run_and_a_run_without_a_model(trained, tmp_path: Path) -> None:
    demo, out, _ = trained
    proc = agentml("score", "nope", "--run-dir", str(out), *as_analyst(demo), cwd=tmp_path)
    assert proc.returncode == 2 and "no run 'nope'" in proc.stderr
    no_trace(proc)
    report_run = json.loads((out / "result.json").read_text())["run_ids"][-1]  # the final report's run: no model
    proc = agentml("score", report_run, "--run-dir", str(out), *as_analyst(demo), cwd=tmp_path)
    assert proc.returncode == 2 and "has no registered model" in proc.stderr


def test_scores_come_from_the_final_model_when_the_loop_replaced_the_first(session, tmp_path: Path) -> None:
    """When a later training step (the OODA loop's) holds the final model, the plan's `score` step scored with the
    first one: the session scores the same rows again with the registered final model, as a run of its own."""
    from executor import RunStore
    from planner.ooda import step_outputs
    from service.cli import open_access
    from service.model_versions import get_version
    from service.publish import session_scores
    from service.session import SessionEnv
    from service.settings import Settings
    from skills.artifacts import ArtifactStore
    from skills.plan import Plan

    demo, out, run_id, _, _ = session
    access = open_access(str(demo.root), demo.policies, "ann", ["analyst"], {"region": "north"},
                         settings=Settings(_env_file=None))
    store, artifacts = RunStore(f"sqlite:///{out / 'runs.db'}"), ArtifactStore(out / "artifacts")
    env = SessionEnv(access.principal, access.engine, artifacts, store, access.registry, backend="ray")
    first = store.get_run(run_id)
    plan = Plan.model_validate(json.loads((out / "plan.json").read_text()))
    outputs = step_outputs(first)
    retrained = plan.step("train").model_copy(update={"id": "ooda1_train"})  # stands for the loop's retraining
    plan.steps.insert([s.id for s in plan.steps].index("score") + 1, retrained)
    outputs["ooda1_train"] = outputs["train"]
    scored, run = session_scores(env, first, plan, outputs, get_version(artifacts, run_id))
    assert run is not None and run.status == "succeeded", run and run.error
    assert scored is not None and scored.run_id == run.id != run_id and scored.table == "customers"
    assert scored.rows == len(_north_ids(demo)) and scored.uri != outputs["score"]["scores"]["uri"]
