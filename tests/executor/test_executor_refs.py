"""Refs through the executor: dotted paths, lists and dicts of refs, missing steps, fields and sub-paths; and one
dotted ref read the same way by plan validation, the executor and the OODA loop's inlining."""
from __future__ import annotations

from typing import Any

import pytest
from exec_skills import make_plan, ref

from executor import ExecutionError, run_plan
from planner.ooda import inline_outputs
from planner.validate import validate_plan
from skills.refs import resolve


@pytest.fixture
def run(engine, artifacts, registry, analyst):
    def go(plan, **kwargs):
        return run_plan(plan, analyst, **{"engine": engine, "artifacts": artifacts, "registry": registry, **kwargs})
    return go


def test_a_list_of_refs_resolves_item_by_item(run):
    plan = make_plan(("nums", "numbers", {"n": 3, "start": 1}),
                     ("scaled", "scale", {"values": [ref("nums.total"), ref("nums.info.count"), 5], "factor": 2}))
    assert run(plan).outputs("scaled") == {"values": [12, 6, 10]}


def test_a_dict_of_refs_resolves_and_orders_the_steps(run):
    plan = make_plan(("total", "sum_parts", {"parts": {"a": ref("nums.values.-1"), "b": ref("plus.sum"), "c": 1}}),
                     ("plus", "add", {"a": ref("nums.total"), "b": 1}),
                     ("nums", "numbers", {"n": 4}))
    result = run(plan)
    assert result.status == "succeeded", result.steps
    assert result.outputs("total") == {"sum": 3 + (6 + 1) + 1}


@pytest.mark.parametrize(("inputs", "words"), [
    ({"values": [ref("ghost.values")]}, ["unknown step 'ghost'"]),
    ({"values": [ref("nums.valuez")]}, ["has no output 'valuez'"]),
    ({"values": ref("nums.values.first")}, ["has no output 'values.first'"]),
    ({"values": {"x": ref("nums.total.x")}}, ["has no output 'total.x'"]),
])
def test_refs_that_cannot_exist_are_refused_before_anything_runs(run, inputs: dict[str, Any], words: list[str]):
    with pytest.raises(ExecutionError) as err:
        run(make_plan(("nums", "numbers", {"n": 3}), ("scaled", "scale", inputs)))
    assert err.value.step == "scaled" and err.value.field == "values"
    assert all(w in err.value.message for w in words), err.value.message


@pytest.mark.parametrize(("path", "words"), [
    ("nums.values.9", ["nums.values.9 cannot be resolved", "has no 'values.9'", "'values' is a list of 3"]),
    ("nums.info.nope", ["has no 'info.nope'", "'info' is a dict without that key"]),
])
def test_a_sub_path_missing_from_the_outputs_fails_the_step_naming_it(run, path: str, words: list[str]):
    result = run(make_plan(("nums", "numbers", {"n": 3}), ("plus", "add", {"a": ref(path), "b": 1})))
    step = result.steps["plus"]
    assert result.status == "failed" and step.status == "failed" and step.error_type == "ExecutionError"
    assert "'plus'" in step.error and "'a'" in step.error
    assert all(w in step.error for w in words), step.error


def test_one_dotted_ref_is_read_alike_by_validation_the_executor_and_ooda(run, registry):
    inputs = {"a": ref("nums.info.count"), "b": ref("nums.values.-1")}
    plan = make_plan(("nums", "numbers", {"n": 3, "start": 5}), ("plus", "add", inputs))
    assert validate_plan(plan, registry) == []
    result = run(plan)
    assert result.outputs("plus") == {"sum": 3 + 7}
    outputs = {"nums": result.outputs("nums")}
    assert inline_outputs(plan.step("plus"), outputs).inputs == {"a": 3, "b": 7} == resolve(inputs, outputs)


def test_validation_refuses_what_the_executor_refuses(registry):
    plan = make_plan(("nums", "numbers", {"n": 3}),
                     ("scaled", "scale", {"values": [ref("nums.values.first"), ref("ghost.values")]}))
    problems = validate_plan(plan, registry)
    assert [(p.kind, p.step, p.field) for p in problems] == [("unknown_ref", "scaled", "values")] * 2
    assert problems[0].message == "step 'nums' (numbers) has no output 'values.first'"
    assert problems[0].hint == "values is a list: index it with a number"
    assert problems[1].message == "refers to step 'ghost', which is not in the plan"
