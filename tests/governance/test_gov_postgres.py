"""The PostgreSQL warehouse: the same governance as the embedded DuckDB, with the governed SQL printed in the
postgres dialect and run by PostgreSQL (filters, masks, joins, aggregates in the database), under a second wall of
per-principal views in a READ ONLY transaction."""
from __future__ import annotations

import pickle
from collections.abc import Iterator

import psycopg
import pytest
from gov_testdata import POLICY_FILE, PRINCIPALS, tables

from governance import Engine, GovernanceError, PolicyViolation, QueryError, load_policies, policies_from_dict
from governance.warehouses.postgres import copy_arrow_table

pytestmark = pytest.mark.postgres
ANN = PRINCIPALS["analyst_eu"]


@pytest.fixture(scope="module")
def pg_url(new_pg_database) -> Iterator[str]:
    """A fresh database holding the governance test tables (and one table PostgreSQL alone has)."""
    with new_pg_database("agentml_gov") as url:
        for name, table in tables().items():
            copy_arrow_table(url, name, table)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute('CREATE TABLE "Twin" (a int); CREATE TABLE twin (a int); '
                         "CREATE SEQUENCE public.seq")  # differ only in case
        yield url


@pytest.fixture(scope="module")
def pg(pg_url: str) -> Engine:
    return Engine.from_warehouse(pg_url, load_policies(POLICY_FILE))


SAME = [
    ("analyst_eu", "SELECT * FROM customers ORDER BY id"),
    ("analyst_eu", "SELECT region, count(*) AS n, sum(spend) AS s FROM customers GROUP BY region ORDER BY 1"),
    ("analyst_eu", "SELECT c.id, b.month, lag(b.amount) OVER (PARTITION BY c.id ORDER BY b.month) AS prev "
                   "FROM customers AS c JOIN billing AS b ON b.customer_id = c.id ORDER BY 1, 2"),
    ("analyst_eu", "SELECT id FROM customers WHERE phone LIKE 'XXX-%' ORDER BY id"),  # masks before predicates
    ("support_sam", "SELECT id, email FROM customers ORDER BY id"),
    ("support_sam", "SELECT * FROM tickets ORDER BY id"),
    ("analyst_support", "SELECT id, email, phone FROM customers ORDER BY id"),
    ("marketing", "SELECT count(*) AS n FROM customers"),
    ("finance", "SELECT customer_id, month, amount FROM billing ORDER BY 1, 2, 3"),
    ("analyst_injection", "SELECT count(*) AS n FROM customers"),
]


@pytest.mark.parametrize(("who", "sql"), SAME)
def test_same_rows_as_the_embedded_duckdb(pg: Engine, gov_engine: Engine, who: str, sql: str) -> None:
    assert pg.query(sql, PRINCIPALS[who]).to_pylist() == gov_engine.query(sql, PRINCIPALS[who]).to_pylist()


def test_governed_sql_is_postgres_and_audited(pg: Engine) -> None:
    assert pg.dialect == "postgres"
    pg.query("SELECT id FROM customers WHERE spend > 100", ANN)
    record = pg.audit.records(limit=1)[0]
    assert record.verdict == "allowed" and '"public"."customers"' in (record.rewritten or "")
    assert "'EU'" in (record.rewritten or "")  # the row filter, bound as a literal


@pytest.mark.parametrize(("sql", "kind"), [
    ("SELECT ssn FROM customers", "column"), ("SELECT * FROM secrets", "table"),
    ("SELECT c.id FROM customers AS c JOIN billing AS c ON true", "duplicate_name"),
    ("SELECT id FROM public.customers", "table"),  # the raw schema cannot be named
    ("SELECT hash(email) FROM customers", "dialect"),  # a DuckDB-only function does not cross
])
def test_refusals_match_duckdb(pg: Engine, gov_engine: Engine, sql: str, kind: str) -> None:
    with pytest.raises(PolicyViolation) as on_pg:
        pg.query(sql, ANN)
    assert on_pg.value.kind == kind
    if kind != "dialect":
        with pytest.raises(PolicyViolation) as on_duckdb:
            gov_engine.query(sql, ANN)
        assert on_duckdb.value.message == on_pg.value.message


