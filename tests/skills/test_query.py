"""query: governed SQL -> Parquet TableArtifact; sql_reads for the planner."""
from __future__ import annotations

import pytest
from analysis_fixtures import ADMIN, ANALYST, CANARY_SSN, customers_frame, make_ctx, make_engine

from governance import GovernanceError
from skills import SkillError, spec_of
from skills.library.query import QueryInput, merge_reads, query, query_reads, sql_reads


@pytest.fixture(scope="module")
def customers():
    return customers_frame(400)


@pytest.fixture(scope="module")
def engine(customers):
    return make_engine(customers)


def test_query_is_governed_and_saved_as_parquet(engine, customers, tmp_path):
    ctx = make_ctx(engine, ANALYST, tmp_path, step="q")
    out = query(ctx, QueryInput(sql="SELECT * FROM customers", key="customer_id"))
    table = ctx.artifacts.get_table(out.table.uri)
    expected = int((customers["region"] == "west").sum())  # the analyst's row filter
    assert out.rows == out.table.rows == table.num_rows == expected
    assert set(table.column("region").to_pylist()) == {"west"}
    assert "ssn" not in table.column_names and "ssn" not in out.table.columns  # denied column: not expanded by *
    assert out.table.key == "customer_id"
    assert out.table.uri.endswith("test/q/table.parquet")
    rows_events = [e for e in ctx.on_progress.events if e.unit == "rows" and e.done]
    assert rows_events and rows_events[-1].done == expected


def test_denied_column_error_passes_through(engine, tmp_path):
    ctx = make_ctx(engine, ANALYST, tmp_path)
    with pytest.raises(GovernanceError) as err:
        query(ctx, QueryInput(sql="SELECT customer_id, ssn FROM customers"))
    assert CANARY_SSN not in str(err.value)


def test_admin_sees_everything_and_max_rows_caps(engine, customers, tmp_path):
    full = query(make_ctx(engine, ADMIN, tmp_path, step="a"), QueryInput(sql="SELECT ssn FROM customers"))
    assert full.rows == len(customers)
    capped = query(make_ctx(engine, ADMIN, tmp_path, step="b", max_rows=25),
                   QueryInput(sql="SELECT customer_id FROM customers UNION ALL SELECT customer_id FROM customers"))
    assert capped.rows == 25


def test_missing_key_column_is_a_skill_error(engine, tmp_path):
    with pytest.raises(SkillError) as err:
        query(make_ctx(engine, ADMIN, tmp_path), QueryInput(sql="SELECT tenure FROM customers", key="customer_id"))
    assert "customer_id" in err.value.message and "tenure" in err.value.hint


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT contract, count(*) AS n FROM customers GROUP BY contract ORDER BY n", {"customers": {"contract"}}),
    ("SELECT c.tenure, b.amount FROM customers c JOIN billing b ON c.customer_id = b.customer_id",
     {"customers": {"tenure", "customer_id"}, "billing": {"amount", "customer_id"}}),
    ("SELECT * FROM customers WHERE EXISTS (SELECT 1 FROM billing b WHERE b.customer_id = customers.customer_id)",
     {"customers": None, "billing": {"customer_id"}}),
    ("WITH t AS (SELECT tenure FROM Customers) SELECT t.tenure FROM t", {"customers": {"tenure"}}),
    ("SELECT c.*, b.amount FROM customers c JOIN billing b USING (customer_id)", {"customers": None,
                                                                                 "billing": {"amount"}}),
    ("SELECT tenure FROM customers UNION ALL SELECT amount FROM billing", {"customers": {"tenure"},
                                                                          "billing": {"amount"}}),
])
def test_sql_reads(sql, expected):
    assert sql_reads(sql) == expected


def test_reads_errors_and_merge():
    with pytest.raises(SkillError, match="does not parse"):
        query_reads(QueryInput(sql="SELEC tenure FROM"))
    with pytest.raises(SkillError, match="one SQL statement"):
        sql_reads("SELECT 1; SELECT 2")
    assert merge_reads({"a": {"x"}}, {"a": {"y"}, "b": None}, {"b": {"z"}}) == {"a": {"x", "y"}, "b": None}


def test_registered_with_reads_hook():
    spec = spec_of(query)
    assert spec.reads is query_reads and set(spec.input_model.model_fields) == {"sql", "key"}
    assert set(spec.output_model.model_fields) == {"table", "sql", "rows"}
