"""Defence in depth: the Engine's DuckDB connection stays locked down even for SQL that bypasses enforce()."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from governance import Engine, Policies


@pytest.fixture()
def raw(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """The engine's own connection: tests use it on purpose to show what happens if enforce were bypassed."""
    engine = Engine(Policies.allow_all(["t"]), memory_limit="256MB", threads=1)
    engine.register("t", pa.table({"a": [1]}))
    return engine._connection


def _setting(con: duckdb.DuckDBPyConnection, name: str) -> str:
    return str(con.execute("SELECT current_setting(?)", [name]).fetchone()[0]).lower()


def test_settings_are_locked_down(raw: duckdb.DuckDBPyConnection) -> None:
    expected = {"enable_external_access": "false", "autoload_known_extensions": "false",
                "autoinstall_known_extensions": "false", "allow_community_extensions": "false",
                "python_enable_replacements": "false", "lock_configuration": "true", "threads": "1"}
    assert {name: _setting(raw, name) for name in expected} == expected
    assert _setting(raw, "memory_limit").startswith(("244", "256"))


@pytest.mark.parametrize("statement", [
    "SET enable_external_access = true", "RESET enable_external_access", "SET lock_configuration = false",
    "SET python_enable_replacements = true", "SET autoload_known_extensions = true", "SET threads = 8",
    "SET memory_limit = '100GB'", "SET allowed_directories = ['/']",
])
def test_configuration_cannot_be_changed(raw: duckdb.DuckDBPyConnection, statement: str) -> None:
    with pytest.raises(duckdb.Error, match="locked"):
        raw.execute(statement)
    with pytest.raises(duckdb.Error, match="locked"):
        raw.cursor().execute(statement)


def test_files_are_unreachable_even_bypassing_enforce(raw: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    csv = tmp_path / "leak.csv"
    pa_csv.write_csv(pa.table({"v": ["CANARY-LOCK-1"]}), csv)
    for sql in (f"SELECT * FROM read_csv('{csv}')", f"SELECT * FROM '{csv}'", f"COPY t TO '{tmp_path}/out.csv'",
                f"ATTACH '{tmp_path}/x.db'", "INSTALL httpfs", "LOAD httpfs",
                "SELECT * FROM read_text('/etc/hostname')"):
        with pytest.raises(duckdb.Error) as raised:
            raw.execute(sql).fetchall()
        assert "CANARY" not in str(raised.value)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "x.db").exists()


def test_python_replacement_scans_are_off(raw: duckdb.DuckDBPyConnection) -> None:
    local_secret = pd.DataFrame({"v": ["CANARY-LOCK-PY"]})  # noqa: F841 - what a replacement scan would find
    local_arrow = pa.table({"v": ["CANARY-LOCK-ARROW"]})  # noqa: F841
    for name in ("local_secret", "local_arrow"):
        with pytest.raises(duckdb.CatalogException):
            raw.execute(f"SELECT * FROM {name}").fetchall()
    unlocked = duckdb.connect()  # control: an ordinary connection does scan the local variable
    assert unlocked.execute("SELECT * FROM local_secret").fetchall() == [("CANARY-LOCK-PY",)]