def test_the_second_wall_alone_holds(pg: Engine) -> None:
    """Unrewritten SQL through the test seam: table names resolve to the principal's governed views."""
    rows = pg._run("SELECT * FROM customers", ANN).to_pylist()
    assert rows and {r["region"] for r in rows} == {"EU"} and "ssn" not in rows[0]
    assert all(r["phone"].startswith("XXX-") for r in rows)
    for sql in ("SELECT * FROM secrets", "SELECT ssn FROM customers"):
        with pytest.raises(psycopg.ProgrammingError) as raised:
            pg._run(sql, ANN)
        assert raised.value.sqlstate in ("42P01", "42703")  # undefined table / column
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        pg._run("SELECT setval('public.seq', 5)", ANN)  # the transaction is READ ONLY


def test_errors_are_sanitized(pg: Engine) -> None:
    with pytest.raises(QueryError) as raised:
        pg.query("SELECT CAST(name AS INTEGER) AS x FROM customers", ANN)
    assert "CANARY" not in str(raised.value) and "InvalidTextRepresentation" in str(raised.value)
    with pytest.raises(psycopg.Error) as compile_time:
        pg._run("SELECT nope FROM customers WHERE name = 'CANARY-NAME-003'", ANN)  # no rewrite: PG's own refusal
    message = pg.warehouse.sanitize(compile_time.value).message
    assert 'column "nope" does not exist' in message and "CANARY" not in message


def test_hash_masks_run_in_postgres_like_duckdb(pg_url: str, gov_engine: Engine) -> None:
    policies = policies_from_dict({"tables": {"customers": {"allow": ["analyst"], "mask_columns": {
        "email": {"roles": ["analyst"], "using": "sha256(email)"},
        "name": {"roles": ["analyst"], "using": "md5(name)"}}}}})
    sql = "SELECT id, email, name FROM customers ORDER BY id"
    embedded = Engine(policies)
    embedded.register("customers", tables()["customers"])
    pg = Engine.from_warehouse(pg_url, policies)
    assert pg.query(sql, ANN).to_pylist() == embedded.query(sql, ANN).to_pylist()


def test_pickles_to_its_url_and_hides_the_password(pg: Engine) -> None:
    clone = pickle.loads(pickle.dumps(pg))
    assert clone.query("SELECT count(*) AS n FROM customers", ANN).to_pylist() == [{"n": 10}]
    assert "postgres:***@" in repr(pg) and ":postgres@" not in repr(pg)


def test_estimates_and_catalog(pg: Engine, gov_engine: Engine) -> None:
    assert pg.estimate_rows("billing", PRINCIPALS["admin"]) == 60
    assert pg.estimate_rows("customers", ANN) == 10  # filtered rows are counted, not estimated
    assert set(pg.catalog(ANN)) == set(gov_engine.catalog(ANN)) == {"customers", "billing"}
    assert set(pg.catalog(ANN)["customers"]) == set(gov_engine.catalog(ANN)["customers"])
    assert "twin" not in pg.tables and "Twin" not in pg.tables  # names that differ only in case are left out


def test_unknown_schemes_and_unreachable_servers_are_clear_errors() -> None:
    with pytest.raises(GovernanceError, match="postgresql://") as raised:
        Engine.from_warehouse("mysql://u:secret@h/db", load_policies(POLICY_FILE))
    assert "secret" not in str(raised.value)
    with pytest.raises(GovernanceError) as down:
        Engine.from_warehouse("postgresql://u:s3cret@127.0.0.1:1/db", load_policies(POLICY_FILE))
    assert down.value.category == "unavailable" and "s3cret" not in str(down.value)


@pytest.mark.parametrize("key", ["id", None])
def test_shards_split_the_governed_rows_in_postgres(pg: Engine, key: str | None) -> None:
    """Shards (hashed by PostgreSQL) are disjoint and together are exactly the governed result."""
    from governance import Shard

    sql = "SELECT id, email, region FROM customers"
    whole = sorted(pg.query(sql, ANN).column("id").to_pylist())
    parts = [pg.query(sql, ANN, shard=Shard(i, 3, key)).column("id").to_pylist() for i in range(3)]
    assert sorted(i for part in parts for i in part) == whole and sum(map(len, parts)) == len(whole)
    assert sum(1 for part in parts if part) >= 2  # the hash really splits
    record = pg.audit.records(limit=1)[0]
    assert record.detail["shard"].startswith("3/3") and "hashtext" in (record.rewritten or "")
