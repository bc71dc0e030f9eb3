"""run_plan on the local backend: order, refs, typed inputs, failures, skips, governance errors, events, cancel."""
from __future__ import annotations

import threading

import pytest
from exec_skills import make_plan, ref

from executor import ExecutionError, RunEvent, RunStore, run_plan, run_stored
from skills import RuntimeSettings


@pytest.fixture
def run(engine, artifacts, registry, analyst):
    """run_plan with this module's defaults; keyword arguments override them."""
    def go(plan, **kwargs):
        principal = kwargs.pop("principal", analyst)
        return run_plan(plan, principal, **{"engine": engine, "artifacts": artifacts, "registry": registry, **kwargs})
    return go


def test_steps_run_in_dependency_order_and_refs_resolve(run):
    # listed out of order on purpose: the executor must sort them
    plan = make_plan(
        ("total", "add", {"a": ref("nums.total"), "b": ref("doubled.values.2")}),
        ("doubled", "scale", {"values": ref("nums.values"), "factor": 3}),
        ("nums", "numbers", {"n": 4, "start": 1}),
    )
    result = run(plan)
    assert result.status == "succeeded", result.steps
    assert result.outputs("nums")["values"] == [1, 2, 3, 4]
    assert result.outputs("doubled")["values"] == [3, 6, 9, 12]
    assert result.outputs("total") == {"sum": 10 + 9}
    started = {s: result.steps[s].started for s in ("nums", "doubled", "total")}
    assert started["nums"] <= started["doubled"] <= started["total"]
    assert all(s.finished >= s.started and s.duration_s >= 0 for s in result.steps.values())


def test_nested_ref_into_a_dict_output(run):
    plan = make_plan(("nums", "numbers", {"n": 3}), ("plus", "add", {"a": ref("nums.info.count"), "b": 1}))
    assert run(plan).outputs("plus") == {"sum": 4}


def test_a_ref_of_the_wrong_type_is_an_error_naming_step_and_field(run):
    plan = make_plan(("nums", "numbers", {"n": 3}), ("plus", "add", {"a": ref("nums.values"), "b": 1}))
    result = run(plan)
    step = result.steps["plus"]
    assert result.status == "failed" and result.failed_step == "plus"
    assert step.status == "failed" and step.error_type == "ExecutionError"
    assert "'plus'" in step.error and "'a'" in step.error and "nums.values" in step.error
    assert "add.a expects int" in step.hint
    assert result.steps["nums"].status == "succeeded"


def test_bad_literal_and_unknown_input_are_reported_together(run):
    result = run(make_plan(("plus", "add", {"a": "seven", "b": 1, "c": 2})))
    error = result.steps["plus"].error
    assert "'a'" in error and "'c'" in error and "Extra inputs" in error
    assert "seven" not in error  # values may be governed data: never echoed


def test_missing_output_field_is_an_error_before_anything_runs(run, registry):
    plan = make_plan(("nums", "numbers", {"n": 3}), ("plus", "add", {"a": ref("nums.nope"), "b": 1}))
    store = RunStore()
    with pytest.raises(ExecutionError) as err:
        run(plan, store=store)
    assert err.value.step == "plus" and err.value.field == "a" and "values" in err.value.hint
    (record,) = store.list_runs()
    assert record.status == "failed" and "nope" in record.error
    assert all(s.status == "pending" for s in record.steps.values())


@pytest.mark.parametrize(("steps", "words"), [
    ([("x", "no_such_skill", {})], ["unknown skill", "no_such_skill"]),
    ([("x", "add", {"a": {"$ref": "ghost.sum"}, "b": 1})], ["unknown step", "ghost"]),
    ([("x", "add", {"a": {"$ref": "y.sum"}, "b": 1}), ("y", "add", {"a": {"$ref": "x.sum"}, "b": 1})], ["cycle"]),
    ([("x", "add", {"a": 1, "b": 1}), ("x", "add", {"a": 1, "b": 1})], ["duplicate"]),
])
def test_plans_that_cannot_run_raise_before_any_step(run, steps, words):
    with pytest.raises(ExecutionError) as err:
        run(make_plan(*steps))
    assert all(w in err.value.message for w in words) and err.value.hint


