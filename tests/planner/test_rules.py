"""The rule-based planner on varied prompts, against a real governed catalog (the analyst's view)."""
from __future__ import annotations

import json
from typing import Any

import pytest

from planner import Budget, PlanError, plan_prompt, validate_plan
from skills.plan import Plan

TRAINING_SHAPE = ["query", "features", "tune", "evaluate", "explain", "residuals", "report"]

# (prompt, target, task, model step). task None: an integer column nothing hints at, left to the data.
TARGETS = [
    ("Build a churn model and tell me why users are leaving", "churn", "classification", "tune"),
    ("why are users leaving", "churn", "classification", "tune"),
    ("Why are our customers leaving?", "churn", "classification", "tune"),
    ("predict churn", "churn", "classification", "tune"),
    ("Predict CHURN!!!", "churn", "classification", "tune"),
    ("predict chrun", "churn", "classification", "tune"),
    ("predict customer atrition", "churn", "classification", "tune"),
    ("which customers will cancel?", "churn", "classification", "tune"),
    ("what drives cancellations", "churn", "classification", "tune"),
    ("I want to understand what makes people quit", "churn", "classification", "tune"),
    ("model retention", "churn", "classification", "tune"),
    ("predict attrition quickly", "churn", "classification", "train"),
    ("Predict customer churn, quick and rough", "churn", "classification", "train"),
    ("predict total charges", "total_charges", "regression", "tune"),
    ("predict the total_charges of a customer", "total_charges", "regression", "tune"),
    ("predict totl charges", "total_charges", "regression", "tune"),
    ("what drives monthly charges", "monthly_charges", "regression", "tune"),
    ("regression on monthly_charges", "monthly_charges", "regression", "tune"),
    ("Forecast the monthly charges", "monthly_charges", "regression", "tune"),
    ("how long do customers stay", "tenure", None, "tune"),
    ("predict tenure with a regression", "tenure", "regression", "tune"),
    ("Predict whether a customer is a senior citizen", "senior_citizen", "classification", "tune"),
    ("predict the contract type", "contract", "classification", "tune"),
    ("predict the probability of a late payment", "late_payment", "classification", "tune"),
    ("predict ticket severity", "severity", None, "tune"),
    ("classify customers by churn quickly", "churn", "classification", "train"),
]


def _plan(prompt: str, catalog: Any, registry: Any, **kw: Any) -> Plan:
    return plan_prompt(prompt, catalog=catalog, registry=registry, **kw)


def _step_ids(plan: Plan) -> list[str]:
    return [s.id for s in plan.steps]


def _specs(plan: Plan) -> list[dict[str, Any]]:
    return plan.step("features").inputs["specs"] if "features" in _step_ids(plan) else []


@pytest.mark.parametrize(("prompt", "target", "task", "model_step"), TARGETS)
def test_finds_target_and_task(prompt: str, target: str, task: str | None, model_step: str, catalog: Any,
                               registry: Any) -> None:
    plan = _plan(prompt, catalog, registry)
    assert plan.metadata["target"] == target
    assert plan.metadata["task"] == task
    assert plan.metadata["model_step"] == model_step
    model = plan.step(model_step)
    assert model.inputs["target"] == target and model.inputs.get("task") == task
    assert validate_plan(plan, registry, catalog, Budget()) == []
    assert "ssn" not in plan.model_dump_json() and "hr_secrets" not in plan.model_dump_json()


