"""The OODA loop on small synthetic warehouses, on real DuckDB + real local Ray, through the real executor.

Two worlds share one shape: `accounts` (label at `as_of`) and a monthly `events` history. In the first, the label
depends on the last three months of `events.value`: the loop must find a history feature and accept it. In the second,
`events` is noise and the real signal sits in `secret_events`, a table the principal may not see: the loop must accept
nothing and never name the hidden table.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from executor import RunStore, run_plan
from governance import Engine, Principal, policies_from_dict
from planner.catalog import Related
from planner.ooda import BaseQuery, LoopConfig, OodaError, improve, inline_outputs
from planner.ooda_llm import propose
from planner.ooda_rules import Orientation, decide, orient
from skills.artifacts import ArtifactStore
from skills.library.race import paired_test
from skills.plan import Plan, Ref, Step
from skills.registry import load_registry

pytestmark = pytest.mark.ray

N = 700
MONTHS = [dt.date(2023, m, 1) for m in range(1, 13)]
AS_OF = dt.date(2024, 1, 1)
ANALYST = Principal(user="ann", roles=["analyst"])
POLICIES = {"tables": {"accounts": {"allow": ["analyst"]}, "events": {"allow": ["analyst"]},
                       "secret_events": {"allow": ["admin"]}}}
LIBRARY = load_registry()
CONFIG = LoopConfig(max_candidates=6, race_rounds=40, grace_rounds=10, folds=10, finalists=2)


def _history(rng: np.random.Generator, shift: np.ndarray) -> pa.Table:
    """12 monthly rows per account; `shift` is added to the last three months only."""
    ids = np.repeat(np.arange(1, N + 1), len(MONTHS))
    recent = np.tile([m >= dt.date(2023, 10, 1) for m in MONTHS], N)
    value = rng.normal(size=len(ids)) + np.where(recent, np.repeat(shift, len(MONTHS)), 0.0)
    return pa.table({"account_id": ids, "month": pa.array(MONTHS * N, pa.date32()), "value": value})


def _world(useful: bool) -> dict[str, pa.Table]:
    rng = np.random.default_rng(11)
    x1, x2, signal = rng.normal(size=N), rng.normal(size=N), rng.normal(size=N)
    label = rng.random(N) < 1 / (1 + np.exp(-(1.2 * x1 + 0.8 * x2 + 2.0 * signal)))
    accounts = pa.table({"account_id": np.arange(1, N + 1), "as_of": pa.array([AS_OF] * N, pa.date32()),
                         "x1": x1, "x2": x2, "label": np.where(label, "yes", "no")})
    visible = _history(rng, 2 * signal if useful else np.zeros(N))
    return {"accounts": accounts, "events": visible, "secret_events": _history(rng, 2 * signal)}


def _plan() -> Plan:
    model, table = Ref(step="train", field="model"), Ref(step="query", field="table")
    return Plan(goal="predict label", steps=[
        Step(id="query", skill="query", inputs={"sql": "SELECT * FROM accounts", "key": "account_id"}),
        Step(id="train", skill="train_xgboost", inputs={"table": table, "target": "label", "num_rounds": 60,
                                                        "exclude": ["account_id", "as_of"],
                                                        "params": {"max_depth": 3}}),
        Step(id="evaluate", skill="evaluate", inputs={"model": model, "table": table, "folds": 5}),
        Step(id="explain", skill="explain", inputs={"model": model, "table": table}),
        Step(id="residuals", skill="residuals", inputs={"model": model, "table": table}),
    ])


def _runner(engine: Engine, artifacts: ArtifactStore, store: RunStore) -> Any:
    """How the loop runs each extension: the executor, governed as the analyst (what the service passes)."""
    return lambda plan: run_plan(plan, ANALYST, engine=engine, artifacts=artifacts, store=store, prompt=plan.goal,
                                 registry=LIBRARY)


def _improve(tmp_path: Any, useful: bool) -> Any:
    engine = Engine(policies_from_dict(POLICIES), threads=1)
    for name, table in _world(useful).items():
        engine.register(name, table)
    artifacts, store = ArtifactStore(tmp_path / "artifacts"), RunStore(f"sqlite:///{tmp_path / 'runs.db'}")
    plan = _plan()
    first = run_plan(plan, ANALYST, engine=engine, artifacts=artifacts, store=store, registry=LIBRARY)
    assert first.status == "succeeded", first.steps
    result = improve(plan, first, engine=engine, principal=ANALYST, catalog=engine.catalog(ANALYST),
                     execute=_runner(engine, artifacts, store), iterations=2, config=LoopConfig(**vars(CONFIG)),
                     registry=LIBRARY)
    return first, result


def test_useful_history_feature_is_found_and_accepted(ray_cluster: Any, tmp_path: Any) -> None:
    first, res = _improve(tmp_path, useful=True)
    assert res.error is None
    it = res.iterations[0]
    assert it.accepted, it.why
    accepted = [c for c in it.candidates if c.accepted]
    assert all(c.p_value is not None and c.p_value < 0.1 and c.cv_delta > 0 for c in accepted)
    assert any(f.startswith("events_value") for f in res.accepted_features)
    assert any(c.stopped_early for it in res.iterations for c in it.candidates), "ASHA stopped nothing"
    assert all(c.reason for c in it.candidates)
    assert it.metric_value > it.baseline_value + 0.05  # the signal is strong; the final model must show it
    final = res.final("train")["model"]
    assert set(res.accepted_features) <= set(final["features"])
    assert res.plan.step("ooda1_race").inputs["candidates"]  # the extension is part of the saved plan
    assert res.plan.step("ooda1_train").inputs["features"] == {"$ref": "ooda1_race.features"} or \
        res.plan.step("ooda1_train").inputs["features"] == Ref(step="ooda1_race", field="features")


def test_nothing_useful_nothing_accepted_and_hidden_table_never_named(ray_cluster: Any, tmp_path: Any) -> None:
    first, res = _improve(tmp_path, useful=False)
    assert res.error is None
    assert len(res.iterations) == 1 and res.iterations[0].accepted == []
    assert res.accepted_features == [] and "nothing was accepted" in res.stopped
    it = res.iterations[0]
    assert it.metric_value == it.baseline_value
    assert it.candidates and all(not c.accepted and c.reason for c in it.candidates)
    assert "secret_events" not in json.dumps(res.plan.model_dump(mode="json"))
    assert res.roles["train"] == "train"  # the first model stays the final one


# ------------------------------------------------------------------------------------ one table, no key, no history

SINGLE_N = 3000
SINGLE = LoopConfig(max_candidates=5, race_rounds=40, grace_rounds=10, folds=10, finalists=2)


def _single_table(planted: bool) -> pa.Table:
    """A numeric target of two drivers `a` and `b` plus noise, and two noise columns; with `planted` it also holds
    2 * a * b, an interaction depth-3 trees approximate only through many splits."""
    rng = np.random.default_rng(5)
    a, b, c, d = (rng.normal(size=SINGLE_N) for _ in range(4))
    y = 0.5 * a + 0.3 * b + (2.0 * a * b if planted else 0.0) + 0.3 * rng.normal(size=SINGLE_N)
    return pa.table({"a": a, "b": b, "c": c, "d": d, "y": y})


def _improve_single(tmp_path: Any, planted: bool) -> Any:
    engine = Engine(policies_from_dict({"tables": {"shop": {"allow": ["analyst"]}}}), threads=1)
    engine.register("shop", _single_table(planted))
    artifacts, store = ArtifactStore(tmp_path / "artifacts"), RunStore(f"sqlite:///{tmp_path / 'runs.db'}")
    model, table = Ref(step="train", field="model"), Ref(step="query", field="table")
    plan = Plan(goal="predict label", steps=[
        Step(id="query", skill="query", inputs={"sql": "SELECT a, b, c, d, y FROM shop"}),
        Step(id="train", skill="train_xgboost", inputs={"table": table, "target": "y", "num_rounds": 60,
                                                        "params": {"max_depth": 3}}),
        Step(id="evaluate", skill="evaluate", inputs={"model": model, "table": table, "folds": 5}),
        Step(id="explain", skill="explain", inputs={"model": model, "table": table}),
        Step(id="residuals", skill="residuals", inputs={"model": model, "table": table}),
    ])
    first = run_plan(plan, ANALYST, engine=engine, artifacts=artifacts, store=store, registry=LIBRARY)
    assert first.status == "succeeded", first.steps
    return improve(plan, first, engine=engine, principal=ANALYST, catalog=engine.catalog(ANALYST),
                   execute=_runner(engine, artifacts, store), iterations=1, config=LoopConfig(**vars(SINGLE)),
                   registry=LIBRARY)


_PRODUCTS = {"a_x_b", "b_x_a"}


def test_single_table_planted_interaction_is_proposed_from_a_slice_and_accepted(ray_cluster: Any,
                                                                               tmp_path: Any) -> None:
    res = _improve_single(tmp_path, planted=True)
    assert res.error is None, res.error
    it = res.iterations[0]
    print(f"planted: CV {it.metric_name} {it.baseline_value:.4f} -> {it.metric_value:.4f}; ideas {it.ideas}")
    from_slices = [c for c in it.candidates if c.motivation.startswith("slice ")]
    assert from_slices, [c.motivation for c in it.candidates]  # residual-driven, and says which slice
    assert any(i.startswith("slice ") and " -> interact_" in i for i in it.ideas)
    pair = next(c for c in it.candidates if set(c.features) & _PRODUCTS)
    assert pair.accepted, (pair.reason, it.why)
    assert pair.p_value is not None and pair.p_value < 0.1 and pair.cv_delta > 0
    assert set(pair.features) <= set(res.final("train")["model"]["features"])
    assert it.metric_name == "rmse" and it.metric_value < 0.95 * it.baseline_value  # cross-validated, lower wins
    features = res.plan.step("ooda1_features")
    assert features.inputs["key"] is None and all(s["kind"] not in ("window", "lag", "trend")
                                                  for s in features.inputs["specs"])
    assert "no entity key" in " ".join(it.oriented["notes"])


def test_single_table_without_a_planted_signal_accepts_no_interaction(ray_cluster: Any, tmp_path: Any) -> None:
    res = _improve_single(tmp_path, planted=False)
    assert res.error is None, res.error
    it = res.iterations[0]
    print(f"control: CV {it.metric_name} {it.baseline_value} -> {it.metric_value}; accepted {it.accepted}")
    assert it.candidates and all(c.reason and c.motivation for c in it.candidates)
    assert not any(c.accepted and c.name.startswith("interact_") for c in it.candidates)
    assert it.accepted == [] and "nothing was accepted" in res.stopped


# ---------------------------------------------------------------------------------------------- pure parts


CATALOG = {"accounts": {"account_id": "BIGINT", "as_of": "DATE", "x1": "DOUBLE", "x2": "DOUBLE", "spare": "DOUBLE",
                        "label": "VARCHAR"},
           "events": {"account_id": "BIGINT", "month": "DATE", "value": "DOUBLE"}}


def _orientation(catalog: dict[str, dict[str, str]] = CATALOG) -> Orientation:
    return orient(catalog, base_table="accounts", key="account_id", cutoff=None,
                  table_columns=list(catalog["accounts"]), model_features=["x1", "x2"], target="label",
                  drivers=["x2", "x1"])


def test_orient_finds_history_unused_columns_and_drivers() -> None:
    o = _orientation()
    assert o.cutoff == "as_of"
    assert [(r.table, r.key, r.time, r.values) for r in o.related] == [("events", "account_id", "month", ("value",))]
    assert o.unused == ["spare"] and o.drivers == ["x2", "x1"]
    groups = decide(o)
    names = [g.name for g in groups]
    assert names[:5] == ["events_value_avg", "events_value_trend", "events_value_lag", "events_value_spread",
                         "events_value_sum"]
    assert "unused_columns" in names and "ratios_x2_x1" in names
    lag = next(g for g in groups if g.name == "events_value_lag")
    assert [s["periods"] for s in lag.specs] == [1, 2, 3]
    assert decide(o, {"events_value_avg": 1}, limit=2)[0].name == "events_value_trend"


def test_orient_refuses_history_without_a_cutoff() -> None:
    catalog = {**CATALOG, "accounts": {k: v for k, v in CATALOG["accounts"].items() if k != "as_of"}}
    o = orient(catalog, base_table="accounts", key="account_id", cutoff=None, table_columns=list(catalog["accounts"]),
               model_features=["x1"], target="label", drivers=[])
    assert o.related == [] and "leak" in o.notes[0]


def test_paired_test_needs_consistent_improvement() -> None:
    better = [0.80, 0.82, 0.79, 0.81, 0.80]
    base = [0.78, 0.80, 0.78, 0.79, 0.78]
    delta, p = paired_test(better, base, 1.0)
    assert delta > 0 and p < 0.01
    delta, p = paired_test(base, better, 1.0)
    assert delta < 0 and p > 0.9
    assert paired_test([0.2, 0.3, 0.4], [0.3, 0.4, 0.5], -1.0) == pytest.approx((0.1, 0.0))  # RMSE: lower wins
    _, p = paired_test([0.80, 0.70, 0.85, 0.75, 0.81], base, 1.0)
    assert p > 0.1  # noisy: mean up, but not consistently


def _llm_orientation() -> Orientation:
    return Orientation("accounts", "account_id", "as_of", [Related("events", "account_id", "month", ("value",))],
                       [], ["x1"])


def test_llm_proposals_are_validated_against_schema_and_catalog() -> None:
    reply = {"candidates": [
        {"name": "recent_peak", "description": "peak of the last quarter", "specs": [
            {"kind": "window", "name": "value_max_92d", "table": "events", "key": "account_id", "time": "month",
             "column": "value", "agg": "max", "window_days": 92}]},
        {"name": "hidden", "specs": [{"kind": "window", "name": "s_avg", "table": "secret_events",
                                      "key": "account_id", "time": "month", "column": "value", "agg": "avg"}]},
        {"name": "bad_kind", "specs": [{"kind": "magic", "name": "m"}]},
    ]}
    o = _llm_orientation()
    got = propose("openai/gpt-4o-mini", o, CATALOG, {"target": "label", "features": ["x1"]}, [], {},
                  mock_response="Here you go:\n```json\n" + json.dumps(reply) + "\n```")
    assert [c.name for c in got] == ["llm_recent_peak"]
    assert got[0].source == "llm" and got[0].features == ["value_max_92d"]


def test_llm_junk_leaves_the_rules_alone() -> None:
    o = _llm_orientation()
    assert propose("openai/gpt-4o-mini", o, CATALOG, {}, [], {}, mock_response="I cannot help with that") == []
    assert any("LLM proposals skipped" in n for n in o.notes)


def test_the_base_query_and_inlined_steps_follow_dotted_refs() -> None:
    outputs = {"q": {"table": {"uri": "t", "rows": 3, "columns": ["account_id"], "key": "account_id"},
                     "sql": "SELECT * FROM accounts", "meta": {"cutoffs": ["2024-01-01"]}}}
    step = Step(id="f", skill="features", inputs={"base_sql": {"$ref": "q.sql"}, "key": {"$ref": "q.table.key"},
                                                  "cutoff": {"$ref": "q.meta.cutoffs.0"}, "specs": []})
    base = BaseQuery.of(step, outputs)
    assert (base.sql, base.key, base.cutoff, base.table) == ("SELECT * FROM accounts", "account_id", "2024-01-01",
                                                             "accounts")
    later = Step(id="t", skill="train_xgboost", inputs={"table": Ref(step="f", path="table"),
                                                        "features": [{"$ref": "q.table.columns.0"}]})
    assert inline_outputs(later, outputs).inputs == {"table": Ref(step="f", path="table"), "features": ["account_id"]}


def test_a_base_query_ref_that_cannot_be_read_back_is_an_ooda_error() -> None:
    step = Step(id="f", skill="features", inputs={"base_sql": {"$ref": "q.sql"}, "key": {"$ref": "q.table.kee"}})
    with pytest.raises(OodaError) as err:
        BaseQuery.of(step, {"q": {"sql": "SELECT * FROM accounts", "table": {"key": "account_id"}}})
    assert "q.table.kee" in err.value.message and "'table.kee'" in err.value.message


SHOP = {"shop": {"shop_id": "BIGINT", "a": "DOUBLE", "b": "DOUBLE", "c": "DOUBLE", "seg": "VARCHAR", "opened": "DATE",
                 "leak": "DOUBLE", "label": "VARCHAR"}}
SLICES = [{"column": "c", "slice": "(missing)", "count": 40, "error": 1.2, "lift": 2.0, "in_model": True},
          {"column": "leak", "slice": "[0, 1)", "count": 90, "error": 1.1, "lift": 1.8, "in_model": False},
          {"column": "a", "slice": "[1.2, 3.5]", "count": 300, "error": 0.9, "lift": 1.6, "in_model": True},
          {"column": "c", "slice": "[-2, 0)", "count": 300, "error": 0.85, "lift": 1.5, "in_model": True},
          {"column": "seg", "slice": "north", "count": 90, "error": 0.8, "lift": 1.4, "in_model": True}]


def _shop_orientation() -> Orientation:
    return orient(SHOP, base_table="shop", key=None, cutoff=None, table_columns=list(SHOP["shop"]),
                  model_features=["a", "b", "c", "seg"], target="label", drivers=["a", "seg", "b", "c"],
                  excluded=["leak"])


def test_slices_and_drivers_become_motivated_transformations_of_the_table() -> None:
    from pydantic import TypeAdapter

    from skills.feature_specs import FeatureSpec

    o = _shop_orientation()
    assert o.related == [] and "no entity key" in o.notes[0] and o.drivers == ["a", "b", "c"]
    assert set(o.columns) == {"a", "b", "c", "seg", "opened"}  # not the target, the id, nor what training excluded
    groups = decide(o, {}, limit=20, slices=SLICES)
    assert [g.name for g in groups] == [
        "interact_c_a", "c_missing", "interact_a_b", "seg_freq", "opened_parts",  # each slice's main idea, worst first
        "interact_c_b", "a_bin", "a_by_seg", "b_by_seg", "ratios_a_b_c"]         # then the further ideas
    by_name = {g.name: g for g in groups}
    assert by_name["interact_c_a"].motivation == "slice c = (missing) (error x2.00, 40 rows), with top driver a"
    assert by_name["a_bin"].motivation.startswith("slice a in [1.2, 3.5]")
    assert by_name["a_bin"].specs == [{"kind": "bin", "name": "a_bin", "column": "a", "edges": [1.2, 3.5]}]
    assert [s["part"] for s in by_name["opened_parts"].specs] == ["year", "month", "dayofweek"]
    assert by_name["opened_parts"].motivation.startswith("date column opened")
    assert by_name["a_by_seg"].specs[1] == {"kind": "difference", "name": "a_vs_seg", "left": "a",
                                            "right": "a_mean_by_seg"}
    specs = [s for g in groups for s in g.specs]
    TypeAdapter(list[FeatureSpec]).validate_python(specs)  # every idea is a valid declarative spec
    assert "leak" not in json.dumps(specs) and "shop_id" not in json.dumps(specs)
    assert len({s["name"] for s in specs}) == len(specs)  # one features step can compute them all
    assert [g.name for g in decide(o, {"interact_c_a": 1, "a_x_b": 1}, limit=3, slices=SLICES)] == [
        "c_missing", "seg_freq", "opened_parts"]  # tried groups and existing columns are left out
