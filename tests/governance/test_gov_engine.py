"""Engine: registration, governed results (row filters, masks, multi-role unions), catalog, warehouses,
pickling, concurrency and sanitized errors, on a real in-memory DuckDB."""
from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from gov_testdata import PRINCIPALS, leaked, seeded_engine, tables

from governance import Engine, GovernanceError, Policies, PolicyViolation, Principal, QueryError
from governance.engine import sanitize_error

CUSTOMERS = tables()["customers"].to_pylist()


def _ids(engine: Engine, sql: str, who: str) -> list[int]:
    return [row["id"] for row in engine.query(sql, PRINCIPALS[who]).to_pylist()]


def test_row_filter_binds_the_principal_attribute(gov_engine: Engine) -> None:
    for who, region in (("analyst_eu", "EU"), ("analyst_us", "US")):
        expected = sorted(r["id"] for r in CUSTOMERS if r["region"] == region)
        assert _ids(gov_engine, "SELECT id FROM customers ORDER BY id", who) == expected


def test_star_returns_allowed_columns_with_masks(gov_engine: Engine) -> None:
    rows = gov_engine.query("SELECT * FROM customers ORDER BY id", PRINCIPALS["analyst_eu"]).to_pylist()
    assert list(rows[0]) == ["id", "name", "email", "phone", "region", "opt_in", "spend", "signup"]
    source = {r["id"]: r for r in CUSTOMERS}
    for row in rows:
        assert row["phone"] == "XXX-" + source[row["id"]]["phone"][-4:]
        assert row["email"] == source[row["id"]]["email"]


def test_masks_apply_before_predicates(gov_engine: Engine) -> None:
    support = "support_sam"
    assert _ids(gov_engine, "SELECT id FROM customers WHERE email LIKE 'canary%'", support) == []
    masked = gov_engine.query("SELECT DISTINCT email FROM customers ORDER BY 1", PRINCIPALS[support]).to_pylist()
    assert [r["email"] for r in masked] == ["***@mail0.test", "***@mail1.test", "***@mail2.test"]


def test_aggregates_only_see_visible_rows(gov_engine: Engine) -> None:
    got = gov_engine.query("SELECT region, sum(spend) AS s FROM customers GROUP BY region",
                           PRINCIPALS["analyst_eu"]).to_pylist()
    assert got == [{"region": "EU", "s": sum(r["spend"] for r in CUSTOMERS if r["region"] == "EU")}]


def test_multi_role_union(gov_engine: Engine) -> None:
    # analyst (EU filter) + support (no filter): every row; email unmasked via analyst, phone via support.
    rows = gov_engine.query("SELECT id, email, phone FROM customers ORDER BY id",
                            PRINCIPALS["analyst_support"]).to_pylist()
    assert rows == [{k: r[k] for k in ("id", "email", "phone")} for r in CUSTOMERS]
    # analyst (EU) + marketing (opt_in): filters OR-ed; phone masked for both roles.
    union = sorted(r["id"] for r in CUSTOMERS if r["region"] == "EU" or r["opt_in"])
    assert _ids(gov_engine, "SELECT id FROM customers ORDER BY id", "analyst_marketing") == union
    phones = gov_engine.query("SELECT phone FROM customers", PRINCIPALS["analyst_marketing"]).column("phone")
    assert all(p.startswith("XXX-") for p in phones.to_pylist())


def test_user_binds_to_principal_user(gov_engine: Engine) -> None:
    rows = gov_engine.query("SELECT DISTINCT assignee FROM tickets", PRINCIPALS["support_sam"]).to_pylist()
    assert rows == [{"assignee": "sam"}]


def test_attribute_values_cannot_inject(gov_engine: Engine) -> None:
    assert _ids(gov_engine, "SELECT id FROM customers", "analyst_injection") == []


def test_missing_attribute_is_a_violation(gov_engine: Engine) -> None:
    with pytest.raises(PolicyViolation, match="attribute 'region'") as raised:
        gov_engine.query("SELECT id FROM customers", PRINCIPALS["analyst_noregion"])
    assert raised.value.kind == "attribute"


def test_catalog_shows_only_what_the_principal_may_read(gov_engine: Engine) -> None:
    analyst = gov_engine.catalog(PRINCIPALS["analyst_eu"])
    assert set(analyst) == {"customers", "billing"}
    assert "ssn" not in analyst["customers"] and analyst["customers"]["phone"] == "VARCHAR"
    assert analyst["billing"] == {"customer_id": "BIGINT", "month": "DATE", "amount": "DOUBLE",
                                  "plan": "VARCHAR", "memo": "VARCHAR"}
    assert set(gov_engine.catalog(PRINCIPALS["admin"])) == {"customers", "billing", "tickets", "secrets"}
    assert gov_engine.catalog(PRINCIPALS["nobody"]) == {}
    assert gov_engine.catalog(PRINCIPALS["analyst_noregion"]) == {"billing": analyst["billing"]}