def test_churn_plan_shape_keys_and_exclusions(catalog: Any, registry: Any) -> None:
    plan = _plan("Build a churn model and tell me why users are leaving", catalog, registry)
    assert _step_ids(plan) == TRAINING_SHAPE
    meta = plan.metadata
    assert (meta["table"], meta["key"], meta["cutoff"], meta["time"]) == ("customers", "customer_id", "as_of", "as_of")
    assert [r["table"] for r in meta["related"]] == ["billing"]
    query = plan.step("query").inputs
    assert query["sql"].startswith("SELECT * FROM customers") and query["key"] == "customer_id"
    exclude = set(plan.step("tune").inputs["exclude"])
    # keys, the cutoff, free-text identifiers and the outcome's own record are not features
    assert {"customer_id", "as_of", "name", "email", "churn_reason"} <= exclude
    assert not exclude & {"tenure", "contract", "monthly_charges", "total_charges", "churn"}
    assert plan.step("features").inputs["base_sql"] == {"$ref": "query.sql"}
    assert plan.step("tune").inputs["table"] == {"$ref": "features.table"}
    assert plan.step("evaluate").inputs == {"model": {"$ref": "tune.model"}, "table": {"$ref": "features.table"}}
    report = plan.step("report").inputs
    assert report["drivers"] == {"$ref": "explain.drivers"} and report["trials"] == {"$ref": "tune.trials"}
    assert report["metric_value"] == {"$ref": "evaluate.metric_value"}
    assert report["title"] == "Churn classification model"


def test_history_features_from_related_table(catalog: Any, registry: Any) -> None:
    plan = _plan("predict churn", catalog, registry)
    specs = _specs(plan)
    assert {s["table"] for s in specs} == {"billing"}
    assert {(s["kind"], s.get("column")) for s in specs} >= {("window", "amount"), ("lag", "amount"),
                                                               ("trend", "amount"), ("window", "customer_id")}
    assert all(s["key"] == "customer_id" and s["time"] == "month" for s in specs)
    assert plan.step("features").inputs["cutoff"] == "as_of"
    assert len({s["name"] for s in specs}) == len(specs)


def test_no_features_without_a_history_table(catalog: Any, registry: Any) -> None:
    plan = _plan("predict ticket severity", catalog, registry)
    assert "features" not in _step_ids(plan)
    assert plan.step("tune").inputs["table"] == {"$ref": "query.table"}
    assert plan.metadata["key"] == "ticket_id"


@pytest.mark.parametrize(("prompt", "kinds", "days", "periods"), [
    ("estimate total charges using billing history with a rolling 30 day average", {"window"}, 30, None),
    ("predict churn with lag 3 features from billing", {"lag"}, None, 3),
    ("predict churn and add the amount trend over the last 6 months", {"trend", "window"}, 180, None),
])
def test_feature_wishes(prompt: str, kinds: set[str], days: int | None, periods: int | None, catalog: Any,
                        registry: Any) -> None:
    specs = _specs(_plan(prompt, catalog, registry))
    assert {s["kind"] for s in specs} == kinds
    assert {s["window_days"] for s in specs if "window_days" in s} == ({days} if days else set())
    assert {s["periods"] for s in specs if s["kind"] == "lag"} == ({periods} if periods else set())


def test_named_column_of_related_table_is_preferred(catalog: Any, registry: Any) -> None:
    specs = _specs(_plan("predict churn from the rolling 90 day average amount in billing", catalog, registry))
    assert {s["column"] for s in specs if s["agg"] != "count"} == {"amount"}


def test_no_features_when_asked(catalog: Any, registry: Any) -> None:
    plan = _plan("predict churn without features", catalog, registry)
    assert _step_ids(plan) == [s for s in TRAINING_SHAPE if s != "features"]


@pytest.mark.parametrize(("prompt", "kind", "name"), [
    ("predict churn, and add the ratio of total charges to monthly charges", "ratio",
     "total_charges_per_monthly_charges"),
    ("predict churn with a difference feature", "difference", "total_charges_minus_monthly_charges"),
])
def test_arithmetic_features(prompt: str, kind: str, name: str, catalog: Any, registry: Any) -> None:
    specs = [s for s in _specs(_plan(prompt, catalog, registry)) if s["kind"] == kind]
    assert specs == [{"kind": kind, "name": name, "left": "total_charges", "right": "monthly_charges"}]


def test_arithmetic_never_uses_the_target(catalog: Any, registry: Any) -> None:
    specs = _specs(_plan("predict total charges with a ratio feature", catalog, registry))
    assert all("total_charges" not in (s.get("left"), s.get("right")) for s in specs)


