"""The GPU path, checked on CPU: the configuration produced for a cluster that reports GPUs.

`boosting.compute.scaling_for(resources, settings)` is the one decision; these tests follow it into every place it
lands: xgboost's device, Ray Train's ScalingConfig, the XGBoostTrainer that train_xgboost builds, Tune's trial
resources and concurrency, and the params stored with a model (never hardware-specific).
"""
from __future__ import annotations

import numpy as np
import pytest

from skills import RuntimeSettings, SkillError
from skills.artifacts import ArtifactStore
from skills.library.boosting.compute import scaling_for
from skills.library.boosting.data import prepare
from skills.library.boosting.params import COMPUTE_KEYS, model_params, xgb_params
from skills.library.boosting.ray_train import MAX_FAILURES, BoostJob, make_trainer
from skills.library.tune import TuneInput, make_trainable, trial_job

GPU_NODE = {"CPU": 16.0, "GPU": 2.0, "memory": 64e9}
CPU_NODE = {"CPU": 2.0, "memory": 8e9}


def test_auto_uses_gpus_when_the_cluster_reports_them():
    compute = scaling_for(GPU_NODE, RuntimeSettings(use_gpu="auto", cpus_per_worker=4))
    assert compute.use_gpu
    assert compute.xgb_params() == {"device": "cuda", "nthread": 4}
    scaling = compute.scaling_config()
    assert scaling.use_gpu and scaling.num_workers == 1
    assert scaling.resources_per_worker == {"CPU": 4.0, "GPU": 1.0}
    assert compute.trial_resources() == {"cpu": 4.0, "gpu": 1.0}
    assert compute.max_concurrent_trials == 2  # one trial per GPU, though the CPUs would allow 3


NO_GPU = "no GPU and no autoscaler"


# The decision table: cluster resources x use_gpu x gpu_autoscaling -> GPUs used, or refused before training.
@pytest.mark.parametrize(("resources", "use_gpu", "autoscaling", "expected"), [
    (CPU_NODE, "auto", False, False),  # no GPU and none can come
    ({**GPU_NODE, "GPU": 0.0}, "auto", False, False),
    (GPU_NODE, "auto", False, True),  # the cluster has GPUs now
    (CPU_NODE, "auto", True, True),  # a GPU group scales from zero: asking is what brings a GPU node up
    (GPU_NODE, False, False, False),  # turned off by settings
    (CPU_NODE, False, True, False),
    (GPU_NODE, True, False, True),
    (CPU_NODE, True, True, True),  # forced on, the autoscaler adds a GPU node
    (CPU_NODE, True, False, NO_GPU),  # forced on where no GPU can ever come: refused, not waiting forever
    ({}, True, False, NO_GPU),
])
def test_gpu_decision(resources, use_gpu, autoscaling, expected):
    settings = RuntimeSettings(use_gpu=use_gpu, gpu_autoscaling=autoscaling)
    if expected == NO_GPU:
        with pytest.raises(SkillError, match="no GPU and no autoscaler") as err:
            scaling_for(resources, settings)
        assert "AGENTML_USE_GPU" in (err.value.hint or "") and "AGENTML_GPU_AUTOSCALING" in (err.value.hint or "")
        return
    compute = scaling_for(resources, settings)
    assert compute.use_gpu is expected
    assert compute.xgb_params()["device"] == ("cuda" if expected else "cpu")
    assert ("GPU" in compute.scaling_config().resources_per_worker) is expected
    assert compute.scaling_config().use_gpu is expected


def test_gpu_workers_from_zero_are_asked_for_one_trial_at_a_time():
    compute = scaling_for({"CPU": 8.0}, RuntimeSettings(use_gpu="auto", gpu_autoscaling=True), num_workers=2)
    assert compute.scaling_config().resources_per_worker == {"CPU": 1.0, "GPU": 1.0}
    assert compute.max_concurrent_trials == 1  # no GPU yet: the CPUs alone would allow 3


@pytest.mark.parametrize(("workers", "reuse"), [(1, True), (2, False), (4, False)])
def test_tune_reuses_trial_actors_only_for_single_worker_trials(workers, reuse):
    assert scaling_for(CPU_NODE, RuntimeSettings(), workers).reuse_actors is reuse


