"""The embedded warehouse: a locked-down in-memory DuckDB over the warehouse's files, plus tables registered
admin-side through Arrow.

Raw tables live in a schema of their own whose (random) name no accepted query may use; principals' walls are
schemas of governed views. `from_path` does not copy data: a Parquet file becomes a raw view over `read_parquet`, a
DuckDB file is attached read-only (under a random name) and each of its tables becomes a raw view; DuckDB streams
them at query time, so no process holds a whole table unless a query asks for one. (CSV files are small by nature
and copied in once, with Arrow's type inference.) Defence in depth: external access is switched off as soon as the
files are opened, with DuckDB's `allowed_paths` naming exactly those files (no other file, URL, ATTACH, COPY or
extension install), extension autoload/autoinstall off, Python replacement scans off, and the configuration locked
so none of that can be switched back on.
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
        "autoload_known_extensions": False,
        "autoinstall_known_extensions": False,
        "allow_community_extensions": False,
        "allow_unsigned_extensions": False,
        "python_enable_replacements": False,
        "memory_limit": memory_limit,
        "threads": threads,
    }


def _connection(memory_limit: str, threads: int, files: list[str]) -> duckdb.DuckDBPyConnection:
    """A connection that may read exactly `files` (none: no file at all), still unlocked (see `_lock_down`)."""
    config = _lockdown_config(memory_limit, threads)
    if not files:
        return duckdb.connect(":memory:", config={**config, "enable_external_access": False})
    connection = duckdb.connect(":memory:", config=config)
    connection.execute("SET allowed_paths = ?", [files])
    return connection


def _lock_down(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute("SET enable_external_access = false")
    connection.execute("SET allow_extension_repositories = 'forbidden'")
    connection.execute("SET lock_configuration = true")


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
    """A locked-down in-memory DuckDB over file-backed tables (`files`: name -> a Parquet path, or (DuckDB file,
    table)) and tables registered through Arrow. Picklable: it rebuilds from its sources (files are re-opened, not
    copied)."""

    dialect = "duckdb"
    catalog_name = CATALOG
    errors = (duckdb.Error,)

    def __init__(self, memory_limit: str = "2GB", threads: int = 2,
                 files: Mapping[str, str | tuple[str, str]] | None = None) -> None:
        self.memory_limit, self.threads = memory_limit, threads
        self._sources: dict[str, Source] = {}
        self._schema: dict[str, dict[str, str]] = {}
        self._lock = threading.RLock()
        self._attached: dict[str, str] = {}  # DuckDB file -> the random name it is attached under
        files = dict(files or {})
        paths = sorted({f if isinstance(f, str) else f[0] for f in files.values()})
        self.connection = _connection(memory_limit, threads, paths)
        # Raw tables live here; the name is random per engine so that not even a query that bypassed the rewrite
        # could guess it.
        self.source_db = f"raw_{secrets.token_hex(8)}"
        self.connection.execute(f"CREATE SCHEMA {self.source_db}")
        try:
            self._open_files(files)
        finally:
            _lock_down(self.connection)

    def _open_files(self, files: Mapping[str, str | tuple[str, str]]) -> None:
        """A raw view per file-backed table: over read_parquet, or over a DuckDB file attached read-only."""
        attached = self._attached
        for name, source in files.items():
            if isinstance(source, str):
                reader = f"read_parquet({_literal(source)})"
            else:
                database, table = source
                if database not in attached:
                    attached[database] = f"src_{secrets.token_hex(8)}"
                    self.connection.execute(f"ATTACH {_literal(database)} AS {attached[database]} (READ_ONLY)")
                reader = f"{attached[database]}.main.{quote_ident(table)}"
            self.connection.execute(f"CREATE VIEW {self.source_db}.{quote_ident(name)} AS SELECT * FROM {reader}")
            self._remember(name, source)

    @classmethod
    def from_path(cls, path: str | Path, **limits: Any) -> EmbeddedDuckDB:
        """A DuckDB database file (its `main` tables) or a folder of .parquet/.csv files (one table per file)."""
        path = Path(path).resolve()
        files: dict[str, str | tuple[str, str]] = {}
        csvs: list[Path] = []
        if path.is_dir():
            for file in sorted(p for p in path.iterdir() if p.suffix.lower() in _FILE_SUFFIXES):
                if not _TABLE_NAME.fullmatch(file.stem):
                    raise GovernanceError(f"invalid table name {file.stem!r} (from {file.name})",
                                          hint="Name warehouse files with letters, digits and underscores.")
                if _FILE_SUFFIXES[file.suffix.lower()] == "parquet":
                    files[file.stem] = str(file)
                else:
                    csvs.append(file)
        elif path.is_file():
            files = {table: (str(path), table) for table in _duckdb_tables(str(path))}
        else:
            raise GovernanceError(f"warehouse {path} does not exist",
                                  hint="Pass a DuckDB file, a folder of Parquet/CSV files or a postgresql:// URL.")
        warehouse = cls(files=files, **limits)
        for file in csvs:
            warehouse.register(file.stem, file)
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
            self._remember(name, source)

    def _remember(self, name: str, source: Source) -> None:
        """Record a raw table's columns and where it came from (to rebuild a pickled copy)."""
        with self._lock:
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
        source = self._sources.get(table)
        if isinstance(source, str) and _is_file_backed(source):
            return int(pq.ParquetFile(source).metadata.num_rows)  # the footer: no rows read
        database, schema, name = (self._attached[source[0]], "main", source[1]) if isinstance(source, tuple) \
            else (CATALOG, self.source_db, table)
        row = self.connection.cursor().execute(
            "SELECT estimated_size FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? "
            "AND table_name = ?", [database, schema, name]).fetchone()
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


def _is_file_backed(source: Source) -> bool:
    """A Parquet path or a (DuckDB file, table): opened in place, never copied."""
    return isinstance(source, tuple) or (isinstance(source, str) and
                                         _FILE_SUFFIXES.get(Path(source).suffix.lower()) == "parquet")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _rebuild(memory_limit: str, threads: int,
             sources: Iterable[tuple[str, Source]] | Mapping[str, Source]) -> EmbeddedDuckDB:
    items = list(sources.items() if isinstance(sources, Mapping) else sources)
    files = {name: source for name, source in items if isinstance(source, str | tuple) and _is_file_backed(source)}
    warehouse = EmbeddedDuckDB(memory_limit, threads, files=files)
    for name, source in items:
        if not _is_file_backed(source):
            warehouse.load(name, to_arrow(source), source)
    return warehouse
