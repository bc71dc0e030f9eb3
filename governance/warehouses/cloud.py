"""Cloud warehouses: Snowflake, BigQuery and Databricks SQL, through their official Python connectors.

**Not run against live accounts.** None of these was tested against a real Snowflake, BigQuery or Databricks account
(there are none here). What is tested (tests/governance/test_gov_cloud_dialects.py, pure sqlglot, no network): the
governed rewrite of representative queries in each dialect parses back in that dialect and keeps its row filters and
masks, and the dialects' identifier case rules still fail closed. The connection code below follows the connectors'
documented APIs; treat it as a starting point to verify on a real account before relying on it.

The drivers are optional extras (`pip install 'agentml[snowflake]'`, `[bigquery]`, `[databricks]`), imported only
when such a warehouse is opened; a missing one is a clear error naming the package.

The second wall is the same as PostgreSQL's: per principal, a schema (BigQuery: dataset) `gov_<hash>` of governed
views (Snowflake: SECURE views), and queries run with that schema as the session's default, so an unqualified name
resolves to a governed view. The connecting identity needs the right to create schemas and views.
"""
from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pyarrow as pa

from governance.errors import GovernanceError
from governance.warehouses.base import Warehouse, missing_driver, redact_url, runtime_error

_TYPE_RULES = (
    (re.compile(r"^(NUMBER|DECIMAL|NUMERIC)\(\d+,\s*0\)$|^(BIGINT|INT|INTEGER|INT64|SMALLINT|TINYINT|BYTEINT|LONG)"),
     "BIGINT"),
    (re.compile(r"^(NUMBER|DECIMAL|NUMERIC|BIGNUMERIC|FLOAT|DOUBLE|REAL|FLOAT64)"), "DOUBLE"),
    (re.compile(r"^(TEXT|STRING|VARCHAR|CHAR)"), "VARCHAR"),
    (re.compile(r"^BOOL"), "BOOLEAN"),
    (re.compile(r"^DATE$"), "DATE"),
    (re.compile(r"^(TIMESTAMP|DATETIME)"), "TIMESTAMP"),
)


def duckdb_type(name: str) -> str:
    """A DuckDB-style type name (what the planner understands) for a warehouse's information_schema type."""
    upper = name.upper().strip()
    return next((duck for pattern, duck in _TYPE_RULES if pattern.search(upper)), upper)


def _backtick(name: str) -> str:
    return "`" + name.replace("`", "\\`") + "`"


def _dq(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _DbApiWarehouse(Warehouse):
    """A DB-API 2.0 warehouse with information_schema, CREATE SCHEMA/VIEW and `USE SCHEMA` (Snowflake,
    Databricks). One connection, used under a lock (session state: the current schema)."""

    quote = staticmethod(_dq)
    view_kind = "VIEW"

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.RLock()
        self._conn = self._connect()
        self._schema = self._read_schema()

    def _connect(self) -> Any:
        raise NotImplementedError

    def _arrow(self, cursor: Any) -> pa.Table:
        raise NotImplementedError

    def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            cursor = self._conn.cursor()
            try:
                cursor.execute(sql, params or None)
                return list(cursor.fetchall())
            finally:
                cursor.close()

    def _qualified_schema(self, schema: str) -> str:
        return f"{self.quote(self.catalog_name or '')}.{self.quote(schema)}"

    def _read_schema(self) -> dict[str, dict[str, str]]:
        rows = self._fetch(f"SELECT table_name, column_name, data_type FROM {self.quote(self.catalog_name or '')}"
                           ".information_schema.columns WHERE table_schema = %s "
                           "ORDER BY table_name, ordinal_position", (self.source_db,))
        tables: dict[str, dict[str, str]] = {}
        for table, column, typ in rows:
            tables.setdefault(table, {})[column] = duckdb_type(typ)
        return tables

    def schema(self) -> Mapping[str, Mapping[str, str]]:
        return self._schema

    def read(self, sql: str, wall: str) -> pa.Table:
        with self._lock:
            cursor = self._conn.cursor()
            try:
                cursor.execute(f"USE SCHEMA {self._qualified_schema(wall)}")
                cursor.execute(sql)
                return self._arrow(cursor)
            finally:
                cursor.close()

    def describe(self, sql: str, wall: str) -> dict[str, str]:
        table = self.read(f"SELECT * FROM ({sql}) AS agentml_q LIMIT 0", wall)
        return {field.name: duckdb_type(str(field.type)) for field in table.schema}

    def estimate_rows(self, table: str) -> int | None:
        return None

    def create_wall(self, name: str, views: Mapping[str, str]) -> None:
        with self._lock:
            self._fetch(f"CREATE SCHEMA IF NOT EXISTS {self._qualified_schema(name)}")
            for table, governed in views.items():
                self._fetch(f"CREATE OR REPLACE {self.view_kind} {self._qualified_schema(name)}.{self.quote(table)} "
                            f"AS {governed}")

    def sanitize(self, error: BaseException) -> GovernanceError:
        # The drivers' messages quote the SQL and sometimes values: keep the error's class only.
        return runtime_error(error, type(error).__name__)

    def close(self) -> None:
        self._conn.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._url,))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_url(self._url)})"


