"""The embedded warehouse: a locked-down in-memory DuckDB holding tables loaded admin-side through Arrow.

Raw tables live in a schema of their own whose (random) name no accepted query may use; principals' walls are
schemas of governed views. Defence in depth: external access off (no files, URLs, ATTACH, COPY, extension installs),
extension autoload/autoinstall off, Python replacement scans off, and the configuration locked so none of that can be
switched back on. `from_path` copies a DuckDB file's tables or a folder of Parquet/CSV files into memory (the whole
warehouse sits in this process: fine for a laptop, not for a big warehouse; use a server warehouse then).
"""
from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from governance.errors import GovernanceError, QueryError
from governance.warehouses.base import Warehouse, compile_error, quote_ident, runtime_error

CATALOG = "memory"
# DuckDB errors raised before any row is read: they can only echo the query and catalog names, never data.
_COMPILE_ERRORS = (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException)
_FILE_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# A registered source, kept so that a pickled warehouse can rebuild itself: an Arrow table, a Parquet/CSV path, or
# (duckdb file path, table name).
Source: TypeAlias = "pa.Table | str | tuple[str, str]"


def _lockdown_config(memory_limit: str, threads: int) -> dict[str, Any]:
    return {
        "enable_external_access": False,
        "autoload_known_extensions": False,
        "autoinstall_known_extensions": False,
        "allow_community_extensions": False,
        "allow_unsigned_extensions": False,
        "python_enable_replacements": False,
        "memory_limit": memory_limit,
        "threads": threads,
    }


def _locked_connection(memory_limit: str, threads: int) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(":memory:", config=_lockdown_config(memory_limit, threads))
    connection.execute("SET allow_extension_repositories = 'forbidden'")
    connection.execute("SET lock_configuration = true")
    return connection


def sanitize_error(error: Exception) -> QueryError:
    """A generic QueryError for a DuckDB error: compile-time messages keep their first line with string literals
    blanked; run-time errors (casts, overflow, ...) can quote row values, so only their class is kept."""
    return compile_error(error) if isinstance(error, _COMPILE_ERRORS) else runtime_error(error)


def _read_file(path: Path) -> pa.Table:
    kind = _FILE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise GovernanceError(f"cannot register {path.name}: unknown file type",
                              hint="Register .parquet or .csv files, or an Arrow table.")
    return pq.read_table(path) if kind == "parquet" else pa_csv.read_csv(path)


def _read_duckdb_table(path: str, table: str) -> pa.Table:
    with duckdb.connect(path, read_only=True) as source:
        return source.sql(f"SELECT * FROM {quote_ident(table)}").to_arrow_table()


def _duckdb_tables(path: str) -> list[str]:
    with duckdb.connect(path, read_only=True) as source:
        rows = source.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                              "AND table_type = 'BASE TABLE' ORDER BY table_name").fetchall()
    return [row[0] for row in rows]


def to_arrow(source: Any) -> pa.Table:
    """An Arrow table from what `register` accepts."""
    if isinstance(source, pa.Table):
        return source
    if isinstance(source, tuple):
        return _read_duckdb_table(*source)
    if isinstance(source, (str, Path)):
        return _read_file(Path(source))
    if type(source).__module__.startswith("pandas"):
        return pa.Table.from_pandas(source, preserve_index=False)
    if hasattr(source, "to_arrow"):  # polars and friends
        return source.to_arrow()
    raise GovernanceError(f"cannot register a {type(source).__name__}",
                          hint="Register a pyarrow.Table, a pandas DataFrame or a .parquet/.csv path.")


