"""Catalog helpers and intent parsing: small pure functions the rule-based planner is built from."""
from __future__ import annotations

from typing import Any

import pytest

from planner.catalog import (
    column_kind,
    cutoff_column,
    entity_key,
    is_event_table,
    is_key_like,
    is_pii_like,
    leakage_columns,
    related_tables,
    singular,
    time_columns,
    words,
)
from planner.roles import name_exclusions
from planner.rules_intent import parse_intent


@pytest.mark.parametrize(("name", "expected"), [
    ("monthly_charges", ("monthly", "charges")), ("MonthlyCharges", ("monthly", "charges")),
    ("customerID", ("customer", "id")), ("as_of", ("as", "of")),
])
def test_words(name: str, expected: tuple[str, ...]) -> None:
    assert words(name) == expected


@pytest.mark.parametrize(("name", "expected"), [
    ("customers", "customer"), ("companies", "company"), ("addresses", "address"), ("billing", "billing"),
    ("status", "status"),
])
def test_singular(name: str, expected: str) -> None:
    assert singular(name) == expected


@pytest.mark.parametrize(("type_", "kind"), [
    ("BIGINT", "integer"), ("DECIMAL(10,2)", "float"), ("TIMESTAMP WITH TIME ZONE", "temporal"), ("DATE", "temporal"),
    ("BOOLEAN", "boolean"), ("VARCHAR", "text"), ("STRUCT(a INT)", "other"),
])
def test_column_kind(type_: str, kind: str) -> None:
    assert column_kind(type_) == kind


def test_keys_times_and_related_tables(catalog: Any) -> None:
    assert entity_key(catalog, "customers") == "customer_id"
    assert entity_key(catalog, "tickets") == "ticket_id"
    assert entity_key(catalog, "billing") == "customer_id"
    assert time_columns(catalog["billing"]) == ["month"]
    assert cutoff_column(catalog["customers"]) == "as_of" and cutoff_column(catalog["billing"]) is None
    assert is_event_table(catalog, "billing") and not is_event_table(catalog, "customers")
    related = related_tables(catalog, "customers", "customer_id")
    # billing is a history; tickets has no time column; new_customers is a copy of customers, not a history
    assert [(r.table, r.key, r.time, r.values) for r in related] == [
        ("billing", "customer_id", "month", ("amount", "late_payment"))]


@pytest.mark.parametrize(("name", "key_like"), [
    ("customer_id", True), ("id", True), ("customerId", True), ("order_key", True), ("paid", False),
    ("valid", False), ("tenure", False),
])
def test_is_key_like(name: str, key_like: bool) -> None:
    assert is_key_like(name) is key_like


def test_leakage() -> None:
    columns = {"churn": "VARCHAR", "churn_reason": "VARCHAR", "cancel_date": "DATE", "tenure": "BIGINT",
               "total_charges": "DOUBLE", "monthly_charges": "DOUBLE", "charges_status": "VARCHAR"}
    assert leakage_columns(columns, "churn", classification=True) == ["churn_reason", "cancel_date"]
    # a regression target shares words with honest inputs: only post-outcome names are leaks
    assert leakage_columns(columns, "total_charges", classification=False) == ["charges_status"]
    cat = {"t": {"id": "BIGINT", "name": "VARCHAR", "snapshot_date": "DATE", **columns}}
    assert [(e.column, e.reason) for e in name_exclusions(cat, "t", "churn", True)] == [
        ("id", "identifier (by name)"), ("name", "PII (by name)"), ("snapshot_date", "time column (DATE)"),
        ("cancel_date", "time column (DATE)"), ("churn_reason", "leakage (by name: it names the outcome)")]


@pytest.mark.parametrize(("prompt", "expected"), [
    ("quick churn model", {"tune": False}),
    ("tune with 20 trials, quick", {"tune": True, "num_trials": 20}),
    ("a classifier for churn", {"task": "classification"}),
    ("how much will they spend", {"leaning": "regression"}),
    ("probability of churn", {"leaning": "classification"}),
    ("rolling 30-day average spend", {"window_days": 30, "features": frozenset({"window"})}),
    ("lag 2 of billing amount", {"lag_periods": 2, "features": frozenset({"lag"})}),
    ("over the last 2 weeks", {"window_days": 14}),
    ("within 3 minutes", {"time_budget_s": 180.0}),
    ("5-fold cv, top 7 drivers", {"folds": 5, "top_k": 7}),
    ("compare against a baseline", {"baseline": True}),
    ("just a baseline", {"baseline": False, "tune": False}),
    ("score the new customers", {"score": True}),
    ("credit score model", {"score": False}),
    ("as of 2024-03-01", {"cutoff": "2024-03-01"}),
    ("no feature engineering", {"features": frozenset({"none"})}),
])
def test_parse_intent(prompt: str, expected: dict[str, Any]) -> None:
    intent = parse_intent(prompt)
    assert {k: getattr(intent, k) for k in expected} == expected


@pytest.mark.parametrize(("name", "pii"), [
    ("name", True), ("customer_name", True), ("email", True), ("phone_number", True), ("ssn", True),
    ("phone_service", False), ("email_opt_in", False), ("tenure", False),
])
def test_is_pii_like(name: str, pii: bool) -> None:
    assert is_pii_like(name) is pii