class SnowflakeWarehouse(_DbApiWarehouse):
    """Snowflake (snowflake-connector-python; **not run against a live account**).
    `snowflake://user:password@account/database/schema?warehouse=WH&role=ROLE`."""

    dialect = "snowflake"
    view_kind = "SECURE VIEW"

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        database, _, schema = parts.path.strip("/").partition("/")
        self.catalog_name, self.source_db = database, schema or "PUBLIC"
        self._options = dict(parse_qsl(parts.query))
        super().__init__(url)

    def _connect(self) -> Any:
        try:
            import snowflake.connector
        except ImportError:
            raise missing_driver("snowflake-connector-python", "snowflake") from None
        self.errors = (snowflake.connector.errors.Error,)
        parts = urlsplit(self._url)
        return snowflake.connector.connect(user=unquote(parts.username or ""), password=unquote(parts.password or ""),
                                           account=parts.hostname, database=self.catalog_name,
                                           schema=self.source_db, **self._options)

    def _arrow(self, cursor: Any) -> pa.Table:
        return cursor.fetch_arrow_all(force_return_table=True)

    def estimate_rows(self, table: str) -> int | None:
        rows = self._fetch(f"SELECT row_count FROM {_dq(self.catalog_name or '')}.information_schema.tables "
                           "WHERE table_schema = %s AND table_name = %s", (self.source_db, table))
        return int(rows[0][0]) if rows and rows[0][0] is not None else None


class DatabricksWarehouse(_DbApiWarehouse):
    """Databricks SQL (databricks-sql-connector; **not run against a live workspace**).
    `databricks://token:<access token>@<server hostname>/<http path>?catalog=main&schema=default`."""

    dialect = "databricks"
    quote = staticmethod(_backtick)

    def __init__(self, url: str) -> None:
        options = dict(parse_qsl(urlsplit(url).query))
        self.catalog_name, self.source_db = options.get("catalog", "main"), options.get("schema", "default")
        super().__init__(url)

    def _connect(self) -> Any:
        try:
            # by name: the test lock's databricks-sdk (from mlflow) owns the `databricks` namespace without `sql`
            databricks_sql: Any = importlib.import_module("databricks.sql")
        except ImportError:
            raise missing_driver("databricks-sql-connector", "databricks") from None
        self.errors = (databricks_sql.Error,)
        parts = urlsplit(self._url)
        return databricks_sql.connect(server_hostname=parts.hostname, http_path=parts.path,
                                      access_token=unquote(parts.password or ""))

    def _arrow(self, cursor: Any) -> pa.Table:
        return cursor.fetchall_arrow()


class BigQueryWarehouse(Warehouse):
    """BigQuery (google-cloud-bigquery, Application Default Credentials; **not run against a live project**).
    `bigquery://project/dataset`. Walls are datasets `gov_<hash>` in the same project."""

    dialect = "bigquery"

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._url = url
        self.project, self.source_db = parts.hostname or "", parts.path.strip("/")
        self.catalog_name = self.project
        try:
            from google.api_core import exceptions
            from google.cloud import bigquery
        except ImportError:
            raise missing_driver("google-cloud-bigquery", "bigquery") from None
        self._bigquery = bigquery
        self.errors = (exceptions.GoogleAPIError,)
        self._client = bigquery.Client(project=self.catalog_name)
        rows = self._client.query(
            f"SELECT table_name, column_name, data_type FROM "
            f"{_backtick(self.project)}.{_backtick(self.source_db)}.INFORMATION_SCHEMA.COLUMNS "
            "ORDER BY table_name, ordinal_position").result()
        self._schema: dict[str, dict[str, str]] = {}
        for table, column, typ in rows:
            self._schema.setdefault(table, {})[column] = duckdb_type(typ)

    def schema(self) -> Mapping[str, Mapping[str, str]]:
        return self._schema

    def read(self, sql: str, wall: str) -> pa.Table:
        config = self._bigquery.QueryJobConfig(default_dataset=f"{self.catalog_name}.{wall}")
        return self._client.query(sql, job_config=config).to_arrow()

    def describe(self, sql: str, wall: str) -> dict[str, str]:
        table = self.read(f"SELECT * FROM ({sql}) AS agentml_q LIMIT 0", wall)
        return {field.name: duckdb_type(str(field.type)) for field in table.schema}

    def estimate_rows(self, table: str) -> int | None:
        return int(self._client.get_table(f"{self.catalog_name}.{self.source_db}.{table}").num_rows or 0)

    def create_wall(self, name: str, views: Mapping[str, str]) -> None:
        self._client.create_dataset(f"{self.catalog_name}.{name}", exists_ok=True)
        for table, governed in views.items():
            self._client.query(f"CREATE OR REPLACE VIEW {_backtick(self.project)}.{_backtick(name)}."
                               f"{_backtick(table)} AS {governed}").result()

    def sanitize(self, error: BaseException) -> GovernanceError:
        return runtime_error(error, type(error).__name__)

    def __reduce__(self) -> tuple[Any, ...]:
        return (BigQueryWarehouse, (self._url,))

    def __repr__(self) -> str:
        return f"BigQueryWarehouse({redact_url(self._url)})"
