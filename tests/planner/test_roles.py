"""Column roles from the data, not from names: a governed profile of the target's table decides which columns are
left out of training and why; --include / --exclude override; the question decides the positive class.

Every table here is generated (seeded) and read through a real governed DuckDB engine."""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from pydantic import create_model

from governance import Engine, Policies, Principal, policies_from_dict
from planner import PlanError, plan_prompt, preview
from planner.leakage import single_column_score
from planner.positive import positive_class
from planner.rules_columns import NAMES_ONLY
from skills.registry import Registry

N = 1000
USER = Principal(user="u", roles=["local"])


def _employees(n: int = N, seed: int = 7) -> pa.Table:
    """Attrition depends on overtime, income and age; the traps are named innocently or alarmingly."""
    rng = np.random.default_rng(seed)
    overtime = rng.random(n) < 0.3
    income = rng.normal(5000, 1500, n).round(2)
    age = rng.integers(20, 60, n)
    logit = -2.0 + 1.6 * overtime - 0.0004 * (income - 5000) - 0.03 * (age - 40)
    quit_ = rng.random(n) < 1 / (1 + np.exp(-logit))
    noise = rng.random(n) < 0.01
    start = dt.date(2015, 1, 1)
    return pa.table({
        "score": pa.array(rng.permutation(np.arange(1000, 1000 + n)), pa.int64()),  # an id named like a feature
        "member_code": [f"M{i:06d}" for i in rng.permutation(n)],                  # unique text
        "OverTime": np.where(overtime, "Yes", "No"),                                # Yes/No named like a time
        "Time_flag": np.where(rng.random(n) < 0.5, "Y", "N"),
        "total_day_calls": pa.array(rng.integers(50, 150, n), pa.int64()),
        "monthly_income": income, "age": pa.array(age, pa.int64()),
        "status_code": np.where(quit_ ^ noise, "S2", "S1"),                           # the outcome, 1% noise
        "hired_on": [(start + dt.timedelta(days=int(d))).isoformat() for d in rng.integers(0, 3000, n)],
        "Attrition": np.where(quit_, "Yes", "No"),
    })


def _loans(n: int = N, seed: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, n)
    bad = rng.random(n) < 1 / (1 + np.exp(-(-1.6 - 0.05 * (income - 50))))
    return pa.table({"loan_id": pa.array(np.arange(n), pa.int64()), "income": income,
                     "purpose": rng.choice(["car", "home", "study"], n), "Status": np.where(bad, "bad", "good")})


def _engine(tables: dict[str, pa.Table], audit: Any = None) -> Engine:
    engine = Engine(Policies(), audit=audit, threads=1)
    for name, table in tables.items():
        engine.register(name, table)
    engine.policies = Policies.allow_all(engine.tables, roles=["local"])
    return engine


@pytest.fixture(scope="module")
def hr() -> Engine:
    return _engine({"employees": _employees()})


def _excluded(plan: Any) -> dict[str, str]:
    return {e["column"]: e["reason"] for e in plan.metadata["excluded"]}


def _plan(engine: Engine, registry: Registry, prompt: str = "Why do employees quit? predict Attrition",
          **kwargs: Any) -> Any:
    return plan_prompt(prompt, registry=registry, engine=engine, principal=USER, **kwargs)


def test_roles_come_from_the_data_not_the_names(hr: Engine, registry: Registry) -> None:
    plan = _plan(hr, registry)
    excluded = _excluded(plan)
    assert plan.metadata["target"] == "Attrition"
    # a Yes/No column and a count named like time words stay; so do the real features
    assert not excluded.keys() & {"OverTime", "Time_flag", "total_day_calls", "monthly_income", "age"}
    assert excluded["score"] == f"identifier: {N} distinct of {N} rows"
    assert excluded["member_code"] == f"identifier: {N} distinct of {N} rows"
    assert excluded["status_code"].startswith("leakage: alone it predicts Attrition with AUC 0.9")
    assert excluded["hired_on"].startswith("time column: 100% of its text values are dates")
    assert set(plan.step("tune").inputs["exclude"]) == set(excluded) == set(plan.metadata["exclude"])
    assert NAMES_ONLY not in plan.metadata["notes"]


