"""The one small interface every warehouse implements, and the helpers they share (URLs, secrets, errors).

A warehouse gives governance four things: its raw catalog (admin side), the dialect governed SQL must be printed in,
a governed read (run already-rewritten SQL under the principal's second wall and return Arrow) and a cheap row-count
estimate per table. The rewrite itself (`enforce`) and the caching of rewrites and walls stay in `Engine`.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa

from governance.errors import Category, GovernanceError, QueryError

# Where a governed query's catalog tables are named by queries (DuckDB SQL: `main.customers` or `customers`).
QUERY_DB = "main"
_STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class WarehouseUnavailable(GovernanceError):
    """The warehouse cannot be reached (network, credentials, missing driver); the message names no secret."""

    category: ClassVar[Category] = "unavailable"
    code = "warehouse_unavailable"


def url_scheme(source: object) -> str | None:
    """The scheme of a warehouse URL (`postgresql` for `postgresql://...`), None for a path."""
    match = _SCHEME.match(source) if isinstance(source, str) else None
    return match.group(1).lower() if match else None


def redact_url(url: str) -> str:
    """The URL with its password (and any `password=`/`token=` query value) replaced by `***`, for messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = re.sub(r"(?i)((?:password|token|secret|private_key[a-z_]*)=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def has_secret(url: str) -> bool:
    """True when a URL carries a password or token (it must then travel in an environment, never a command line)."""
    return redact_url(url) != url


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier (DuckDB, PostgreSQL, Snowflake)."""
    return '"' + name.replace('"', '""') + '"'


def first_line_without_literals(error: BaseException) -> str:
    """The first line of a compile-time error message with string literals blanked (names stay, values go)."""
    text = str(error)
    first = text.splitlines()[0] if text else type(error).__name__
    return _STRING_LITERAL.sub("''", first)


def compile_error(error: BaseException) -> QueryError:
    """A QueryError for an error raised before any row was read: it can only echo the query and catalog names."""
    return QueryError(f"the query failed: {first_line_without_literals(error)}",
                      hint="Fix the query; eng.catalog(principal) lists tables and columns.")


def runtime_error(error: BaseException, kind: str | None = None) -> QueryError:
    """A QueryError for an error raised while computing values: those can quote row values, so only the kind stays."""
    kind = kind or type(error).__name__.removesuffix("Exception") or "Error"
    return QueryError(f"the query failed while computing values ({kind} error); details are hidden because they "
                      "can contain data values", hint="Guard casts with TRY_CAST and check types and ranges.",
                      error_class=kind)


def missing_driver(package: str, extra: str) -> WarehouseUnavailable:
    return WarehouseUnavailable(f"this warehouse needs the Python package {package!r}, which is not installed",
                                hint=f"pip install {package}  (or: pip install 'agentml[{extra}]')")


class Warehouse(ABC):
    """A warehouse behind governance. Implementations are picklable (a Ray task reconnects from what they keep)
    and thread-safe (`read` may be called from several threads at once)."""

    dialect: ClassVar[str]  # the sqlglot dialect governed SQL is printed in
    catalog_name: str | None = None  # the catalog part of fully qualified raw tables (enforce's `catalog`)
    query_db: str = QUERY_DB  # the schema name queries may qualify tables with (enforce's `db`)
    source_db: str  # where the governance wrappers read the raw tables (enforce's `source_db`)
    errors: tuple[type[BaseException], ...] = ()  # what `read`/`describe` raise for a query that failed

    @abstractmethod
    def schema(self) -> Mapping[str, Mapping[str, str]]:
        """The raw catalog, admin side: {table: {column: DuckDB-style type}}. The same object until it changes
        (the engine compares identities to know when its remembered rewrites and walls are stale)."""

    @abstractmethod
    def read(self, sql: str, wall: str) -> pa.Table:
        """Run governed SQL with unqualified table names resolving in schema `wall` (the second wall)."""

    @abstractmethod
    def describe(self, sql: str, wall: str) -> dict[str, str]:
        """{column: DuckDB-style type} of a governed query's result, without reading its rows."""

    @abstractmethod
    def estimate_rows(self, table: str) -> int | None:
        """A cheap estimate of a raw table's row count from metadata (None when unknown)."""

    @abstractmethod
    def create_wall(self, name: str, views: Mapping[str, str]) -> None:
        """Make schema `name` hold one view per entry (table name -> governed SQL). Names are content hashes, so a
        wall that exists already holds exactly these views."""

    def drop_wall(self, name: str) -> None:  # noqa: B027 - optional hook: a shared warehouse keeps its walls
        """Forget a wall this process made (a shared warehouse keeps it: other processes may use it)."""

    @abstractmethod
    def sanitize(self, error: BaseException) -> GovernanceError:
        """A message-safe error for one of `errors` (no data values, no secrets)."""

    def register(self, name: str, source: Any) -> None:
        """Load a table admin-side; only the embedded warehouse can."""
        raise GovernanceError(f"cannot register table {name!r} in a {self.dialect} warehouse",
                              hint="Load tables into the warehouse itself; register() is for the embedded DuckDB.")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
