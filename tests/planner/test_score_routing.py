"""Questions about which of today's rows will have the outcome become train-then-score: the rule-based planner appends
a `score` step after the final model that scores every row of the target table the principal may see (governance
applies when it runs), with the feature specs the model was trained on; a request for a model alone does not."""
from __future__ import annotations

from typing import Any

import pytest

from planner import Budget, plan_prompt, validate_plan
from planner.rules_intent import parse_intent

SCORING_QUESTIONS = [
    "which customers will churn next month",
    "Which customers will churn next month? Keep it quick.",
    "who is likely to churn",
    "Who is most likely to cancel?",
    "score today's customers with a churn model",
    "show me which customers are most likely to leave",
    "which customers are at risk of churning",
    "predict which customers will churn in the next 3 months",
    "rank all customers by churn risk",
]

MODEL_ONLY = [
    "Build a churn model and tell me why users are leaving",
    "predict churn",
    "predict which card holders will default",  # a model of who defaults, no period to score for
    "credit score model",
    "which species is each flower",
    "what drives cancellations",
    "predict churn, then score the new customers",  # another table's new rows: `score`, not `score_target`
]


@pytest.mark.parametrize("prompt", SCORING_QUESTIONS)
def test_questions_about_who_will_have_the_outcome_ask_for_scores(prompt: str) -> None:
    assert parse_intent(prompt).score_target


@pytest.mark.parametrize("prompt", MODEL_ONLY)
def test_requests_for_a_model_do_not(prompt: str) -> None:
    assert not parse_intent(prompt).score_target


@pytest.mark.parametrize(("prompt", "model_step"), [
    ("which customers will churn next month", "tune"),
    ("who is likely to churn? quick model", "train"),
])
def test_the_plan_trains_then_scores_the_target_table(prompt: str, model_step: str, catalog: Any,
                                                      score_registry: Any) -> None:
    plan = plan_prompt(prompt, catalog=catalog, registry=score_registry)
    ids = [s.id for s in plan.steps]
    assert ids[-2:] == ["score", "report"] and ids.index(model_step) < ids.index("score")
    score = plan.step("score").inputs
    assert score["model"] == {"$ref": f"{model_step}.model"}  # the final model of the plan
    assert score["sql"] == "SELECT * FROM customers"  # every row, governed as the principal when it runs
    assert score["key"] == "customer_id"
    assert score["specs"] == plan.step("features").inputs["specs"] and score["cutoff"] == "as_of"
    assert plan.metadata["score"] == {"step": "score", "table": "customers"}
    assert validate_plan(plan, score_registry, catalog, Budget()) == []
    assert "ssn" not in plan.model_dump_json()  # denied to the analyst: nowhere in the plan


def test_a_model_request_has_no_score_step(catalog: Any, score_registry: Any) -> None:
    plan = plan_prompt("Build a churn model and tell me why users are leaving", catalog=catalog,
                       registry=score_registry)
    assert "score" not in [s.skill for s in plan.steps] and "score" not in plan.metadata


def test_without_a_scoring_skill_the_plan_says_so(catalog: Any, registry: Any) -> None:
    plan = plan_prompt("which customers will churn next month", catalog=catalog, registry=registry)
    assert "score" not in [s.id for s in plan.steps]
    assert any("no scoring skill" in n and "agentml score" in n for n in plan.metadata["notes"])


def test_the_real_score_skill_is_planned_and_validates(catalog: Any) -> None:
    from skills import load_registry

    real = load_registry()
    plan = plan_prompt("Which customers will churn next month?", catalog=catalog, registry=real)
    assert plan.step("score").skill == "score"
    assert validate_plan(plan, real, catalog, Budget()) == []
    assert not any("no scoring skill" in n for n in plan.metadata["notes"])


def test_scoring_a_table_the_principal_cannot_see_is_a_plan_problem(catalog: Any, score_registry: Any) -> None:
    plan = plan_prompt("which customers will churn next month", catalog=catalog, registry=score_registry)
    hidden = plan.model_copy(deep=True)
    hidden.step("score").inputs["sql"] = "SELECT * FROM hr_secrets"
    problems = validate_plan(hidden, score_registry, catalog, Budget())
    assert [(p.step, p.kind) for p in problems] == [("score", "access")]
