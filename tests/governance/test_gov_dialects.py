"""enforce() in other dialects: the output is valid SQL of that dialect, with the same rules and the dialect's
identifier case rules (expected outputs live in fixtures/rewrite_dialects.sql)."""
from __future__ import annotations

import pytest
import sqlglot
from gov_testdata import PRINCIPALS
from sqlglot import exp

from governance import Policies, PolicyViolation, enforce
from governance.enforce import DIALECTS

ANN = PRINCIPALS["analyst_eu"]
QUERY = "SELECT c.region, COUNT(*) AS n FROM customers AS c JOIN billing AS b ON b.customer_id = c.id GROUP BY 1"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_output_parses_back_and_is_governed(dialect: str, gov_policies: Policies, gov_schema: dict) -> None:
    out = sqlglot.parse_one(enforce(QUERY, ANN, gov_policies, gov_schema, dialect), read=dialect)
    inner_tables = {t.name.lower() for t in out.find_all(exp.Table)}
    assert inner_tables == {"customers", "billing"}
    assert all(isinstance(t.parent, exp.From) for t in out.find_all(exp.Table))  # only inside governed subqueries
    assert "ssn" not in {c.name.lower() for c in out.find_all(exp.Column)}
    assert "card" not in {c.name.lower() for c in out.find_all(exp.Column)}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("sql", "kind"), [
    ("SELECT ssn FROM customers", "column"), ("SELECT * FROM secrets", "table"),
    ("DELETE FROM customers", "statement"), ("WITH customers AS (SELECT 1 AS x) SELECT x FROM customers", "shadowing"),
])
def test_violations_in_every_dialect(dialect: str, sql: str, kind: str, gov_policies: Policies,
                                     gov_schema: dict) -> None:
    with pytest.raises(PolicyViolation) as raised:
        enforce(sql, ANN, gov_policies, gov_schema, dialect)
    assert raised.value.kind == kind


@pytest.mark.parametrize(("dialect", "sql", "visible"), [
    ("postgres", "SELECT id FROM Customers", True),      # unquoted: folded to lower case
    ("postgres", 'SELECT id FROM "Customers"', False),   # quoted: exact, another table
    ("postgres", 'SELECT "SSN" FROM customers', False),  # quoted "SSN" is not ssn: missing, refused like ssn
    ("snowflake", "SELECT id FROM CUSTOMERS", True),
    ("snowflake", 'SELECT id FROM "CUSTOMERS"', True),
    ("snowflake", 'SELECT id FROM "customers"', False),
    ("duckdb", 'SELECT id FROM "CUSTOMERS"', True),       # DuckDB: quoted names are case-insensitive too
    # BigQuery (sqlglot >= 30.31: CASE_INSENSITIVE_EXCEPT_TABLES): table names are exact, columns fold.
    ("bigquery", "SELECT id FROM `customers`", True),
    ("bigquery", "SELECT id FROM `Customers`", False),
    ("bigquery", "SELECT ID FROM customers", True),
])
def test_dialect_case_rules(dialect: str, sql: str, visible: bool, gov_policies: Policies, gov_schema: dict) -> None:
    if visible:
        assert enforce(sql, ANN, gov_policies, gov_schema, dialect)
    else:
        with pytest.raises(PolicyViolation, match="does not exist or is not visible"):
            enforce(sql, ANN, gov_policies, gov_schema, dialect)


def test_bigquery_columns_fold_case_so_a_denied_column_stays_denied(gov_policies: Policies,
                                                                     gov_schema: dict) -> None:
    with pytest.raises(PolicyViolation) as raised:
        enforce("SELECT `SSN` FROM customers", ANN, gov_policies, gov_schema, "bigquery")
    assert raised.value.kind == "column"


def test_unknown_case_rule_fails_closed(monkeypatch: pytest.MonkeyPatch, gov_policies: Policies,
                                        gov_schema: dict) -> None:
    """A case rule governance does not model (as sqlglot 30.31 added one) is a refusal naming it, never a guess."""
    import enum

    from governance import schema as schema_module
    novel = enum.Enum("NormalizationStrategy", {"SOMETHING_NEW": 1}).SOMETHING_NEW
    monkeypatch.setattr(sqlglot.Dialect.get_or_raise("postgres").__class__, "NORMALIZATION_STRATEGY", novel)
    with pytest.raises(PolicyViolation, match="unknown identifier case rule 'SOMETHING_NEW'") as raised:
        enforce("SELECT id FROM customers", ANN, gov_policies, gov_schema, "postgres")
    assert raised.value.kind == "dialect"
    assert schema_module.KNOWN_STRATEGIES


def test_unknown_dialect(gov_policies: Policies, gov_schema: dict) -> None:
    with pytest.raises(PolicyViolation, match="unsupported dialect"):
        enforce("SELECT 1", ANN, gov_policies, gov_schema, "oracle")


def test_explicit_catalog_and_schema(gov_policies: Policies, gov_schema: dict) -> None:
    out = enforce("SELECT id FROM customers", ANN, gov_policies, gov_schema, "snowflake", catalog="prod", db="sales")
    assert 'FROM "PROD"."SALES"."CUSTOMERS" AS "CUSTOMERS"' in out
    assert enforce("SELECT id FROM sales.customers", ANN, gov_policies, gov_schema, "snowflake", db="sales")
    with pytest.raises(PolicyViolation):
        enforce("SELECT id FROM other.customers", ANN, gov_policies, gov_schema, "snowflake", db="sales")