def test_failure_skips_descendants_keeps_outputs_and_runs_independent_branches(run):
    plan = make_plan(
        ("nums", "numbers", {"n": 3}),
        ("broken", "fail", {"message": "the target column is constant", "hint": "pick another target"}),
        ("after", "add", {"a": ref("broken.sum"), "b": 1}),
        ("after_after", "add", {"a": ref("after.sum"), "b": 2}),
        ("branch", "scale", {"values": ref("nums.values")}),
    )
    result = run(plan)
    steps = result.steps
    assert result.status == "failed" and result.failed_step == "broken"
    assert steps["broken"].error == "the target column is constant"
    assert steps["broken"].hint == "pick another target"
    for skipped in ("after", "after_after"):
        assert steps[skipped].status == "skipped" and "'broken'" in steps[skipped].error
        assert steps[skipped].outputs is None and steps[skipped].started is None
    assert steps["branch"].status == "succeeded" and result.outputs("branch") == {"values": [0, 2, 4]}
    assert result.outputs("nums")["total"] == 3
    with pytest.raises(ExecutionError, match="broken"):
        result.raise_for_status()


def test_an_unexpected_error_shows_no_traceback_but_the_store_keeps_it(run):
    store = RunStore()
    result = run(make_plan(("b", "buggy", {})), store=store)
    step = result.steps["b"]
    assert step.status == "failed" and step.error_type == "ZeroDivisionError"
    assert "Traceback" not in step.error and "bug in the skill" in step.hint
    assert "traceback" not in step.model_dump() and "Traceback" not in result.model_dump_json()
    assert "ZeroDivisionError" in store.get_run(result.id).steps["b"].traceback
    assert "exec_skills.py" in step.traceback  # operators see where


def test_a_skill_returning_the_wrong_model_fails_clearly(run):
    step = run(make_plan(("w", "wrong_output", {}))).steps["w"]
    assert step.status == "failed" and "WrongOut" in step.error and "AddOut" in step.error


def test_governed_reads_and_artifacts_flow_between_steps(run):
    plan = make_plan(("q", "read", {"sql": "SELECT id, spend FROM customers"}),
                     ("c", "count", {"table": ref("q.table")}))
    result = run(plan)
    assert result.status == "succeeded"
    assert result.outputs("q")["rows"] == 3  # the analyst's row filter: EU only
    assert result.outputs("c") == {"rows": 3, "compute": "local"}


def test_a_governance_refusal_is_recorded_with_its_hint(run):
    result = run(make_plan(("q", "read", {"sql": "SELECT id, email FROM customers"})))
    step = result.steps["q"]
    assert step.status == "failed" and step.error_type == "PolicyViolation"
    assert "email" in step.error and step.hint
    assert "@" not in step.error  # no data values


def test_progress_and_state_changes_become_ordered_events(run):
    store, seen = RunStore(), []
    result = run(make_plan(("s", "slow", {"ticks": 3, "delay": 0.0})), store=store, on_progress=seen.append)
    events = store.events(result.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.seq for e in seen] == [e.seq for e in events] and all(isinstance(e, RunEvent) for e in seen)
    progress = [e for e in events if e.kind == "progress"]
    assert [e.data["done"] for e in progress] == [1, 2, 3] and progress[0].data["tick"] == 0
    assert progress[1].data["kind"] == "tick" and progress[1].data["step"] == 1 and progress[2].data["share"] == 1.0
    assert all(e.step == "s" and e.data["total"] == 3 and e.data["unit"] == "ticks" for e in progress)
    states = [(e.kind, e.data.get("status")) for e in events if e.kind != "progress"]
    assert states == [("run", "running"), ("step", "running"), ("step", "succeeded"), ("run", "succeeded")]
    assert store.events(result.id, after_seq=events[-2].seq) == events[-1:]


def test_a_broken_callback_does_not_fail_the_run(run):
    def explode(_event: RunEvent) -> None:
        raise RuntimeError("display crashed")
    assert run(make_plan(("s", "slow", {"ticks": 2, "delay": 0.0})), on_progress=explode).status == "succeeded"


def test_cancel_between_steps(run):
    cancel = threading.Event()

    def stop_after_first(event: RunEvent) -> None:
        if event.kind == "step" and event.step == "a" and event.data["status"] == "succeeded":
            cancel.set()

    plan = make_plan(("a", "numbers", {"n": 2}), ("b", "scale", {"values": ref("a.values")}),
                     ("c", "add", {"a": 1, "b": 2}))
    result = run(plan, cancel=cancel, on_progress=stop_after_first)
    assert result.status == "cancelled"
    assert [result.steps[s].status for s in "abc"] == ["succeeded", "cancelled", "cancelled"]
    assert result.outputs("a")["values"] == [0, 1]


