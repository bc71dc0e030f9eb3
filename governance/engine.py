"""Engine: a locked-down in-memory DuckDB that only ever runs governed SQL.

Two walls. (1) The rewrite (`enforce`): every table reference becomes a governance wrapper that reads the raw table
from a schema of its own, whose (random) name no accepted query may use. (2) Underneath, every query runs with its
search path set to the principal's own schema of governed views (the same wrappers, one view per visible table), so
a table name the rewrite missed resolves to governed rows and columns, never to raw data.

Defence in depth: the connection also has external access off (no files, URLs, ATTACH, COPY, extension installs),
extension autoload/autoinstall off, Python replacement scans off, and the configuration locked so none of that can be
switched back on. Data is loaded admin-side through Arrow.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from governance.audit import AuditLog, Verdict, as_audit_log
from governance.enforce import enforce
from governance.errors import GovernanceError, PolicyViolation
from governance.policies import Policies
from governance.principal import Principal
from governance.shards import Shard

CATALOG, DB = "memory", "main"
REWRITE_CACHE_SIZE = 512
# DuckDB errors raised before any row is read: they can only echo the query and catalog names, never data.
_COMPILE_ERRORS = (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException)
_STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")
_FILE_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}

# A registered source, kept so that a pickled Engine can rebuild itself: an Arrow table, a Parquet/CSV path, or
# (duckdb file path, table name).
Source: TypeAlias = "pa.Table | str | tuple[str, str]"


class QueryError(GovernanceError):
    """A governed query was allowed but failed in the database; the message carries no data values."""


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
    if isinstance(error, _COMPILE_ERRORS):
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        return QueryError(f"the query failed: {_STRING_LITERAL.sub(chr(39) * 2, first)}",
                          hint="Fix the query; eng.catalog(principal) lists tables and columns.")
    kind = type(error).__name__.removesuffix("Exception") or "Error"
    return QueryError(f"the query failed while computing values ({kind} error); details are hidden because they "
                      "can contain data values", hint="Guard casts with TRY_CAST and check types and ranges.",
                      error_class=kind)


def _read_file(path: Path) -> pa.Table:
    kind = _FILE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise GovernanceError(f"cannot register {path.name}: unknown file type",
                              hint="Register .parquet or .csv files, or an Arrow table.")
    return pq.read_table(path) if kind == "parquet" else pa_csv.read_csv(path)


def _read_duckdb_table(path: str, table: str) -> pa.Table:
    with duckdb.connect(path, read_only=True) as source:
        return source.sql(f'SELECT * FROM "{table.replace(chr(34), chr(34) * 2)}"').to_arrow_table()


def _duckdb_tables(path: str) -> list[str]:
    with duckdb.connect(path, read_only=True) as source:
        rows = source.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                              "AND table_type = 'BASE TABLE' ORDER BY table_name").fetchall()
    return [row[0] for row in rows]


def _to_arrow(source: Any) -> pa.Table:
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


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Engine:
    """Governed query engine over a locked-down in-memory DuckDB. Picklable: it rebuilds from its policies and
    registered sources (Ray ships it to tasks). Thread-safe: every query runs on its own cursor."""

    def __init__(self, policies: Policies, audit: AuditLog | str | Path | None = None, *,
                 memory_limit: str = "2GB", threads: int = 2) -> None:
        self.policies = policies
        self.audit = as_audit_log(audit)
        self.memory_limit, self.threads = memory_limit, threads
        self._sources: dict[str, Source] = {}
        self._schema: dict[str, dict[str, str]] = {}
        self._lock = threading.RLock()
        # (policies, schema, principal, sql) -> governed SQL. Rewriting costs milliseconds (parse, qualify, rewrite):
        # as much as a small query. Cleared when a table is (re)registered or the policies are replaced.
        self._rewrites: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._rewrites_for: tuple[Policies, dict[str, dict[str, str]]] | None = None
        self._connection = _locked_connection(memory_limit, threads)
        # Raw tables live here; the name is random per engine so that not even a query that bypassed the rewrite
        # could guess it. Principals' governed views live in schemas named by `_wall`.
        self._raw = f"raw_{secrets.token_hex(8)}"
        self._connection.execute(f"CREATE SCHEMA {self._raw}")
        self._walls: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------ admin side
    def register(self, name: str, source: Any) -> None:
        """Load a table admin-side (policies still decide who sees it): a pyarrow.Table, a pandas DataFrame,
        or a path to a .parquet/.csv file. Replaces a table of the same name."""
        if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise GovernanceError(f"invalid table name {name!r}", hint="Use letters, digits and underscores.")
        table = _to_arrow(source)
        # Paths are kept absolute so that a pickled Engine re-reads the same file from another working directory.
        self._load(name, table, str(Path(source).resolve()) if isinstance(source, (str, Path)) else table)

    def _load(self, name: str, table: pa.Table, source: Source) -> None:
        staging = f"__agentml_staging_{name}"
        with self._lock:
            self._connection.register(staging, table)
            try:
                self._connection.execute(f"CREATE OR REPLACE TABLE {self._raw}.{_quote(name)} AS "
                                         f"SELECT * FROM {_quote(staging)}")
            finally:
                self._connection.unregister(staging)
            columns = {col: typ for col, typ, *_ in
                       self._connection.execute(f"DESCRIBE {self._raw}.{_quote(name)}").fetchall()}
            # Copy-on-write: concurrent queries keep reading the mapping they started with.
            self._schema = {**self._schema, name: columns}
            self._sources[name] = source

    @classmethod
    def from_warehouse(cls, path: str | Path, policies: Policies, audit: AuditLog | str | Path | None = None,
                       **limits: Any) -> Engine:
        """An Engine over a warehouse: a DuckDB database file (its `main` tables) or a folder of .parquet/.csv
        files (one table per file, named after the file)."""
        path = Path(path).resolve()
        engine = cls(policies, audit, **limits)
        if path.is_dir():
            for file in sorted(p for p in path.iterdir() if p.suffix.lower() in _FILE_SUFFIXES):
                engine.register(file.stem, file)
        elif path.is_file():
            for table in _duckdb_tables(str(path)):
                engine._load(table, _read_duckdb_table(str(path), table), (str(path), table))
        else:
            raise GovernanceError(f"warehouse {path} does not exist", hint="Pass a DuckDB file or a folder.")
        return engine

    @property
    def tables(self) -> list[str]:
        """Names of every registered table (admin view; principals see `catalog()`)."""
        return list(self._schema)

    # ------------------------------------------------------------------------------------------ governed side
    def rewrite(self, sql: str, principal: Principal) -> str:
        """The governed SQL for `sql` as `principal`, without running it (raises PolicyViolation).

        Results are remembered per (policies, tables, principal, SQL); refusals are not, so they are decided anew.
        """
        policies, schema = self.policies, self._schema
        key = (principal.model_dump_json(), sql)
        with self._lock:
            self._forget_if_stale(policies, schema)
            cached = self._rewrites.get(key)
            if cached is not None:
                self._rewrites.move_to_end(key)
                return cached
        rewritten = enforce(sql, principal, policies, schema, "duckdb", catalog=CATALOG, db=DB, source_db=self._raw)
        with self._lock:
            if self._remembers_for(policies, schema):  # not if a table or the policies changed meanwhile
                self._rewrites[key] = rewritten
                if len(self._rewrites) > REWRITE_CACHE_SIZE:
                    self._rewrites.popitem(last=False)
        return rewritten

    def _forget_if_stale(self, policies: Policies, schema: dict[str, dict[str, str]]) -> None:
        """Drop remembered rewrites and walls made with other policies or tables (call holding the lock)."""
        if not self._remembers_for(policies, schema):
            self._rewrites.clear()
            self._drop_walls()
            self._rewrites_for = (policies, schema)  # held, so their ids cannot be reused while cached

    def _remembers_for(self, policies: Policies, schema: dict[str, dict[str, str]]) -> bool:
        """Whether the remembered rewrites were made with these very policies and tables."""
        return self._rewrites_for is not None and self._rewrites_for[0] is policies \
            and self._rewrites_for[1] is schema

    def query(self, sql: str, principal: Principal, *, shard: Shard | None = None) -> pa.Table:
        """Run `sql` as `principal` and return the rows they may see (only `shard`'s part of them when given: see
        `governance.shards`). Every call is audited."""
        def record(verdict: Verdict, **details: Any) -> None:
            self.audit.append(user=principal.user, roles=principal.roles, sql=sql, verdict=verdict,
                              detail={"shard": str(shard)} if shard is not None else None, **details)

        try:
            rewritten = self.rewrite(sql, principal)
        except GovernanceError as err:
            record("denied", reason=err.message)
            raise
        if shard is not None:
            rewritten = shard.wrap(rewritten, "duckdb")
        try:
            result = self._run(rewritten, principal)
        except duckdb.Error as err:
            error = sanitize_error(err)
            record("error", rewritten=rewritten, reason=error.message)
            raise error from None
        record("allowed", rewritten=rewritten, rows=result.num_rows)
        return result

    def _run(self, rewritten: str, principal: Principal) -> pa.Table:
        """Run SQL on a cursor whose search path is the principal's governed views (the second wall).

        Called with the rewritten SQL; tests call it with unrewritten SQL to show the second wall alone holds."""
        wall = self._wall(principal)
        cursor = self._connection.cursor()
        try:
            cursor.execute(f"SET search_path = '{wall}'")
            return cursor.sql(rewritten).to_arrow_table()
        finally:
            cursor.close()

    def _wall(self, principal: Principal) -> str:
        """The principal's schema of governed views, built on first use: one view per table they may read, each the
        rewrite of `SELECT * FROM table`. Rebuilt when tables or policies change."""
        key = principal.model_dump_json()
        with self._lock:
            self._forget_if_stale(self.policies, self._schema)
            if key in self._walls:
                return self._walls[key]
            wall = "gov_" + hashlib.sha256(f"{self._raw}|{key}".encode()).hexdigest()[:20]
            self._connection.execute(f"CREATE SCHEMA IF NOT EXISTS {wall}")
            for name in self._schema:
                try:
                    governed = self.rewrite(f"SELECT * FROM {_quote(name)}", principal)
                except PolicyViolation:
                    continue  # invisible to this principal: no view, so the name does not resolve
                self._connection.execute(f"CREATE OR REPLACE VIEW {wall}.{_quote(name)} AS {governed}")
            self._walls[key] = wall
            return wall

    def _drop_walls(self) -> None:
        with self._lock:
            for wall in self._walls.values():
                self._connection.execute(f"DROP SCHEMA IF EXISTS {wall} CASCADE")
            self._walls.clear()

    def catalog(self, principal: Principal) -> dict[str, dict[str, str]]:
        """Tables and columns (with DuckDB types, masks applied) that `principal` may read."""
        visible: dict[str, dict[str, str]] = {}
        for name in self._schema:
            try:
                rewritten = self.rewrite(f"SELECT * FROM {_quote(name)}", principal)
            except PolicyViolation:
                continue
            cursor = self._connection.cursor()
            try:
                visible[name] = {col: typ for col, typ, *_ in cursor.execute(f"DESCRIBE {rewritten}").fetchall()}
            finally:
                cursor.close()
        return visible

    # ------------------------------------------------------------------------------------------ pickling
    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.policies, self.audit, self.memory_limit, self.threads, list(self._sources.items())))

    def __repr__(self) -> str:
        return f"Engine(tables={self.tables}, audit={self.audit!r})"


def _rebuild(policies: Policies, audit: AuditLog, memory_limit: str, threads: int,
             sources: Iterable[tuple[str, Source]] | Mapping[str, Source]) -> Engine:
    engine = Engine(policies, audit, memory_limit=memory_limit, threads=threads)
    for name, source in (sources.items() if isinstance(sources, Mapping) else sources):
        engine._load(name, _to_arrow(source), source)
    return engine