def test_without_an_engine_the_name_rules_apply_and_say_so(hr: Engine, registry: Registry) -> None:
    plan = plan_prompt("Why do employees quit? predict Attrition", registry=registry, catalog=hr.catalog(USER))
    assert NAMES_ONLY in plan.metadata["notes"]
    assert _excluded(plan)["OverTime"] == "time column (by name)"  # what the data-driven roles fix


def test_the_profile_is_two_governed_audited_queries(registry: Registry, tmp_path: Any) -> None:
    engine = _engine({"employees": _employees()}, audit=tmp_path / "audit.jsonl")
    _plan(engine, registry)
    reads = [r for r in engine.audit.records(limit=None) if r.verdict == "allowed" and "employees" in r.sql]
    assert len(reads) == 2 and "COUNT(DISTINCT" in reads[0].sql and reads[1].rows == N


def test_a_masked_column_is_pii_and_a_denied_one_is_never_seen(registry: Registry) -> None:
    table = _employees().append_column("email", pa.array([f"p{i}@corp.org" for i in range(N)]))
    policies = policies_from_dict({"roles": ["local"], "tables": {"employees": {
        "allow": ["local"], "mask_columns": {"member_code": {"roles": ["local"], "using": "'***'"}},
        "deny_columns": {"age": ["local"]}}}})
    engine = Engine(policies, threads=1)
    engine.register("employees", table)
    plan = _plan(engine, registry)
    excluded = _excluded(plan)
    assert excluded["member_code"] == "PII: masked for you by the column policies"
    assert excluded["email"] == "PII: 100% of values look like email addresses"
    assert "age" not in engine.catalog(USER)["employees"] and '"age"' not in plan.model_dump_json()


def test_a_big_table_is_profiled_on_a_governed_sample(registry: Registry) -> None:
    engine = _engine({"employees": _employees(n=30_000, seed=11)})
    excluded = _excluded(_plan(engine, registry))
    assert excluded["score"] == "identifier: 30000 distinct of 30000 rows"  # counted on every row, in the warehouse
    assert excluded["status_code"].startswith("leakage") and "sample of 1" in excluded["status_code"]  # ~15k sampled


def test_include_brings_a_column_back_and_exclude_leaves_one_out(hr: Engine, registry: Registry) -> None:
    plan = _plan(hr, registry, include=["status_code"], exclude=["AGE"])
    excluded = _excluded(plan)
    assert "status_code" not in excluded
    assert excluded["age"] == "you asked to leave it out (--exclude)"
    assert "age" in plan.step("tune").inputs["exclude"] and "status_code" not in plan.step("tune").inputs["exclude"]
    text = preview(plan, registry).text()
    assert "Columns left out" in text and "age: you asked to leave it out" in text


@pytest.mark.parametrize(("include", "exclude", "message", "candidates"), [
    (["overtme"], [], "--include overtme: no such column", ["OverTime"]),
    ([], ["monthly_incme"], "--exclude monthly_incme: no such column", ["monthly_income"]),
    ([], ["Attrition"], "that is the target column", ["Attrition"]),
    (["age"], ["age"], "both included and excluded", ["age"]),
])
def test_bad_column_choices_are_clear_errors(include: list[str], exclude: list[str], message: str,
                                             candidates: list[str], hr: Engine, registry: Registry) -> None:
    with pytest.raises(PlanError) as err:
        _plan(hr, registry, include=include, exclude=exclude)
    assert message in err.value.message and err.value.candidates == candidates and err.value.hint


def _registry_with_positive(new_standin_registry: Any) -> Registry:
    """The stand-in registry whose `tune` takes the shared `positive` input, as the library's does."""
    reg, base = Registry(), new_standin_registry()
    for spec in base:
        if spec.name == "tune":
            positive_in = create_model("TunePositive", __base__=spec.input_model, positive=(str | None, None))
            spec = dataclasses.replace(spec, input_model=positive_in)
        reg.add(spec)
    return reg