def test_rewrite_is_fully_qualified(gov_engine: Engine) -> None:
    sql = gov_engine.rewrite("SELECT id FROM customers", PRINCIPALS["analyst_eu"])
    assert f'FROM "memory"."{gov_engine._raw}"."customers" AS "customers"' in sql  # the raw schema, not `main`
    assert gov_engine.query("SELECT id FROM memory.main.customers", PRINCIPALS["admin"]).num_rows == 30


def test_register_sources(tmp_path: Path) -> None:
    table = pa.table({"k": [1, 2, 3], "v": ["a", "b", "c"]})
    pq.write_table(table, tmp_path / "p.parquet")
    pa_csv.write_csv(table, tmp_path / "c.csv")
    engine = Engine(Policies.allow_all(["t1", "t2", "t3", "t4"]))
    engine.register("t1", table)
    engine.register("t2", tmp_path / "p.parquet")
    engine.register("t3", str(tmp_path / "c.csv"))
    engine.register("t4", table.to_pandas())
    for name in ("t1", "t2", "t3", "t4"):
        got = engine.query(f"SELECT k, v FROM {name} ORDER BY k", Principal.local())
        assert got.to_pylist() == table.to_pylist()
    engine.register("t1", pa.table({"k": [9]}))  # replaces
    assert engine.query("SELECT * FROM t1", Principal.local()).to_pylist() == [{"k": 9}]


@pytest.mark.parametrize(("name", "source", "problem"), [
    ("bad name", pa.table({"a": [1]}), "invalid table name"),
    ("t", "data.txt", "unknown file type"),
    ("t", 42, "cannot register a int"),
])
def test_register_errors(name: str, source: object, problem: str) -> None:
    with pytest.raises(GovernanceError, match=problem):
        Engine(Policies.allow_all(["t"])).register(name, source)


def test_from_warehouse_folder_and_duckdb_file(tmp_path: Path, gov_policies: Policies) -> None:
    folder = tmp_path / "wh"
    folder.mkdir()
    data = tables()
    pq.write_table(data["customers"], folder / "customers.parquet")
    pa_csv.write_csv(data["tickets"], folder / "tickets.csv")
    (folder / "notes.txt").write_text("ignored")
    engine = Engine.from_warehouse(folder, gov_policies)
    assert sorted(engine.tables) == ["customers", "tickets"]
    assert _ids(engine, "SELECT id FROM customers ORDER BY id", "analyst_eu") == \
        sorted(r["id"] for r in CUSTOMERS if r["region"] == "EU")
    database = tmp_path / "wh.duckdb"
    with duckdb.connect(str(database)) as con:
        con.register("src", data["billing"])
        con.execute("CREATE TABLE billing AS SELECT * FROM src")
    engine = Engine.from_warehouse(database, gov_policies)
    assert engine.tables == ["billing"]
    assert engine.query("SELECT count(*) AS n FROM billing", PRINCIPALS["finance"]).to_pylist() == [{"n": 60}]
    with pytest.raises(GovernanceError, match="does not exist"):
        Engine.from_warehouse(tmp_path / "missing", gov_policies)


def test_a_file_warehouse_is_read_in_place_not_copied(tmp_path: Path, gov_policies: Policies) -> None:
    """Parquet files and DuckDB tables stay on disk: the engine pickles to their paths (a few hundred bytes, however
    big the tables), its clone answers the same, row counts come from metadata. The files are readable only through
    governed queries: the rewrite refuses table functions and file paths, and the database may open no other file."""
    folder = tmp_path / "wh"
    folder.mkdir()
    big = pa.table({"id": list(range(200_000)), "region": ["EU", "US"] * 100_000})
    pq.write_table(big, folder / "customers.parquet")
    engine = Engine.from_warehouse(folder, gov_policies)
    analyst = PRINCIPALS["analyst_eu"]
    counted = engine.query("SELECT count(*) AS n FROM customers", analyst).to_pylist()
    assert counted == [{"n": 100_000}] and len(pickle.dumps(engine)) < 5_000
    clone = pickle.loads(pickle.dumps(engine))
    assert clone.query("SELECT count(*) AS n FROM customers", analyst).to_pylist() == counted
    assert engine.warehouse.estimate_rows("customers") == 200_000
    path = folder / "customers.parquet"
    for sql in (f"SELECT * FROM read_parquet('{path}')", f"SELECT * FROM '{path}'"):
        with pytest.raises(PolicyViolation):
            engine.query(sql, analyst)
    with pytest.raises(duckdb.Error, match="file system operations are disabled"):
        engine._run("SELECT * FROM read_csv('/etc/hostname')", analyst)  # below the rewrite: no other file
    database = tmp_path / "wh.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE billing AS SELECT range AS customer_id, 10.0 AS amount, 1 AS month FROM range(5000)")
    engine = Engine.from_warehouse(database, gov_policies)
    assert len(pickle.dumps(engine)) < 5_000
    assert engine.query("SELECT count(*) AS n FROM billing", PRINCIPALS["finance"]).to_pylist() == [{"n": 5000}]


