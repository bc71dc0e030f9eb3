"""`agentml score` and `agentml models` end to end in subprocesses on the demo warehouse: a quick run registers its
model as a version; scoring as the analyst (ann, region north) scores exactly the rows she may see, on Ray Data, with
three reasons per row; denied columns, unknown tables and runs, and tables lacking the model's columns are refused."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_cli import QUICK, agentml, as_analyst, no_trace

from service.demo import build_warehouse

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A quick churn model trained as the analyst (no OODA iterations), in its own --out folder."""
    root = tmp_path_factory.mktemp("scoring")
    demo = build_warehouse(root / "wh")
    out = root / "run"
    proc = agentml("run", QUICK, *as_analyst(demo), "--out", str(out), "--iterations", "0",
                   "--budget-rounds", "400", "--yes", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = json.loads((out / "result.json").read_text())["run_ids"][0]
    return demo, out, run_id


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
    customers = pq.read_table(demo.customers, columns=["customer_id", "region"]).to_pylist()
    north = sorted(c["customer_id"] for c in customers if c["region"] == "north")
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
