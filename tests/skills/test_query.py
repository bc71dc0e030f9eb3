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


# ------------------------------------------------------------------------------------------- sharded reads (Ray)


@pytest.mark.ray
def test_a_large_result_is_read_by_ray_tasks_in_disjoint_shards(ray_cluster, engine, customers, tmp_path):
    """Above rows_per_shard, Ray tasks read disjoint shards of the governed result into Parquet parts: together
    exactly the rows the analyst may see (row filter applied, denied column absent), each entity in one part, every
    shard audited as a governed query."""
    import pyarrow.parquet as pq

    ctx = make_ctx(engine, ANALYST, tmp_path, step="q", compute="ray", rows_per_shard=30)
    out = query(ctx, QueryInput(sql="SELECT * FROM customers", key="customer_id"))
    whole = query(make_ctx(engine, ANALYST, tmp_path, step="whole"),
                  QueryInput(sql="SELECT * FROM customers", key="customer_id"))
    expected = ctx.artifacts.get_table(whole.table.uri)
    parts = sorted((tmp_path / "test" / "q" / "table").glob("part-*.parquet"))
    shards = -(-expected.num_rows // 30)
    assert len(parts) == shards > 1 and out.table.uri.endswith("test/q/table")
    ids = [pq.read_table(p).column("customer_id").to_pylist() for p in parts]
    assert sorted(i for part in ids for i in part) == sorted(expected.column("customer_id").to_pylist())
    assert len({i for part in ids for i in part}) == sum(len(part) for part in ids)  # disjoint
    table = ctx.artifacts.get_table(out.table.uri)  # the directory reads back as one table
    assert out.rows == out.table.rows == table.num_rows == expected.num_rows
    assert set(table.column("region").to_pylist()) == {"west"} and "ssn" not in table.column_names
    assert table.schema.equals(expected.schema)
    audited = [r for r in engine.audit.records(limit=None) if r.detail.get("shard")]
    assert len([r for r in audited if r.detail["shard"].endswith(f"/{shards} by customer_id")]) >= shards
    assert all(r.verdict == "allowed" and "west" in (r.rewritten or "") for r in audited)
    assert ctx.on_progress.events[-1].done == expected.num_rows


@pytest.mark.ray
def test_a_failing_shard_says_why_without_a_ray_traceback(ray_cluster, engine, tmp_path):
    ctx = make_ctx(engine, ANALYST, tmp_path, step="q", compute="ray", rows_per_shard=30)
    with pytest.raises(GovernanceError) as err:  # a cast that fails on some rows, inside the shard tasks
        query(ctx, QueryInput(sql="SELECT CAST(contract AS INTEGER) AS c FROM customers"))
    assert "RayTaskError" not in str(err.value) and "details are hidden" in err.value.message
    assert any(r.verdict == "error" and r.detail.get("shard") for r in engine.audit.records(limit=None))


def test_shard_predicates_parse_in_every_supported_dialect():
    import sqlglot

    from governance import Shard

    for dialect in ("duckdb", "postgres", "snowflake", "bigquery", "databricks"):
        for key in ("customer_id", None):
            sql = Shard(2, 5, key).wrap("SELECT customer_id, tenure FROM t", dialect)
            assert sqlglot.parse_one(sql, read=dialect).find(sqlglot.exp.Where) is not None, (dialect, sql)
    with pytest.raises(GovernanceError, match="not supported for the oracle dialect"):
        Shard(0, 2).wrap("SELECT 1", "oracle")
    with pytest.raises(GovernanceError, match="does not exist"):
        Shard(3, 3)