def test_pickled_engine_rebuilds_with_same_results(tmp_path: Path, gov_policies: Policies) -> None:
    engine = seeded_engine(gov_policies, audit=tmp_path / "audit.jsonl", memory_limit="512MB", threads=1)
    pq.write_table(tables()["tickets"], tmp_path / "t.parquet")
    engine.register("tickets", tmp_path / "t.parquet")
    clone = pickle.loads(pickle.dumps(engine))
    for who, sql in (("analyst_eu", "SELECT * FROM customers ORDER BY id"),
                     ("support_sam", "SELECT * FROM tickets ORDER BY id")):
        assert clone.query(sql, PRINCIPALS[who]) == engine.query(sql, PRINCIPALS[who])
    assert clone.audit.path == engine.audit.path and len(engine.audit.records()) == 4
    assert (clone.memory_limit, clone.threads) == ("512MB", 1)


def test_concurrent_queries(gov_engine: Engine) -> None:
    jobs = [("analyst_eu", "SELECT count(*) AS n FROM customers"), ("analyst_support", "SELECT count(*) AS n "
            "FROM customers"), ("finance", "SELECT count(*) AS n FROM billing")] * 8
    with ThreadPoolExecutor(max_workers=6) as pool:
        counts = list(pool.map(lambda job: gov_engine.query(job[1], PRINCIPALS[job[0]]).to_pylist()[0]["n"],
                               jobs))
    assert counts == [10, 30, 60] * 8


def test_runtime_errors_are_sanitized(gov_engine: Engine) -> None:
    with pytest.raises(QueryError) as raised:
        gov_engine.query("SELECT CAST(name AS INTEGER) FROM customers", PRINCIPALS["analyst_eu"])
    assert "CANARY" not in str(raised.value) and "Conversion" in raised.value.message


def test_sanitize_error_drops_values_from_raw_duckdb_errors() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 'CANARY-RAW-1' AS v")
    with pytest.raises(duckdb.Error) as raw:
        con.execute("SELECT CAST(v AS INTEGER) FROM t").fetchall()
    assert "CANARY-RAW-1" in str(raw.value)  # DuckDB itself echoes the value ...
    assert "CANARY" not in str(sanitize_error(raw.value))  # ... the sanitized error does not
    with pytest.raises(duckdb.Error) as binder:
        con.execute("SELECT v FROM t WHERE v = 'CANARY-LIT' AND nope = 1").fetchall()
    cleaned = str(sanitize_error(binder.value))
    assert "nope" in cleaned and "CANARY" not in cleaned


def test_binder_errors_list_only_visible_columns(gov_engine: Engine) -> None:
    with pytest.raises(QueryError) as raised:
        gov_engine.query("SELECT nme FROM (SELECT * FROM customers) AS s", PRINCIPALS["analyst_eu"])
    assert "ssn" not in raised.value.message and not leaked(raised.value.message, PRINCIPALS["analyst_eu"])


@pytest.mark.parametrize("template", ["SELECT {} FROM customers", "SELECT c.{} FROM customers AS c",
                                      "SELECT id FROM customers WHERE {} IS NULL",
                                      "SELECT c.id FROM customers AS c JOIN billing AS b ON b.{} = c.id"])
def test_a_missing_column_is_refused_like_a_denied_one(gov_engine: Engine, template: str) -> None:
    """No existence oracle: `ssn` (exists, denied) and `snn` (does not exist) get the same refusal."""
    refusals = []
    for column in ("ssn", "snn"):
        with pytest.raises(PolicyViolation) as raised:
            gov_engine.query(template.format(column), PRINCIPALS["analyst_eu"])
        refusals.append((raised.value.kind, raised.value.message.replace(column, "?"), raised.value.hint))
    assert refusals[0] == refusals[1] and refusals[0][0] == "column"


# ------------------------------------------------------------------------------------------ remembered rewrites
def test_remembered_rewrites_are_still_audited_and_follow_the_principal(gov_policies: Policies) -> None:
    engine = seeded_engine(gov_policies)
    sql = "SELECT id FROM customers ORDER BY id"
    first = engine.query(sql, PRINCIPALS["analyst_eu"])
    assert engine.query(sql, PRINCIPALS["analyst_eu"]) == first
    assert [r.verdict for r in engine.audit.records(user="ann")] == ["allowed", "allowed"]
    # same SQL, another attribute value: another row filter, not the remembered one
    us = Principal(user="ann", roles=["analyst"], attributes={"region": "US"})
    assert _ids(engine, sql, "analyst_eu") != [r["id"] for r in engine.query(sql, us).to_pylist()]


def test_remembered_rewrites_follow_new_tables_and_new_policies(gov_policies: Policies) -> None:
    engine = seeded_engine(gov_policies)
    eu = PRINCIPALS["analyst_eu"]
    before = engine.query("SELECT * FROM customers", eu).column_names
    engine.register("customers", tables()["customers"].append_column("churned", pa.array([0] * 30)))
    assert engine.query("SELECT * FROM customers", eu).column_names == [*before, "churned"]
    # new policies without customers: the next query is refused, not answered from memory
    locked = gov_policies.model_dump()
    del locked["tables"]["customers"]
    engine.policies = Policies.model_validate(locked)
    with pytest.raises(PolicyViolation):
        engine.query("SELECT * FROM customers", eu)
