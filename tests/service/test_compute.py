"""A run's compute from settings (AGENTML_*) and the run's own choice: `service.compute.runtime_settings`."""
from __future__ import annotations

import pytest

from service.compute import ComputeChoice, ComputeLimitError, runtime_settings
from service.settings import Settings
from skills import RuntimeSettings


def test_settings_read_workers_cpus_and_gpu_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTML_NUM_WORKERS", "2")
    monkeypatch.setenv("AGENTML_CPUS_PER_WORKER", "4")
    monkeypatch.setenv("AGENTML_GPU_AUTOSCALING", "true")
    for text, value in (("auto", "auto"), ("true", True), ("false", False)):
        monkeypatch.setenv("AGENTML_USE_GPU", text)
        assert runtime_settings(Settings()) == RuntimeSettings(num_workers=2, cpus_per_worker=4, use_gpu=value,
                                                               gpu_autoscaling=True)


def test_defaults_are_one_worker_one_cpu_and_gpus_when_the_cluster_has_them() -> None:
    assert runtime_settings(Settings()) == RuntimeSettings(num_workers=1, cpus_per_worker=1, use_gpu="auto")


@pytest.mark.parametrize(("choice", "expected"), [
    (ComputeChoice(), (2, 1, "auto")),
    (ComputeChoice(workers=4), (4, 1, "auto")),
    (ComputeChoice(cpus_per_worker=8, gpu="true"), (2, 8, True)),
    (ComputeChoice(gpu=False), (2, 1, False)),
    (ComputeChoice(gpu="auto"), (2, 1, "auto")),
])
def test_a_runs_choice_overrides_the_settings(choice: ComputeChoice, expected: tuple) -> None:
    got = runtime_settings(Settings(num_workers=2), choice, seed=7)
    assert (got.num_workers, got.cpus_per_worker, got.use_gpu) == expected and got.seed == 7


@pytest.mark.parametrize(("choice", "field"), [
    (ComputeChoice(workers=5), "compute.workers"),
    (ComputeChoice(cpus_per_worker=17), "compute.cpus_per_worker"),
])
def test_more_than_the_server_allows_is_bad_input_naming_the_limit(choice: ComputeChoice, field: str) -> None:
    with pytest.raises(ComputeLimitError) as err:
        runtime_settings(Settings(max_workers=4, max_cpus_per_worker=16), choice)
    assert err.value.category == "bad_input" and "over the limit" in err.value.message
    assert err.value.details()[0]["field"] == field and "AGENTML_MAX_" in (err.value.hint or "")
    with pytest.raises(ComputeLimitError):  # the server's own defaults are held to the same limits
        runtime_settings(Settings(num_workers=5, max_workers=4))
