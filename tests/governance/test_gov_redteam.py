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
