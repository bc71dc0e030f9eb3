"""Cloud warehouses without accounts: queries are DuckDB SQL, the governed SQL is printed in the warehouse's dialect
(Snowflake, BigQuery, Databricks). Pure sqlglot, no network: the output parses back in that dialect and keeps the
row filter and the mask; what does not transpile is refused; case rules still fail closed."""
from __future__ import annotations

import pytest
import sqlglot
from gov_testdata import PRINCIPALS
from sqlglot import exp

from governance import Policies, PolicyViolation, enforce, policies_from_dict

ANN = PRINCIPALS["analyst_eu"]
CLOUDS = ("snowflake", "bigquery", "databricks")
QUERIES = [
    "SELECT region, count(*) AS n FROM customers GROUP BY region",
    "SELECT id, phone FROM customers WHERE phone LIKE 'XXX-%'",
    "SELECT c.id, sum(b.amount) AS total FROM customers AS c JOIN billing AS b ON b.customer_id = c.id GROUP BY 1",
    "SELECT c.id, lag(b.amount) OVER (PARTITION BY c.id ORDER BY b.month) AS prev, "
    "avg(b.amount) OVER (PARTITION BY c.id) AS mean FROM customers AS c JOIN billing AS b ON b.customer_id = c.id",
]


@pytest.mark.parametrize("write", CLOUDS)
@pytest.mark.parametrize("sql", QUERIES)
def test_governed_sql_parses_back_and_keeps_filter_and_mask(write: str, sql: str, gov_policies: Policies,
                                                            gov_schema: dict) -> None:
    out = enforce(sql, ANN, gov_policies, gov_schema, "duckdb", write=write, db="main")
    tree = sqlglot.parse_one(out, read=write)
    wrappers = [t for t in tree.find_all(exp.Table)]
    assert wrappers and all(isinstance(t.parent, exp.From) for t in wrappers)  # only inside governed subqueries
    for table in wrappers:
        where = table.find_ancestor(exp.Select).args.get("where")
        if table.name == "customers":
            assert "'EU'" in where.sql(write)  # ann's row filter, bound as a literal
            assert "XXX-" in table.find_ancestor(exp.Select).sql(write)  # the phone mask, before predicates
        else:
            assert "2024-01-01" in where.sql(write)
    assert not {"ssn", "card"} & {c.name.lower() for c in tree.find_all(exp.Column)}


@pytest.mark.parametrize("write", CLOUDS)
def test_hash_masks_transpile(write: str, gov_schema: dict) -> None:
    policies = policies_from_dict({"tables": {"customers": {"allow": ["analyst"], "mask_columns": {
        "email": {"roles": ["analyst"], "using": "sha256(email)"}}}}})
    out = enforce("SELECT email FROM customers", ANN, policies, gov_schema, "duckdb", write=write)
    assert "SHA" in out.upper() and sqlglot.parse_one(out, read=write)


@pytest.mark.parametrize("write", CLOUDS)
@pytest.mark.parametrize(("sql", "kind"), [
    ("SELECT ssn FROM customers", "column"), ("SELECT * FROM secrets", "table"),
    ('SELECT "SSN" FROM customers', "column"),  # queries resolve names like DuckDB: without case
    ('SELECT id FROM "CUSTOMERS" AS c, billing AS C', "duplicate_name"),
    ("SELECT hash(email) FROM customers", "dialect"),  # DuckDB-only: refused, never passed through verbatim
])
def test_refusals_in_cloud_dialects(write: str, sql: str, kind: str, gov_policies: Policies,
                                    gov_schema: dict) -> None:
    with pytest.raises(PolicyViolation) as raised:
        enforce(sql, ANN, gov_policies, gov_schema, "duckdb", write=write)
    assert raised.value.kind == kind


def test_postgres_refuses_what_it_cannot_express(gov_policies: Policies, gov_schema: dict) -> None:
    with pytest.raises(PolicyViolation, match="postgres") as raised:
        enforce("SELECT * EXCLUDE (email) FROM customers", ANN, gov_policies, gov_schema, "duckdb", write="postgres")
    assert raised.value.kind == "dialect"


@pytest.mark.parametrize("url", ["snowflake://u:pw@acct/db/s", "bigquery://project/dataset",
                                 "databricks://token:t@host/sql/1.0/warehouses/x"])
def test_missing_drivers_name_their_package(url: str) -> None:
    from governance.warehouses import open_warehouse
    try:
        open_warehouse(url)
    except PolicyViolation:
        raise
    except Exception as err:  # noqa: BLE001 - a driver that is installed fails to connect instead
        assert "pip install" in str(err) or type(err).__name__ != "ImportError"
        assert ":pw@" not in str(err) and "token:t@" not in str(err)