def test_cancel_stops_a_running_step_at_its_next_progress_report(run):
    cancel = threading.Event()

    def stop_on_progress(event: RunEvent) -> None:
        if event.kind == "progress" and event.data["done"] == 2:
            cancel.set()

    result = run(make_plan(("s", "slow", {"ticks": 50, "delay": 0.01})), cancel=cancel, on_progress=stop_on_progress)
    assert result.status == "cancelled" and result.steps["s"].status == "cancelled"
    assert result.steps["s"].duration_s < 0.4  # 50 ticks would take 0.5 s


def test_a_queued_run_is_run_under_its_own_id(run, analyst):
    store = RunStore()
    plan = make_plan(("a", "add", {"a": 1, "b": 2}))
    run_id = store.create_run(plan, analyst, prompt="add things")
    assert store.get_run(run_id).status == "queued"
    result = run(plan, store=store, run_id=run_id)
    assert result.id == run_id and result.status == "succeeded" and result.prompt == "add things"
    with pytest.raises(ExecutionError, match="already finished"):
        run(plan, store=store, run_id=run_id)


def test_unknown_backend(run):
    with pytest.raises(ExecutionError, match="backend"):
        run(make_plan(("a", "add", {"a": 1, "b": 2})), backend="spark")


def test_run_stored_takes_plan_and_principal_from_the_store(engine, artifacts, registry, analyst):
    # what a Ray job's entrypoint does: the submitter queued the run, the job runs it by id
    store = RunStore()
    plan = make_plan(("q", "read", {"sql": "SELECT id FROM customers"}))
    run_id = store.create_run(plan, analyst, prompt="ids")
    result = run_stored(run_id, store, engine=engine, artifacts=artifacts, registry=registry)
    assert result.status == "succeeded" and result.outputs("q")["rows"] == 3  # the analyst's row filter held


def test_a_cancel_requested_through_the_store_stops_the_run(run, tmp_path):
    # the API (maybe another process) only knows the run id and the store
    store = RunStore(f"sqlite:///{tmp_path / 'runs.db'}")
    api_view = RunStore(store.url)

    def cancel_when_running(event: RunEvent) -> None:
        if event.kind == "progress" and event.data["done"] == 1:
            threading.Thread(target=api_view.request_cancel, args=(event.run_id,)).start()

    plan = make_plan(("s", "slow", {"ticks": 100, "delay": 0.05}), ("t", "add", {"a": 1, "b": 1}))
    result = run(plan, store=store, on_progress=cancel_when_running)
    assert result.status == "cancelled" and result.cancel_requested
    assert [result.steps[s].status for s in "st"] == ["cancelled", "cancelled"]
    assert result.steps["s"].duration_s < 3  # 100 ticks would take 5 s
    assert "cancel_requested" in [e.kind for e in store.events(result.id)]


def test_a_queued_runs_compute_travels_in_its_record(engine, artifacts, registry, analyst, tmp_path):
    # the API records the run's compute; the job (another process: a new store object) reads it back with the run
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    plan = make_plan(("p", "settings_probe", {}))
    chosen = RuntimeSettings(num_workers=3, cpus_per_worker=2, use_gpu=False)
    run_id = RunStore(url).create_run(plan, analyst, settings=chosen.model_dump(mode="json"))
    result = run_stored(run_id, RunStore(url), engine=engine, artifacts=artifacts, registry=registry)
    assert result.outputs("p") == {"num_workers": 3, "cpus_per_worker": 2, "use_gpu": False}
    assert result.settings is not None and result.settings["num_workers"] == 3


def test_a_run_records_the_settings_it_ran_with(run):
    store = RunStore()
    result = run(make_plan(("p", "settings_probe", {})), store=store, settings=RuntimeSettings(num_workers=2))
    assert result.outputs("p")["num_workers"] == 2 and result.settings is not None
    assert RuntimeSettings.model_validate(result.settings) == RuntimeSettings(num_workers=2)
    plain = run(make_plan(("p", "settings_probe", {})), store=store)
    assert plain.outputs("p")["num_workers"] == 1 and plain.settings == RuntimeSettings().model_dump(mode="json")


def test_a_store_from_before_the_settings_column_gets_it(tmp_path, analyst):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = RunStore(url)
    old = store.create_run(make_plan(("a", "add", {"a": 1, "b": 2})), analyst)
    with store.engine.begin() as conn:  # the schema of a store written before runs had settings
        conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN settings")
    store.close()
    reopened = RunStore(url)
    assert reopened.get_run(old).settings is None
    new = reopened.create_run(make_plan(("a", "add", {"a": 1, "b": 2})), analyst, settings={"num_workers": 2})
    assert reopened.get_run(new).settings == {"num_workers": 2}
