"""Red team: every bypass attempt in redteam.yaml runs through Engine.query; no canary forbidden to the caller may
appear in a result, an error message (or hint) or an audit reason, and each case gets the expected verdict."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import yaml
from gov_testdata import PRINCIPALS, leaked, seeded_engine

from governance import Engine, GovernanceError, Policies, PolicyViolation

CORPUS = yaml.safe_load((Path(__file__).parent / "redteam.yaml").read_text())["cases"]
# Canaries outside the warehouse: files on disk and Python variables. Forbidden to everyone.
OUTSIDE = {"csv": "CANARY-FILE-CSV-7", "parquet": "CANARY-FILE-PQ-7", "df": "CANARY-PY-DF-7",
           "arrow": "CANARY-PY-ARROW-7", "pandas": "CANARY-PY-PANDAS-7"}


@pytest.fixture(scope="module")
def engine(gov_policies: Policies) -> Engine:
    return seeded_engine(gov_policies)


@pytest.fixture(scope="module")
def secret_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("secrets")
    pa_csv.write_csv(pa.table({"v": [OUTSIDE["csv"]]}), folder / "leak.csv")
    pq.write_table(pa.table({"v": [OUTSIDE["parquet"]]}), folder / "leak.parquet")
    return {"{secret_csv}": str(folder / "leak.csv"), "{secret_parquet}": str(folder / "leak.parquet")}


def test_corpus_size_and_categories() -> None:
    categories = Counter(case["cat"] for case in CORPUS)
    assert len(CORPUS) >= 150
    assert len(categories) >= 12
    assert min(categories.values()) >= 10, categories


def _run(engine: Engine, sql: str, who: str) -> tuple[str, Any]:
    """('allowed', rows) or (error kind, error); the Python variables below are in scope for replacement scans."""
    secret_df = pd.DataFrame({"v": [OUTSIDE["df"]]})  # noqa: F841 - bait for DuckDB replacement scans
    secret_arrow = pa.table({"v": [OUTSIDE["arrow"]]})  # noqa: F841
    secret_pandas = pd.DataFrame({"v": [OUTSIDE["pandas"]]})  # noqa: F841
    try:
        return "allowed", engine.query(sql, PRINCIPALS[who]).to_pylist()
    except PolicyViolation as err:
        return "denied", err
    except GovernanceError as err:
        return "error", err


def _verdict_ok(expect: str, verdict: str) -> bool:
    return {"denied": verdict == "denied", "allowed": verdict == "allowed",
            "error": verdict in ("denied", "error"), "any": True}[expect]


@pytest.mark.parametrize("case", CORPUS, ids=[f"{i:03d}-{c['cat']}" for i, c in enumerate(CORPUS)])
def test_bypass_attempt(case: dict[str, str], engine: Engine, secret_files: dict[str, str]) -> None:
    sql = case["sql"]
    for marker, path in secret_files.items():
        sql = sql.replace(marker, path)
    verdict, outcome = _run(engine, sql, case["who"])
    record = engine.audit.records(limit=1)[0]
    shown = repr(outcome) if verdict == "allowed" else f"{outcome.message} {outcome.hint}"
    text = f"{shown}\n{record.reason}"
    principal = PRINCIPALS[case["who"]]
    assert not leaked(text, principal), f"leak: {leaked(text, principal)}"
    assert not [c for c in OUTSIDE.values() if c.lower() in text.lower()]
    assert record.sql == sql and record.verdict in ("allowed", "denied", "error")
    assert _verdict_ok(case["expect"], verdict), f"expected {case['expect']}, got {verdict}: {shown}"


def _run_unrewritten(engine: Engine, sql: str, who: str) -> str:
    """The second wall alone: `sql` goes to the engine's cursor without the rewrite. What comes back as text."""
    secret_df = pd.DataFrame({"v": [OUTSIDE["df"]]})  # noqa: F841 - bait for DuckDB replacement scans
    secret_arrow = pa.table({"v": [OUTSIDE["arrow"]]})  # noqa: F841
    secret_pandas = pd.DataFrame({"v": [OUTSIDE["pandas"]]})  # noqa: F841
    try:
        return repr(engine._run(sql, PRINCIPALS[who]).to_pylist())
    except Exception as err:  # noqa: BLE001 - any failure is fine here, as long as it shows nothing forbidden
        return str(err)


def test_the_second_wall_alone_leaks_nothing(gov_policies: Policies, secret_files: dict[str, str]) -> None:
    """With the rewrite switched off, every corpus query runs straight on the principal's governed views: table
    names resolve to governed rows and columns (or to nothing), so no canary comes back either."""
    engine = seeded_engine(gov_policies)  # its own: some corpus statements would change the database when unchecked
    leaks, answered = [], 0
    for i, case in enumerate(CORPUS):
        sql = case["sql"]
        for marker, path in secret_files.items():
            sql = sql.replace(marker, path)
        text = _run_unrewritten(engine, sql, case["who"])
        answered += text.startswith("[")
        found = leaked(text, PRINCIPALS[case["who"]]) + [c for c in OUTSIDE.values() if c.lower() in text.lower()]
        found = [c for c in found if c.lower() not in sql.lower()]  # DuckDB's raw errors quote the query's literals
        if found:
            leaks.append((i, case["cat"], sql, found[:3]))
    assert not leaks, leaks
    assert answered >= 40  # many queries did run underneath, on governed views (not all refused by DuckDB itself)
    ann = PRINCIPALS["analyst_eu"]
    rows = engine._run("SELECT * FROM customers", ann)
    assert rows.num_rows == engine.query("SELECT * FROM customers", ann).num_rows > 0
