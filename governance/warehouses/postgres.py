"""PostgreSQL as a warehouse: the governed SQL (printed in the postgres dialect) runs in the database, so filtering,
masking, joins and aggregates happen there and only the result travels, into Arrow.

The second wall: per principal, a schema `gov_<hash>` of `security_barrier` views (the governed `SELECT *` of every
table they may read). Each query runs in a `READ ONLY` transaction with `SET LOCAL search_path` to that schema and a
`statement_timeout`, so an unqualified table name the rewrite missed resolves to a governed view, and nothing can be
written. The wall schemas' names hash their views, so every process (API, Ray workers) with the same policies shares
them; old ones stay until an admin drops them (`DROP SCHEMA gov_... CASCADE`; they hold views only).

What the connecting role needs: `SELECT` on the warehouse schema's tables and `CREATE` on the database (for the wall
schemas). Raw tables are read from one schema (`public` unless the URL says `?schema=sales`); queries name tables
unqualified (or `main.t`, DuckDB's default schema), never the raw schema.

Native row-level security: if the tables already carry PostgreSQL RLS policies and column grants for the connecting
role, those apply underneath both walls as well (PostgreSQL enforces them on the views' owner, the connecting role);
agentml's policies then add to them. To rely on PostgreSQL alone, connect as a role whose RLS policies and grants say
what it may see, and give agentml policies that allow its tables without filters or masks.

The URL (it may hold a password) is kept out of every message and repr (`redact_url`). The engine pickles to the URL
and reconnects in the Ray worker.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa

from governance.errors import GovernanceError, QueryError
from governance.warehouses.base import (
    Warehouse,
    WarehouseUnavailable,
    compile_error,
    missing_driver,
    quote_ident,
    redact_url,
    runtime_error,
)

# PostgreSQL type (by OID) -> (DuckDB-style type name the planner understands, Arrow type).
_TYPES: dict[int, tuple[str, pa.DataType]] = {
    16: ("BOOLEAN", pa.bool_()), 20: ("BIGINT", pa.int64()), 21: ("SMALLINT", pa.int16()),
    23: ("INTEGER", pa.int32()), 26: ("BIGINT", pa.int64()), 700: ("FLOAT", pa.float32()),
    701: ("DOUBLE", pa.float64()), 1700: ("DOUBLE", pa.float64()), 25: ("VARCHAR", pa.string()),
    1043: ("VARCHAR", pa.string()), 1042: ("VARCHAR", pa.string()), 19: ("VARCHAR", pa.string()),
    18: ("VARCHAR", pa.string()), 1082: ("DATE", pa.date32()), 1114: ("TIMESTAMP", pa.timestamp("us")),
    1184: ("TIMESTAMP WITH TIME ZONE", pa.timestamp("us", tz="UTC")), 1083: ("TIME", pa.time64("us")),
    17: ("BLOB", pa.binary()), 2950: ("UUID", pa.string()), 114: ("JSON", pa.string()), 3802: ("JSON", pa.string()),
}
_CATALOG_SQL = """
SELECT c.relname, a.attname, a.atttypid
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""
_ESTIMATE_SQL = """
SELECT c.reltuples::bigint FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""
_SMALL = 100_000  # below this many estimated rows (or when never analysed), an exact count(*) is cheap
_MAX_IDLE = 4


def _type_of(oid: int) -> tuple[str, pa.DataType | None]:
    name, arrow = _TYPES.get(oid, ("VARCHAR", None))
    return name, arrow


def _without_case_collisions(tables: dict[str, dict[str, str]]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Queries resolve names without case (DuckDB SQL): tables whose name, or two of whose columns, differ only in
    case cannot be named unambiguously, so they are left out (invisible) rather than guessed."""
    by_key: dict[str, list[str]] = {}
    for name in tables:
        by_key.setdefault(name.lower(), []).append(name)
    skipped = sorted(n for names in by_key.values() if len(names) > 1 for n in names)
    skipped += sorted(n for n, cols in tables.items() if len({c.lower() for c in cols}) != len(cols)
                      and n not in skipped)
    return {n: c for n, c in tables.items() if n not in skipped}, skipped