@pytest.mark.parametrize(("resources", "workers", "cpus", "concurrent"), [
    (CPU_NODE, 1, 1, 1),  # 2 CPUs: one trial at a time (one CPU kept for the driver and Tune)
    ({"CPU": 8.0}, 1, 2, 3),
    ({"CPU": 8.0}, 2, 1, 3),
    ({"CPU": 64.0, "GPU": 4.0}, 2, 4, 2),  # 2 GPU workers per trial, 4 GPUs
    ({}, 1, 1, 1),  # nothing known (Ray not up): still one
])
def test_trial_concurrency_from_resources(resources, workers, cpus, concurrent):
    settings = RuntimeSettings(cpus_per_worker=cpus, use_gpu="auto")
    assert scaling_for(resources, settings, workers).max_concurrent_trials == concurrent


@pytest.mark.parametrize(("resources", "workers", "cpus", "reserved"), [
    (CPU_NODE, 1, 2, 1.0),  # 1 x 2 on 2 CPUs: the worker reserves 1, Ray Data keeps 1; xgboost still runs 2 threads
    (CPU_NODE, 2, 1, 0.5),
    ({"CPU": 4.0}, 2, 2, 1.0),  # 1.5 is not a quantity Ray accepts above 1: whole CPUs
    ({"CPU": 16.0}, 4, 4, 3.0),
    (CPU_NODE, 1, 1, 1.0),  # a CPU is free anyway: the reservation is what was asked for
    ({"CPU": 8.0}, 2, 2, 2.0),
    ({}, 1, 4, 4.0),  # nothing known (Ray not up): what was asked for
])
def test_training_on_a_streamed_table_leaves_ray_data_a_cpu(resources, workers, cpus, reserved):
    whole = scaling_for(resources, RuntimeSettings(cpus_per_worker=cpus), workers)
    assert whole.scaling_config().resources_per_worker == {"CPU": cpus}  # in-memory tables: whole CPUs, as asked
    compute = whole.streaming()
    assert compute.scaling_config().resources_per_worker == {"CPU": reserved}
    assert compute.trial_resources()["cpu"] == (reserved if workers == 1 else 0.0)
    assert compute.xgb_params()["nthread"] == cpus
    if resources:  # at least one CPU of the cluster is never reserved by the workers
        assert resources["CPU"] - workers * reserved >= 1.0


def test_train_xgboost_trainer_asks_for_gpus(tmp_path):
    compute = scaling_for(GPU_NODE, RuntimeSettings(num_workers=2))
    params = xgb_params(model_params("classification", 0), "classification", compute)
    job = BoostJob(params, "classification", "y", ["x"], {}, 10, 0, 5)
    trainer = make_trainer(job, {}, compute, ArtifactStore(tmp_path).storage_for("train"))
    assert trainer.scaling_config.use_gpu and trainer.scaling_config.num_workers == 2
    assert trainer.scaling_config.resources_per_worker == {"CPU": 1.0, "GPU": 1.0}
    assert trainer.train_loop_config["job"].params["device"] == "cuda"
    assert trainer.run_config.failure_config.max_failures == MAX_FAILURES


def test_tune_trials_ask_for_a_gpu_each(tmp_path):
    import pyarrow as pa

    table = pa.table({"x": np.arange(40, dtype=np.float64), "y": np.arange(40) % 2})
    prep = prepare(table, "y", None, None, (), 0.25, seed=0)
    inp = TuneInput.model_validate({"table": {"uri": "t", "rows": 40, "columns": ["x", "y"]}, "target": "y"})
    storage = ArtifactStore(tmp_path).storage_for("tune")
    single = scaling_for(GPU_NODE, RuntimeSettings())
    assert trial_job(prep, inp, single).params["device"] == "cuda"
    request = make_trainable(prep, trial_job(prep, inp, single), single, storage)._resources
    assert request.bundles == [{"CPU": 1.0, "GPU": 1.0}]
    multi = scaling_for(GPU_NODE, RuntimeSettings(), num_workers=2)
    request = make_trainable(prep, trial_job(prep, inp, multi), multi, storage)._resources
    assert request.bundles[0].get("CPU", 0) == 0 and request.bundles[0].get("GPU", 0) == 0  # its workers hold them


def test_stored_model_params_never_carry_hardware():
    params = model_params("regression", 1, {"device": "cuda", "nthread": 8, "eta": 0.05})
    assert params["eta"] == 0.05 and params["objective"] == "reg:squarederror" and params["seed"] == 1
    assert not set(params) & COMPUTE_KEYS