def test_the_question_decides_the_positive_class(registry: Registry, new_standin_registry: Any) -> None:
    engine = _engine({"loans": _loans()})
    plan = plan_prompt("predict whether a loan Status is bad", registry=registry, engine=engine, principal=USER)
    assert plan.metadata["positive"] == "bad"  # `good` is the majority and the training skills' default
    assert "Positive class: bad" in preview(plan, registry).text()
    assert "positive" not in plan.step("tune").inputs  # this registry's tune does not take it
    with_positive = _registry_with_positive(new_standin_registry)
    plan = plan_prompt("predict whether a loan Status is bad", registry=with_positive, engine=engine,
                       principal=USER)
    assert plan.step("tune").inputs["positive"] == "bad"
    plain = plan_prompt("predict loan Status", registry=registry, engine=engine, principal=USER)
    assert plain.metadata["positive"] == "good"  # nothing in the question: the skills' default (the last level)


@pytest.mark.parametrize(("prompt", "levels", "positive"), [
    ("predict whether a loan Status is bad", ["good", "bad"], "bad"),
    ("predict whether the loan will be good or bad", ["bad", "good"], "good"),  # the level after "be"
    ("is the loan good or bad? predict status", ["good", "bad"], "good"),  # undecided: the default
    ("which employees will quit", ["Stayed", "Left"], "left"),
    ("which customers leave the bank", ["Existing Customer", "Attrited Customer"], "attrited customer"),
    ("predict which applications get denied", ["Approved", "Denied"], "denied"),
    ("will they churn", ["No", "Yes"], "yes"),  # yes/no levels: the default
    ("predict the outcome", ["b", "a"], "b"),
    ("predict species", ["setosa", "virginica", "versicolor"], None),  # not binary: no positive class
])
def test_positive_class_from_words(prompt: str, levels: list[str], positive: str | None) -> None:
    found = positive_class(prompt, levels)
    assert (found.level if found else None) == positive


def test_single_column_scores() -> None:
    rng = np.random.default_rng(0)
    y = pa.chunked_array([np.where(rng.random(2000) < 0.3, "yes", "no")])
    yes = np.asarray(y.to_pylist()) == "yes"
    ids = pa.chunked_array([[f"id{i}" for i in range(2000)]])
    copy = pa.chunked_array([np.where(yes, 1.0, 0.0) + rng.normal(0, 0.01, 2000)])
    weak = pa.chunked_array([np.where(yes, 1.0, 0.0) + rng.normal(0, 1.5, 2000)])
    assert single_column_score(ids, y, True) < 0.6  # learnt out of fold: a unique id predicts nothing
    assert single_column_score(copy, y, True) > 0.99
    assert 0.6 < single_column_score(weak, y, True) < 0.9
    amount = rng.normal(0, 1, 2000)
    assert single_column_score(pa.chunked_array([amount * 3 + 1]), pa.chunked_array([amount]), False) > 0.99
    assert single_column_score(ids.slice(0, 20), y.slice(0, 20), True) is None  # too few rows to tell


def test_a_time_column_later_than_the_cutoff_is_said_to_be_after_the_outcome(registry: Registry) -> None:
    rng = np.random.default_rng(5)
    n = 400
    as_of = [dt.date(2024, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 60, n)]
    churned = rng.random(n) < 0.3
    table = pa.table({
        "account": pa.array(rng.integers(0, 50, n), pa.int64()), "as_of": pa.array(as_of, pa.date32()),
        "spend": rng.normal(100, 30, n),
        "last_login": [(d - dt.timedelta(days=int(k))).isoformat()
                       for d, k in zip(as_of, rng.integers(1, 90, n), strict=True)],
        "closed_on": pa.array([d + dt.timedelta(days=int(k)) if c else None
                               for d, c, k in zip(as_of, churned, rng.integers(1, 30, n), strict=True)], pa.date32()),
        "churned": np.where(churned, "yes", "no")})
    excluded = _excluded(plan_prompt("predict churned", registry=registry, engine=_engine({"accounts": table}),
                                     principal=USER))
    assert excluded["closed_on"] == "after the outcome: 100% of its values are later than the cutoff as_of (leakage)"
    assert excluded["last_login"] == "time column: 100% of its text values are dates"
    assert excluded["as_of"] == "time column (DATE)"
    assert not excluded.keys() & {"account", "spend"}
