"""Export to a real MLflow tracking server: `mlflow server` on loopback (SQLite backend store, artifacts served from a
temporary folder), a small tuned session run by `agentml run` as the analyst with AGENTML_MLFLOW_URI set, then
everything read back through MlflowClient: the session's run with its params, stepped learning curve and headline,
one nested run per tuning trial with its per-report history, the artifacts, and the registered model version loaded
in the xgboost flavour and as pyfunc, predicting what agentml's own booster predicts."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_cli import agentml, as_analyst

from service.demo import build_warehouse

pytestmark = pytest.mark.ray
PROMPT = "Build a churn model with 2 trials of 20 rounds"  # a small tune: two trials to export as nested runs


@pytest.fixture(scope="module")
def exported(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tuned churn model trained as the analyst with AGENTML_MLFLOW_URI set (no OODA iterations)."""
    root = tmp_path_factory.mktemp("mlflow-run")
    demo = build_warehouse(root / "wh")
    out = root / "run"
    proc = agentml("run", PROMPT, *as_analyst(demo), "--out", str(out), "--iterations", "0", "--yes", cwd=root,
                   settings={"AGENTML_MLFLOW_URI": mlflow_server})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    run_id = result["run_ids"][0]
    version = json.loads((out / "artifacts" / "models" / f"{run_id}.json").read_text())
    return {"uri": mlflow_server, "out": out, "result": result, "version": version, "stdout": proc.stdout,
            "demo": demo}


@pytest.fixture()
def client(exported: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", exported["uri"])  # models:/ URIs resolve against this server
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", exported["uri"])
    return MlflowClient(exported["uri"], exported["uri"])


def test_the_session_is_one_run_with_params_stepped_curve_and_headline(exported: dict[str, Any], client: Any) -> None:
    record = exported["result"]["mlflow"]
    assert record["status"] == "exported" and record["experiment"] == "customers-churn"
    assert exported["version"]["mlflow"]["run_id"] == record["run_id"]  # kept in agentml's model version
    run = client.get_run(record["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["agentml.user"] == "ann"
    params, model = run.data.params, exported["version"]["model"]
    assert params["user"] == "ann" and params["rows"] == str(exported["version"]["data"]["rows"])
    assert params["target"] == "churn" and "tune" in params["plan"] and "evaluate" in params["plan"]
    assert {k: params[k] for k in ("max_depth", "eta") if k in model["params"]} == {
        k: str(model["params"][k]) for k in ("max_depth", "eta") if k in model["params"]}
    for name, values in model["history"].items():  # the learning curve, one point per boosting round
        history = client.get_metric_history(record["run_id"], f"valid_{name}")
        assert [m.step for m in history] == list(range(len(values)))
        assert np.allclose([m.value for m in history], values)
    metrics = run.data.metrics
    assert metrics["cv_auc"] == pytest.approx(exported["result"]["metric_value"])
    assert metrics["validation_auc"] == pytest.approx(model["metrics"]["auc"])


def test_every_trial_is_a_nested_run_with_its_history(exported: dict[str, Any], client: Any) -> None:
    record = exported["result"]["mlflow"]
    children = client.search_runs([record["experiment_id"]],
                                  filter_string=f"tags.mlflow.parentRunId = '{record['run_id']}'")
    assert len(children) == record["trial_runs"] == 2
    for child in children:
        assert {"eta", "max_depth"} <= set(child.data.params) or "booster" in child.data.params
        history = client.get_metric_history(child.info.run_id, "valid_logloss")
        steps = [m.step for m in history]
        assert history and steps == sorted(steps) and steps[-1] == int(child.data.metrics["rounds"])
        assert child.data.metrics["best_valid_logloss"] == pytest.approx(min(m.value for m in history))
        assert child.data.tags["stopped_early"] in ("true", "false")


def test_the_artifacts_are_logged(exported: dict[str, Any], client: Any) -> None:
    run_id = exported["result"]["mlflow"]["run_id"]
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"plan.json", "result.json", "report.html", "agentml_model.json"} <= names
    plan = json.loads(Path(client.download_artifacts(run_id, "plan.json")).read_text())
    assert plan == exported["version"]["plan"]
    assert "<html" in Path(client.download_artifacts(run_id, "report.html")).read_text().lower()


def test_the_registered_model_loads_and_predicts_as_agentml_does(exported: dict[str, Any], client: Any) -> None:
    import mlflow.pyfunc
    import mlflow.xgboost

    from service.mlflow_export import signature_sample
    from service.model_versions import ModelVersion
    from skills.artifacts import ArtifactStore
    from skills.library.boosting.saved_model import load_booster

    record, version = exported["result"]["mlflow"], ModelVersion.model_validate(exported["version"])
    assert (record["model_name"], record["model_version"]) == ("customers-churn", "1")
    assert client.get_model_version("customers-churn", "1").run_id == record["run_id"]
    artifacts = ArtifactStore(exported["out"] / "artifacts")
    sample, expected = signature_sample(artifacts, version, load_booster(artifacts, version.model["uri"]))
    booster = mlflow.xgboost.load_model(record["model_uri"])
    assert np.allclose(booster.predict(_dmatrix(sample, version)), expected, atol=1e-6)
    pyfunc = mlflow.pyfunc.load_model(record["model_uri"])
    assert pyfunc.metadata.get_input_schema().input_names() == version.features  # the signature
    assert np.allclose(np.asarray(pyfunc.predict(sample)), expected, atol=1e-6)


def _dmatrix(sample: Any, version: Any) -> Any:
    import xgboost as xgb

    types = ["c" if f in version.model.get("categories", {}) else "q" for f in version.features]
    return xgb.DMatrix(sample.to_numpy(), feature_names=version.features, feature_types=types, enable_categorical=True)
