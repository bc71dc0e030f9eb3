"""skills.refs: the one Ref model, finding refs inside values, resolving them against JSON outputs, and the type a
dotted path names in an output model."""
from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from skills.plan import Plan, Step
from skills.refs import Ref, RefError, as_ref, find_refs, is_ref, map_refs, path_type, resolve
from skills.types import ModelArtifact

OUTPUTS: dict[str, dict[str, Any]] = {
    "tr": {"model": {"num_rounds": 40, "metrics": {"auc": 0.8}}, "metrics": {"auc": 0.81}},
    "res": {"slices": [{"column": "region", "error": 0.3}, {"column": "plan", "error": 0.2}]},
}


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    known: int = 0


class TrainOut(BaseModel):
    model: ModelArtifact
    metrics: dict[str, float]
    slices: list[dict[str, Any]]
    note: str | None = None
    best: ModelArtifact | None = None
    anything: Any = None
    either: ModelArtifact | list[int] = []
    loose: Loose = Loose()


def r(text: str) -> dict[str, str]:
    return {"$ref": text}


# ---------------------------------------------------------------------------------------------------------------------
# The model


def test_a_dotted_ref_parses_into_step_and_path() -> None:
    ref = Ref.model_validate(r("tr.model.num_rounds"))
    assert (ref.step, ref.path, ref.field, ref.parts) == ("tr", "model.num_rounds", "model", ("model", "num_rounds"))
    assert str(ref) == "tr.model.num_rounds" and ref.model_dump() == r("tr.model.num_rounds")


def test_field_is_accepted_for_path_and_a_plain_field_is_a_one_part_path() -> None:
    assert Ref(step="tr", field="model") == Ref(step="tr", path="model") == Ref.model_validate(r("tr.model"))
    assert Ref(step="tr", path="model").parts == ("model",)


def test_is_ref_and_as_ref_take_only_a_ref_itself() -> None:
    assert is_ref(r("a.b")) and is_ref(Ref(step="a", path="b"))
    assert not is_ref({"$ref": "a.b", "other": 1}) and not is_ref("a.b") and not is_ref([r("a.b")])
    assert as_ref(r("a.b.0")) == Ref(step="a", path="b.0") and as_ref([r("a.b")]) is None


def test_a_step_lists_top_level_refs_and_every_nested_ref() -> None:
    step = Step(id="s", skill="x", inputs={"a": r("p.table"), "b": [r("q.table"), 3, {"k": r("u.v.0")}], "c": 1})
    assert step.refs() == {"a": Ref(step="p", path="table")}
    assert step.all_refs() == [("a", Ref(step="p", path="table")), ("b", Ref(step="q", path="table")),
                               ("b", Ref(step="u", path="v.0"))]


def test_nested_refs_are_dependencies() -> None:
    plan = Plan(steps=[Step(id="report", skill="x", inputs={"models": {"a": r("a.model"), "b": r("b.model.uri")}}),
                       Step(id="b", skill="y", inputs={"tables": [r("a.table")]}), Step(id="a", skill="y")])
    assert plan.dependencies() == {"report": {"a", "b"}, "b": {"a"}, "a": set()}
    assert plan.topological_order() == ["a", "b", "report"]


# ---------------------------------------------------------------------------------------------------------------------
# Finding and replacing refs


def test_find_refs_walks_lists_dicts_and_tuples_in_order() -> None:
    value = {"x": [r("a.b"), (r("c.d.1"),)], "y": {"z": r("e.f")}, "n": 1, "s": "g.h"}
    assert [str(ref) for ref in find_refs(value)] == ["a.b", "c.d.1", "e.f"]
    assert find_refs("a.b") == [] and find_refs(None) == []


def test_map_refs_keeps_a_ref_as_written_when_the_replacement_is_the_ref_itself() -> None:
    written = [r("a.b"), Ref(step="c", path="d")]
    kept = map_refs(written, lambda ref: ref)
    assert kept == written and kept[0] is written[0] and kept[1] is written[1]


# ---------------------------------------------------------------------------------------------------------------------
# Resolving