class EmbeddedDuckDB(Warehouse):
    """Tables held in a locked-down in-memory DuckDB. Picklable: it rebuilds from its registered sources."""

    dialect = "duckdb"
    catalog_name = CATALOG
    errors = (duckdb.Error,)

    def __init__(self, memory_limit: str = "2GB", threads: int = 2) -> None:
        self.memory_limit, self.threads = memory_limit, threads
        self._sources: dict[str, Source] = {}
        self._schema: dict[str, dict[str, str]] = {}
        self._lock = threading.RLock()
        self.connection = _locked_connection(memory_limit, threads)
        # Raw tables live here; the name is random per engine so that not even a query that bypassed the rewrite
        # could guess it.
        self.source_db = f"raw_{secrets.token_hex(8)}"
        self.connection.execute(f"CREATE SCHEMA {self.source_db}")

    @classmethod
    def from_path(cls, path: str | Path, **limits: Any) -> EmbeddedDuckDB:
        """A DuckDB database file (its `main` tables) or a folder of .parquet/.csv files (one table per file)."""
        path = Path(path).resolve()
        warehouse = cls(**limits)
        if path.is_dir():
            for file in sorted(p for p in path.iterdir() if p.suffix.lower() in _FILE_SUFFIXES):
                warehouse.register(file.stem, file)
        elif path.is_file():
            for table in _duckdb_tables(str(path)):
                warehouse.load(table, _read_duckdb_table(str(path), table), (str(path), table))
        else:
            raise GovernanceError(f"warehouse {path} does not exist",
                                  hint="Pass a DuckDB file, a folder of Parquet/CSV files or a postgresql:// URL.")
        return warehouse

    def register(self, name: str, source: Any) -> None:
        if not name or not _TABLE_NAME.fullmatch(name):
            raise GovernanceError(f"invalid table name {name!r}", hint="Use letters, digits and underscores.")
        table = to_arrow(source)
        # Paths are kept absolute so that a pickled warehouse re-reads the same file from another working directory.
        self.load(name, table, str(Path(source).resolve()) if isinstance(source, (str, Path)) else table)

    def load(self, name: str, table: pa.Table, source: Source) -> None:
        """Copy an Arrow table into the raw schema, remembering where it came from."""
        staging = f"__agentml_staging_{name}"
        with self._lock:
            self.connection.register(staging, table)
            try:
                self.connection.execute(f"CREATE OR REPLACE TABLE {self.source_db}.{quote_ident(name)} AS "
                                        f"SELECT * FROM {quote_ident(staging)}")
            finally:
                self.connection.unregister(staging)
            columns = {col: typ for col, typ, *_ in
                       self.connection.execute(f"DESCRIBE {self.source_db}.{quote_ident(name)}").fetchall()}
            # Copy-on-write: concurrent queries keep reading the mapping they started with.
            self._schema = {**self._schema, name: columns}
            self._sources[name] = source

    def schema(self) -> Mapping[str, Mapping[str, str]]:
        return self._schema

    def read(self, sql: str, wall: str) -> pa.Table:
        cursor = self.connection.cursor()
        try:
            cursor.execute(f"SET search_path = '{wall}'")
            return cursor.sql(sql).to_arrow_table()
        finally:
            cursor.close()

    def describe(self, sql: str, wall: str) -> dict[str, str]:
        cursor = self.connection.cursor()
        try:
            return {col: typ for col, typ, *_ in cursor.execute(f"DESCRIBE {sql}").fetchall()}
        finally:
            cursor.close()

    def estimate_rows(self, table: str) -> int | None:
        row = self.connection.cursor().execute(
            "SELECT estimated_size FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
            [self.source_db, table]).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def create_wall(self, name: str, views: Mapping[str, str]) -> None:
        with self._lock:
            self.connection.execute(f"CREATE SCHEMA IF NOT EXISTS {name}")
            for table, governed in views.items():
                self.connection.execute(f"CREATE OR REPLACE VIEW {name}.{quote_ident(table)} AS {governed}")

    def drop_wall(self, name: str) -> None:
        with self._lock:
            self.connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")

    def sanitize(self, error: BaseException) -> QueryError:
        return sanitize_error(error)  # type: ignore[arg-type]

    def close(self) -> None:
        self.connection.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.memory_limit, self.threads, list(self._sources.items())))

    def __repr__(self) -> str:
        return f"EmbeddedDuckDB(tables={list(self._schema)})"


def _rebuild(memory_limit: str, threads: int,
             sources: Iterable[tuple[str, Source]] | Mapping[str, Source]) -> EmbeddedDuckDB:
    warehouse = EmbeddedDuckDB(memory_limit, threads)
    for name, source in (sources.items() if isinstance(sources, Mapping) else sources):
        warehouse.load(name, to_arrow(source), source)
    return warehouse
