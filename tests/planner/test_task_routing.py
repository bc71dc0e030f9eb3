"""Which task a question asks for: "which species / segment / type" questions are classification (multiclass when
the target has 3+ levels, decided by the training skill from the data), and so is any text target."""
from __future__ import annotations

import pytest

from planner import PlanError
from planner.rules import decide_task
from planner.rules_intent import parse_intent


@pytest.mark.parametrize("prompt", [
    "which species is each flower",
    "Which segment does a customer belong to?",
    "what category of product will they buy next",
    "what type of plan fits each user",
    "what class of customer is this",
    "which kind of ticket is this",
    "train a multiclass model of the product tier",
])
def test_category_questions_lean_to_classification(prompt: str) -> None:
    intent = parse_intent(prompt)
    assert "classification" in (intent.task, intent.leaning)


@pytest.mark.parametrize("prompt", ["how many species are there", "what is the price of a flower"])
def test_quantity_questions_do_not(prompt: str) -> None:
    assert parse_intent(prompt).leaning != "classification"


def test_an_integer_coded_class_follows_the_question() -> None:
    assert decide_task(parse_intent("which species is each flower"), "species", "BIGINT") == "classification"
    assert decide_task(parse_intent("predict species"), "species", "BIGINT") is None  # the data decides


def test_a_text_target_with_many_levels_stays_classification() -> None:
    for prompt in ("predict the city", "which city will they move to", "estimate the city"):
        assert decide_task(parse_intent(prompt), "city", "VARCHAR") == "classification"


def test_a_classifier_on_a_float_column_names_both_kinds_of_target() -> None:
    with pytest.raises(PlanError, match="yes/no or category column"):
        decide_task(parse_intent("classify the price"), "price", "DOUBLE")