@pytest.mark.parametrize(("value", "expected"), [
    (r("tr.model.num_rounds"), 40),
    (r("tr.model.metrics.auc"), 0.8),
    (r("res.slices.0.column"), "region"),
    (r("res.slices.-1.column"), "plan"),
    (Ref(step="tr", path="metrics"), {"auc": 0.81}),
    ([r("tr.metrics.auc"), r("tr.model.num_rounds"), 7], [0.81, 40, 7]),
    ({"first": r("res.slices.0"), "n": {"rounds": r("tr.model.num_rounds")}},
     {"first": {"column": "region", "error": 0.3}, "n": {"rounds": 40}}),
    ("tr.model", "tr.model"),  # a string that looks like a path is a literal
    ({"sql": "SELECT 1", "k": [1, 2]}, {"sql": "SELECT 1", "k": [1, 2]}),
])
def test_resolve_replaces_every_ref_inside_a_value(value: Any, expected: Any) -> None:
    assert resolve(value, OUTPUTS) == expected


@pytest.mark.parametrize(("text", "missing", "words"), [
    ("ghost.table", "ghost", ["step 'ghost' has no outputs"]),
    ("tr.modle", "modle", ["the output of step 'tr' has no 'modle'"]),
    ("tr.model.num_roundz", "model.num_roundz", ["has no 'model.num_roundz'", "'model' is a dict without that key"]),
    ("res.slices.5.column", "slices.5", ["has no 'slices.5'", "'slices' is a list of 2"]),
    ("res.slices.first", "slices.first", ["'slices' is a list of 2"]),
    ("tr.model.num_rounds.x", "model.num_rounds.x", ["'model.num_rounds' is a single value of type int"]),
])
def test_an_unresolvable_ref_names_the_step_the_path_and_what_is_missing(text: str, missing: str,
                                                                       words: list[str]) -> None:
    with pytest.raises(RefError) as err:
        resolve({"inputs": [1, r(text)]}, OUTPUTS)
    assert err.value.ref == Ref.model_validate(r(text)) and err.value.missing == missing
    assert err.value.message.startswith(f"{text} cannot be resolved: ") and err.value.hint
    assert all(w in err.value.message for w in words), err.value.message


def test_an_unresolvable_ref_never_shows_the_data() -> None:
    with pytest.raises(RefError) as err:
        resolve(r("res.slices.0.nope"), OUTPUTS)
    assert "region" not in str(err.value) and "0.3" not in str(err.value)


def test_partial_resolve_keeps_refs_to_steps_that_did_not_run() -> None:
    value = [r("later.table"), r("tr.model.num_rounds"), Ref(step="later", path="model")]
    resolved = resolve(value, OUTPUTS, partial=True)
    assert resolved == [r("later.table"), 40, Ref(step="later", path="model")]
    with pytest.raises(RefError):
        resolve(r("tr.nope"), OUTPUTS, partial=True)  # a step that ran must have the path


# ---------------------------------------------------------------------------------------------------------------------
# Static types of a path


@pytest.mark.parametrize(("path", "expected"), [
    ("model", ModelArtifact),
    ("model.num_rounds", int),
    ("model.metrics.auc", float),
    ("model.features.0", str),
    ("best.uri", str),  # through an Optional
    ("metrics.auc", float),
    ("slices.0.column", Any),  # free-form dict: the model cannot tell
    ("anything.a.b.0", Any),
    ("model.params.eta", float | int | str),
    ("either.uri", Any),  # a union: the path may hold for one member
    ("loose.known", int),
    ("loose.extra.0", Any),  # extra fields allowed: any key may be there
])
def test_path_type_follows_the_output_model(path: str, expected: Any) -> None:
    assert path_type(Ref(step="t", path=path), TrainOut) == expected


@pytest.mark.parametrize(("path", "missing", "options", "hint"), [
    ("modle", "modle", list(TrainOut.model_fields), "its outputs: model, metrics"),
    ("model.num_roundz", "model.num_roundz", list(ModelArtifact.model_fields), "model (ModelArtifact) has: uri"),
    ("slices.first", "slices.first", [], "slices is a list: index it with a number"),
    ("model.num_rounds.x", "model.num_rounds.x", [], "model.num_rounds is a single value"),
    ("note.x", "note.x", [], "note is a single value"),
])
def test_path_type_refuses_a_path_no_output_can_have(path: str, missing: str, options: list[str], hint: str) -> None:
    with pytest.raises(RefError) as err:
        path_type(Ref(step="t", path=path), TrainOut)
    assert (err.value.missing, err.value.options) == (missing, options)
    assert err.value.hint is not None and err.value.hint.startswith(hint)
    assert "TrainOut" in err.value.message and missing in err.value.message