@pytest.mark.parametrize(("prompt", "inputs"), [
    ("tune a churn classifier with 20 trials", {"num_trials": 20, "max_rounds": 1000}),  # a cap: tune fits the rows
    ("churn model with 5 trials of 50 rounds", {"num_trials": 5, "max_rounds": 50}),
    ("thorough churn model", {"num_trials": 32}),
    ("predict churn in under 2 minutes with random search and no early stopping",
     {"time_budget_s": 120.0, "search": "random", "scheduler": "fifo"}),
    ("predict churn with twelve trials using hyperopt and ASHA", {"num_trials": 12, "search": "hyperopt",
                                                                  "scheduler": "asha"}),
])
def test_tuning_wishes(prompt: str, inputs: dict[str, Any], catalog: Any, registry: Any) -> None:
    tune = _plan(prompt, catalog, registry).step("tune").inputs
    assert {k: tune.get(k) for k in inputs} == inputs


def test_quick_trains_once(catalog: Any, registry: Any) -> None:
    plan = _plan("quick churn model with 80 rounds", catalog, registry)
    assert "tune" not in _step_ids(plan)
    assert plan.step("train").inputs["num_rounds"] == 80
    assert "trials" not in plan.step("report").inputs


def test_evaluation_and_explanation_wishes(catalog: Any, registry: Any) -> None:
    plan = _plan("top 5 drivers of churn with 3-fold cross validation", catalog, registry)
    assert plan.step("explain").inputs["top_k"] == 5
    assert plan.step("evaluate").inputs["folds"] == 3


def test_budget_caps_trials_and_rounds(catalog: Any, registry: Any) -> None:
    plan = _plan("tune a churn model with 20 trials", catalog, registry,
                 budget=Budget(max_trials=5, max_boosting_rounds=500))
    tune = plan.step("tune").inputs
    assert (tune["num_trials"], tune["max_rounds"]) == (5, 100)
    assert any("20 to 5" in n for n in plan.metadata["notes"])
    assert any("1000 to 100" in n for n in plan.metadata["notes"])


def test_baseline_is_counted_in_the_budget(catalog: Any, registry: Any) -> None:
    plan = _plan("predict churn and compare to a baseline", catalog, registry, budget=Budget(max_boosting_rounds=1300))
    ids = _step_ids(plan)
    assert ids.index("baseline") < ids.index("baseline_evaluate") < ids.index("tune")
    assert plan.step("baseline").inputs["table"] == {"$ref": "query.table"}  # plain columns, no new features
    baseline = plan.step("baseline").inputs["num_rounds"]
    tune = plan.step("tune").inputs
    assert baseline + tune["num_trials"] * tune["max_rounds"] <= 1300


def test_score_new_rows_without_a_scoring_skill(catalog: Any, registry: Any) -> None:
    plan = _plan("predict churn, then score the new customers", catalog, registry)
    assert plan.step("score_query").inputs["sql"] == "SELECT * FROM new_customers"
    assert "score" not in _step_ids(plan) and "score" not in plan.metadata
    assert any("no scoring skill" in n for n in plan.metadata["notes"])


def test_score_new_rows_with_a_scoring_skill(catalog: Any, score_registry: Any) -> None:
    plan = _plan("predict churn, then score the new customers", catalog, score_registry)
    inputs = plan.step("score").inputs
    assert (inputs["model"], inputs["sql"], inputs["key"]) == ({"$ref": "tune.model"}, "SELECT * FROM new_customers",
                                                               "customer_id")
    assert inputs["specs"] == plan.step("features").inputs["specs"]  # the model's features, computed over the rows
    assert plan.metadata["score"] == {"step": "score", "table": "new_customers"}


@pytest.mark.parametrize(("target", "column", "table"), [
    ("total_charges", "total_charges", "customers"),
    ("customers.tenure", "tenure", "customers"),
    ("TENURE", "tenure", "customers"),
    ("billing.amount", "amount", "billing"),
])
def test_target_override(target: str, column: str, table: str, catalog: Any, registry: Any) -> None:
    plan = _plan("predict revenue", catalog, registry, target=target)
    assert (plan.metadata["target"], plan.metadata["table"]) == (column, table)


# ---------------------------------------------------------------------------------------------------------------------
# When the prompt does not say enough: a precise question, never a guess

QUESTION = "Which column is the target: monthly_charges or total_charges? Re-run with --target COL."