def _split_url(url: str) -> tuple[str, str]:
    """(libpq URL without agentml's own `schema=` parameter, the schema)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), "public")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(("postgresql", parts.netloc, parts.path, rest, parts.fragment)), schema


class PostgresWarehouse(Warehouse):
    """A PostgreSQL database (psycopg 3). `url`: `postgresql://user:password@host:port/db[?schema=public]`."""

    dialect = "postgres"

    def __init__(self, url: str, *, statement_timeout_s: float = 600.0, batch_rows: int = 50_000,
                 **_limits: Any) -> None:
        try:
            import psycopg
        except ImportError:
            raise missing_driver("psycopg", "postgres") from None
        self._psycopg = psycopg
        self._url = url
        self._conninfo, self.source_db = _split_url(url)
        self.statement_timeout_s, self.batch_rows = statement_timeout_s, batch_rows
        self.errors = (psycopg.Error,)
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self.skipped: list[str] = []
        self._schema: dict[str, dict[str, str]] = {}
        self.refresh()

    # ------------------------------------------------------------------------------------------ connections
    def _connect(self) -> Any:
        from psycopg.types.numeric import FloatLoader

        try:
            conn = self._psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10,
                                         application_name="agentml")
        except self._psycopg.Error as err:
            raise WarehouseUnavailable(f"cannot connect to the PostgreSQL warehouse {redact_url(self._url)}: "
                                       f"{type(err).__name__}",
                                       hint="Check the host, port, database, user and password.") from None
        # numeric (avg of integers, DECIMAL columns) arrives as float, like DuckDB's DOUBLE, not Python Decimal
        conn.adapters.register_loader("numeric", FloatLoader)
        return conn

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = self._connect()
        try:
            yield conn
        except BaseException:
            conn.close()  # in an unknown state: never reuse it
            raise
        with self._lock:
            if len(self._idle) < _MAX_IDLE and not conn.closed:
                self._idle.append(conn)
                conn = None
        if conn is not None:
            conn.close()

    @contextmanager
    def _read_only(self, wall: str) -> Iterator[Any]:
        """A READ ONLY transaction whose table names resolve in `wall`, with a statement timeout."""
        with self._connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute(f"SET LOCAL search_path TO {quote_ident(wall)}")
            conn.execute(f"SET LOCAL statement_timeout = {int(self.statement_timeout_s * 1000)}")
            yield conn

    # ------------------------------------------------------------------------------------------ admin side
    def refresh(self) -> None:
        """Re-read the raw catalog (tables added or changed in the database since)."""
        tables: dict[str, dict[str, str]] = {}
        with self._connection() as conn:
            for table, column, oid in conn.execute(_CATALOG_SQL, (self.source_db,)).fetchall():
                tables.setdefault(table, {})[column] = _type_of(oid)[0]
        self._schema, self.skipped = _without_case_collisions(tables)

    def schema(self) -> Mapping[str, Mapping[str, str]]:
        return self._schema

    def estimate_rows(self, table: str) -> int | None:
        with self._connection() as conn:
            row = conn.execute(_ESTIMATE_SQL, (self.source_db, table)).fetchone()
            if row is None:
                return None
            if row[0] is not None and row[0] >= _SMALL:
                return int(row[0])
            exact = conn.execute(f"SELECT count(*) FROM {quote_ident(self.source_db)}.{quote_ident(table)}")
            return int(exact.fetchone()[0])

    def create_wall(self, name: str, views: Mapping[str, str]) -> None:
        with self._connection() as conn, conn.transaction():
            # one creator at a time per wall; the name hashes the views, so an existing wall holds these views
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))
            owner = conn.execute("SELECT pg_get_userbyid(nspowner) = current_user FROM pg_namespace "
                                 "WHERE nspname = %s", (name,)).fetchone()
            if owner is not None:
                if not owner[0]:
                    raise GovernanceError(f"schema {name} exists but belongs to another role",
                                          hint="Drop it: wall schemas are made by agentml's connecting role only.")
                return
            conn.execute(f"CREATE SCHEMA {quote_ident(name)}")
            for table, governed in views.items():
                conn.execute(f"CREATE VIEW {quote_ident(name)}.{quote_ident(table)} WITH (security_barrier) "
                             f"AS {governed}")

    # ------------------------------------------------------------------------------------------ governed side
    def read(self, sql: str, wall: str) -> pa.Table:
        with self._read_only(wall) as conn:
            cursor = conn.cursor(name="agentml_read")  # server-side: rows stream in batches
            cursor.execute(sql)
            names = [c.name for c in cursor.description]
            types = [_type_of(c.type_code)[1] for c in cursor.description]
            batches = []
            while rows := cursor.fetchmany(self.batch_rows):
                batches.append(_batch(rows, names, types))
            cursor.close()
        if not batches:
            return pa.table({n: pa.array([], t or pa.string()) for n, t in zip(names, types, strict=True)})
        return pa.Table.from_batches(batches) if len(batches) == 1 else \
            pa.concat_tables([pa.Table.from_batches([b]) for b in batches], promote_options="permissive")

    def describe(self, sql: str, wall: str) -> dict[str, str]:
        with self._read_only(wall) as conn:
            cursor = conn.execute(f"SELECT * FROM ({sql}) AS agentml_q LIMIT 0")
            return {c.name: _type_of(c.type_code)[0] for c in cursor.description}

    def sanitize(self, error: BaseException) -> GovernanceError:
        errors = self._psycopg.errors
        if isinstance(error, errors.QueryCanceled):
            return QueryError(f"the query ran longer than the warehouse's {self.statement_timeout_s:g} s timeout",
                              hint="Aggregate in SQL or read fewer rows.", error_class="timeout")
        if (getattr(error, "sqlstate", None) or "").startswith("42"):  # syntax, undefined name, privilege
            return compile_error(error)
        if isinstance(error, self._psycopg.OperationalError):
            return WarehouseUnavailable(f"the PostgreSQL warehouse {redact_url(self._url)} failed: "
                                        f"{type(error).__name__}", hint="Check that the database is up.")
        return runtime_error(error, type(error).__name__)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reconnect, (self._url, self.statement_timeout_s, self.batch_rows))

    def __repr__(self) -> str:
        return f"PostgresWarehouse({redact_url(self._url)}, tables={list(self._schema)})"


def _reconnect(url: str, statement_timeout_s: float, batch_rows: int) -> PostgresWarehouse:
    return PostgresWarehouse(url, statement_timeout_s=statement_timeout_s, batch_rows=batch_rows)


def _batch(rows: list[tuple[Any, ...]], names: list[str], types: list[pa.DataType | None]) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    arrays = []
    for values, arrow in zip(columns, types, strict=True):
        try:
            arrays.append(pa.array(values, type=arrow))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # an unmapped type pyarrow cannot infer: keep its text
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _pg_type(arrow: pa.DataType) -> str:
    checks = ((pa.types.is_boolean, "boolean"), (pa.types.is_int64, "bigint"), (pa.types.is_uint32, "bigint"),
              (pa.types.is_integer, "integer"), (pa.types.is_float32, "real"),
              (pa.types.is_floating, "double precision"), (pa.types.is_decimal, "numeric"),
              (pa.types.is_date, "date"), (pa.types.is_binary, "bytea"))
    if pa.types.is_timestamp(arrow):
        return "timestamptz" if arrow.tz else "timestamp"
    return next((name for check, name in checks if check(arrow)), "text")


def copy_arrow_table(url: str, name: str, table: pa.Table, *, schema: str = "public") -> None:
    """Admin helper: create (or replace) table `name` in a PostgreSQL database and COPY an Arrow table into it
    (CSV through COPY FROM STDIN: one round trip per megabytes, not per row). Used to load the demo warehouse."""
    import io

    import psycopg
    import pyarrow.csv as pa_csv

    target = f"{quote_ident(schema)}.{quote_ident(name)}"
    columns = ", ".join(f"{quote_ident(f.name)} {_pg_type(f.type)}" for f in table.schema)
    buffer = io.BytesIO()
    pa_csv.write_csv(table, buffer, pa_csv.WriteOptions(include_header=False))
    with psycopg.connect(_split_url(url)[0]) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {target}")
        conn.execute(f"CREATE TABLE {target} ({columns})")
        with conn.cursor().copy(f"COPY {target} FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(buffer.getvalue())
        conn.execute(f"ANALYZE {target}")
