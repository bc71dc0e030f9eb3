"""Engine: governed queries over a warehouse (`governance.warehouses`), which only ever runs governed SQL.

Two walls. (1) The rewrite (`enforce`): every table reference becomes a governance wrapper that reads the raw table
from a schema no accepted query may name; queries are DuckDB SQL, and the governed SQL is printed in the
warehouse's dialect (refused when it does not transpile faithfully). (2) Underneath, every query runs with its search
path set to a schema of governed views (the same wrappers, one view per table the principal may read), so a table
name the rewrite missed resolves to governed rows and columns, never to raw data.

The default warehouse is the embedded, locked-down in-memory DuckDB (`Engine(policies)`, `register`);
`Engine.from_warehouse` also opens PostgreSQL and cloud warehouses by URL, where the governed SQL runs in the database.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from governance.audit import AuditLog, Verdict, as_audit_log
from governance.enforce import enforce
from governance.errors import GovernanceError, PolicyViolation, QueryError
from governance.policies import Policies
from governance.principal import Principal
from governance.schema import GovernedSchema
from governance.shards import Shard
from governance.warehouses import EmbeddedDuckDB, Warehouse, open_warehouse, sanitize_error
from governance.warehouses.base import quote_ident

__all__ = ["Engine", "QueryError", "sanitize_error"]

QUERY_DIALECT = "duckdb"  # the dialect queries and policy snippets are written in, whatever the warehouse speaks
REWRITE_CACHE_SIZE = 512


class Engine:
    """Governed query engine over a warehouse (by default an embedded, locked-down in-memory DuckDB). Picklable:
    it rebuilds its warehouse from its sources or URL (Ray ships it to tasks). Thread-safe."""

    def __init__(self, policies: Policies, audit: AuditLog | str | Path | None = None, *,
                 memory_limit: str = "2GB", threads: int = 2, warehouse: Warehouse | None = None) -> None:
        self.policies = policies
        self.audit = as_audit_log(audit)
        self.warehouse = warehouse if warehouse is not None else EmbeddedDuckDB(memory_limit, threads)
        self._lock = threading.RLock()
        # (principal, sql) -> governed SQL. Rewriting costs milliseconds (parse, qualify, rewrite): as much as a small
        # query. Cleared when the tables or the policies change.
        self._rewrites: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._rewrites_for: tuple[Policies, Mapping[str, Mapping[str, str]]] | None = None
        self._walls: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------ admin side
    def register(self, name: str, source: Any) -> None:
        """Load a table admin-side (policies still decide who sees it): a pyarrow.Table, a pandas DataFrame,
        or a path to a .parquet/.csv file. Replaces a table of the same name. Embedded warehouse only."""
        self.warehouse.register(name, source)

    @classmethod
    def from_warehouse(cls, source: str | Path, policies: Policies, audit: AuditLog | str | Path | None = None,
                       **limits: Any) -> Engine:
        """An Engine over a warehouse: a DuckDB database file (its `main` tables), a folder of .parquet/.csv files
        (one table per file, copied into the embedded DuckDB), or a URL: `postgresql://user:pw@host/db` (queries
        run in PostgreSQL), `snowflake://`, `bigquery://`, `databricks://` (see governance.warehouses)."""
        return cls(policies, audit, warehouse=open_warehouse(source, **limits))

    @property
    def tables(self) -> list[str]:
        """Names of every table of the warehouse (admin view; principals see `catalog()`)."""
        return list(self.warehouse.schema())

    @property
    def dialect(self) -> str:
        """The sqlglot dialect of governed SQL (what `rewrite` returns); queries are always DuckDB SQL."""
        return self.warehouse.dialect

    # Settings and handles of the embedded warehouse, kept for callers and tests that knew the DuckDB-only engine.
    @property
    def memory_limit(self) -> str | None:
        return getattr(self.warehouse, "memory_limit", None)

    @property
    def threads(self) -> int | None:
        return getattr(self.warehouse, "threads", None)

    @property
    def _connection(self) -> duckdb.DuckDBPyConnection:
        return self.warehouse.connection  # type: ignore[attr-defined]

    @property
    def _raw(self) -> str:
        return self.warehouse.source_db

    # ------------------------------------------------------------------------------------------ governed side
    def rewrite(self, sql: str, principal: Principal) -> str:
        """The governed SQL for `sql` as `principal` (in `self.dialect`), without running it (raises
        PolicyViolation). Results are remembered per (policies, tables, principal, SQL); refusals are not."""
        policies, schema = self.policies, self.warehouse.schema()
        key = (principal.model_dump_json(), sql)
        with self._lock:
            self._forget_if_stale(policies, schema)
            cached = self._rewrites.get(key)
            if cached is not None:
                self._rewrites.move_to_end(key)
                return cached
        wh = self.warehouse
        rewritten = enforce(sql, principal, policies, schema, QUERY_DIALECT, write=wh.dialect,
                            catalog=wh.catalog_name, db=wh.query_db, source_db=wh.source_db)
        with self._lock:
            if self._remembers_for(policies, schema):  # not if a table or the policies changed meanwhile
                self._rewrites[key] = rewritten
                if len(self._rewrites) > REWRITE_CACHE_SIZE:
                    self._rewrites.popitem(last=False)
        return rewritten

    def _forget_if_stale(self, policies: Policies, schema: Mapping[str, Mapping[str, str]]) -> None:
        """Drop remembered rewrites and walls made with other policies or tables (call holding the lock)."""
        if not self._remembers_for(policies, schema):
            self._rewrites.clear()
            self._drop_walls()
            self._rewrites_for = (policies, schema)  # held, so their ids cannot be reused while cached

    def _remembers_for(self, policies: Policies, schema: Mapping[str, Mapping[str, str]]) -> bool:
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
            rewritten = shard.wrap(rewritten, self.dialect)
        try:
            result = self._run(rewritten, principal)
        except self.warehouse.errors as err:
            error = self.warehouse.sanitize(err)
            record("error", rewritten=rewritten, reason=error.message)
            raise error from None
        record("allowed", rewritten=rewritten, rows=result.num_rows)
        return result

    def _run(self, rewritten: str, principal: Principal) -> pa.Table:
        """Run SQL with table names resolving to the principal's governed views (the second wall).

        Called with the rewritten SQL; tests call it with unrewritten SQL to show the second wall alone holds."""
        return self.warehouse.read(rewritten, self._wall(principal))

    def _wall(self, principal: Principal) -> str:
        """The principal's schema of governed views, built on first use: one view per table they may read, each the
        rewrite of `SELECT * FROM table`. Its name hashes the views, so principals with the same rights share one
        and a change of tables or policies makes another."""
        key = principal.model_dump_json()
        with self._lock:
            self._forget_if_stale(self.policies, self.warehouse.schema())
            if key in self._walls:
                return self._walls[key]
            views = {}
            for name in self.warehouse.schema():
                try:
                    views[name] = self.rewrite(f"SELECT * FROM {quote_ident(name)}", principal)
                except PolicyViolation:
                    continue  # invisible to this principal: no view, so the name does not resolve
            digest = hashlib.sha256(json.dumps([self.warehouse.source_db, views], sort_keys=True).encode())
            wall = "gov_" + digest.hexdigest()[:20]
            if wall not in self._walls.values():
                self.warehouse.create_wall(wall, views)
            self._walls[key] = wall
            return wall

    def _drop_walls(self) -> None:
        with self._lock:
            for wall in set(self._walls.values()):
                self.warehouse.drop_wall(wall)
            self._walls.clear()

    def catalog(self, principal: Principal) -> dict[str, dict[str, str]]:
        """Tables and columns (with DuckDB-style types, masks applied) that `principal` may read."""
        visible: dict[str, dict[str, str]] = {}
        for name in self.warehouse.schema():
            try:
                rewritten = self.rewrite(f"SELECT * FROM {quote_ident(name)}", principal)
            except PolicyViolation:
                continue
            try:
                visible[name] = self.warehouse.describe(rewritten, self._wall(principal))
            except self.warehouse.errors as err:
                raise self.warehouse.sanitize(err) from None
        return visible

    def estimate_rows(self, table: str, principal: Principal) -> int | None:
        """About how many rows of `table` the principal may read, for previews: the warehouse's metadata estimate
        when no row filter applies to them (free), else a governed `count(*)` run in the warehouse (so no principal
        learns the size of rows hidden from them). Raises PolicyViolation for a table they may not read."""
        schema = GovernedSchema(self.warehouse.schema(), self.policies, QUERY_DIALECT)
        info = schema.tables.get(schema.norm(table, table=True))
        rights = schema.rights(info, principal)
        if info is None or not rights.visible:
            raise PolicyViolation(f"table {table!r} does not exist or is not visible to you", kind="table",
                                  hint="Use eng.catalog(principal) to list the tables you may query.", table=table)
        if rights.all_rows:
            estimate = self.warehouse.estimate_rows(info.name)
            if estimate is not None:
                return estimate
        counted = self.query(f"SELECT count(*) AS n FROM {quote_ident(info.name)}", principal)
        return int(counted.column("n")[0].as_py())

    # ------------------------------------------------------------------------------------------ pickling
    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.policies, self.audit, self.warehouse))

    def __repr__(self) -> str:
        return f"Engine(warehouse={self.warehouse!r}, audit={self.audit!r})"


def _rebuild(policies: Policies, audit: AuditLog, warehouse: Warehouse) -> Engine:
    return Engine(policies, audit, warehouse=warehouse)