@pytest.mark.parametrize("prompt", ["predict revenue", "forecast spend", "predict charges",
                                    "what drives the charges"])
def test_ambiguous_target_asks(prompt: str, catalog: Any, registry: Any) -> None:
    with pytest.raises(PlanError) as err:
        _plan(prompt, catalog, registry)
    assert f"{err.value.text()} {err.value.cli_hint}" == QUESTION  # the terminal's wording
    assert err.value.candidates == ["monthly_charges", "total_charges"]
    # the API's: the candidates once (as a list), and no CLI flag
    assert (err.value.message, err.value.hint) == ("Which column is the target?",
                                                   "pick one of the candidates as the target")


@pytest.mark.parametrize("prompt", ["build a model", "predict ssn", "predict the weather"])
def test_no_target_asks_with_yes_no_candidates(prompt: str, catalog: Any, registry: Any) -> None:
    with pytest.raises(PlanError) as err:
        _plan(prompt, catalog, registry)
    assert err.value.text() == "Which column should the model predict? Candidates: senior_citizen or churn?"
    assert err.value.candidates == ["senior_citizen", "churn"]
    assert "ssn" not in err.value.text() + err.value.message + str(err.value.hint)


@pytest.mark.parametrize(("target", "hint"), [
    ("ssn", "run `agentml plan` with --json to list the columns you may use"),
    ("tenur", "did you mean tenure?"),
    ("hr_secrets.salary", "run `agentml plan` with --json to list the columns you may use"),
])
def test_unknown_or_hidden_target(target: str, hint: str, catalog: Any, registry: Any) -> None:
    with pytest.raises(PlanError) as err:
        _plan("predict something", catalog, registry, target=target)
    assert err.value.message == f"column {target!r} is not in your catalog (it does not exist or you may not see it)"
    assert err.value.hint == hint


@pytest.mark.parametrize(("prompt", "message"), [
    ("regress churn", "churn is a VARCHAR column; a regression needs a numeric target"),
    ("classify monthly charges", "monthly_charges is a DOUBLE column; a classifier needs a yes/no or category column"),
])
def test_task_that_cannot_fit_the_column(prompt: str, message: str, catalog: Any, registry: Any) -> None:
    with pytest.raises(PlanError, match=message):
        _plan(prompt, catalog, registry)


def test_admin_sees_more_and_plans_with_it(engine: Any, admin: Any, registry: Any) -> None:
    plan = plan_prompt("predict salary", engine=engine, principal=admin, registry=registry)
    assert (plan.metadata["table"], plan.metadata["target"]) == ("hr_secrets", "salary")


def test_analyst_cannot_target_what_only_admin_sees(engine: Any, analyst: Any, registry: Any) -> None:
    with pytest.raises(PlanError) as err:
        plan_prompt("predict salary", engine=engine, principal=analyst, registry=registry)
    assert "salary" not in err.value.message and "hr_secrets" not in err.value.message


def test_plans_are_deterministic_and_json_round_trip(catalog: Any, registry: Any) -> None:
    first = _plan("Build a churn model and tell me why users are leaving", catalog, registry)
    second = _plan("Build a churn model and tell me why users are leaving", catalog, registry)
    assert first.model_dump() == second.model_dump()
    again = Plan.model_validate(json.loads(first.model_dump_json()))
    assert validate_plan(again, registry, catalog) == []


@pytest.mark.parametrize(("prompt", "budget"), [
    ("Build a churn model and tell me why users are leaving", Budget()),
    ("predict total charges quickly and compare to a baseline", Budget()),
    ("predict churn with lag 2 and a ratio feature, 4 trials", Budget()),
    ("tune a churn model with 20 trials and compare to a baseline", Budget(max_trials=5, max_boosting_rounds=700)),
    ("why are users leaving, then score the new customers, top 5 drivers", Budget()),
])
def test_plans_validate_against_the_real_skill_library(prompt: str, budget: Budget, catalog: Any) -> None:
    from skills import load_registry

    real = load_registry()
    plan = plan_prompt(prompt, catalog=catalog, registry=real, budget=budget)
    assert validate_plan(plan, real, catalog, budget) == []
