"""The oracle: the oracle policy file expressed natively in a real PostgreSQL server.

Mapping (read straight from the YAML, independently of the governance package):
- every policy role -> a PostgreSQL role; every principal -> a role that is a member of its roles, so PostgreSQL
  itself takes the union of privileges and of permissive policies for multi-role principals;
- `allow` minus `deny_columns` -> column-level `GRANT SELECT (cols)` on the base table in schema `data`;
- `row_filters` -> permissive ROW LEVEL SECURITY policies (a role without a filter gets `USING (true)`);
  `:attr` -> `current_setting('app.attr', true)`, set per principal with `set_config`;
- masks -> one `security_barrier, security_invoker` view per table in the principal's own schema, first on its
  search_path, so unqualified names resolve to the view just as agentml replaces every table reference by a
  masked subquery. The view lists exactly the columns PostgreSQL says the principal may select
  (`has_column_privilege`), so `SELECT *` expands like agentml's; a masked column is
  `CASE WHEN pg_has_role(current_user, <a role that reads it unmasked>, 'MEMBER') ... THEN col ELSE <mask> END`.
  Because the view runs as the invoker, the base table's RLS policies and column GRANTs still apply.
Names of roles, schemas and the database carry a random prefix: roles are cluster-wide and runs may overlap.
"""
from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml
from oracle_data import OraclePrincipal, OracleTable
from psycopg import sql
from psycopg.conninfo import make_conninfo

DATA_SCHEMA = "data"
_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@dataclass
class PgOracle:
    """A throw-away PostgreSQL database holding the oracle data, roles, grants, RLS policies and mask views."""

    server_url: str
    policy: dict[str, Any]
    tables: Mapping[str, OracleTable]
    principals: Sequence[OraclePrincipal]
    prefix: str = field(default_factory=lambda: f"ao{secrets.token_hex(4)}_")
    ddl: list[str] = field(default_factory=list)

    @property
    def dbname(self) -> str:
        """Name of the database this oracle creates."""
        return f"{self.prefix}oracle"

    def role(self, name: str) -> str:
        """The PostgreSQL role of a policy role."""
        return f"{self.prefix}{name}"

    def user_role(self, principal: OraclePrincipal) -> str:
        """The PostgreSQL role a principal acts as (member of all its roles)."""
        return f"{self.prefix}u_{principal.user}"

    def user_schema(self, principal: OraclePrincipal) -> str:
        """The schema holding the principal's masked views."""
        return f"p_{principal.user}"

    def db_url(self) -> str:
        """Connection string for this oracle's database (as the server's admin user)."""
        return make_conninfo(self.server_url, dbname=self.dbname)

    def all_roles(self) -> list[str]:
        """Every policy role, plus roles only principals name (those see nothing)."""
        names = {r for t in self.policy["tables"].values() for r in t["allow"]}
        names |= {r for p in self.principals for r in p.roles}
        return sorted(names)


def load_policy_yaml(path: Path) -> dict[str, Any]:
    """The raw policy document (not the governance package's models: the oracle must not share its code)."""
    return yaml.safe_load(path.read_text())


def pg_predicate(snippet: str, attribute_types: Mapping[str, str]) -> str:
    """A row-filter snippet with `:attr` replaced by the session setting PostgreSQL reads per principal."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"current_setting('app.{name}', true)::{attribute_types.get(name, 'text')}"

    return _PLACEHOLDER.sub(replace, snippet)


def attribute_types(principals: Sequence[OraclePrincipal]) -> dict[str, str]:
    """PostgreSQL type of each attribute, from the Python values the principals carry."""
    types: dict[str, str] = {}
    for principal in principals:
        for name, value in principal.attributes.items():
            is_number = isinstance(value, int | float) and not isinstance(value, bool)
            types[name] = "numeric" if is_number else "text"
    return types


def _run(conn: psycopg.Connection, oracle: PgOracle, statement: sql.Composable | str) -> None:
    text = statement if isinstance(statement, str) else statement.as_string(conn)
    oracle.ddl.append(text)
    conn.execute(text)


def _create_tables(conn: psycopg.Connection, oracle: PgOracle) -> None:
    _run(conn, oracle, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(DATA_SCHEMA)))
    for table in oracle.tables.values():
        target = sql.Identifier(DATA_SCHEMA, table.name)
        columns = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type))
                                     for c in table.columns)
        _run(conn, oracle, sql.SQL("CREATE TABLE {} ({})").format(target, columns))
        names = sql.SQL(", ").join(sql.Identifier(n) for n in table.column_names)
        with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(target, names)) as copy:
            for row in table.rows:
                copy.write_row(row)


def _create_roles(conn: psycopg.Connection, oracle: PgOracle) -> None:
    for name in oracle.all_roles():
        _run(conn, oracle, sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(oracle.role(name))))
        _run(conn, oracle, sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(DATA_SCHEMA), sql.Identifier(oracle.role(name))))
    for principal in oracle.principals:
        members = sql.SQL(", ").join(sql.Identifier(oracle.role(r)) for r in principal.roles)
        _run(conn, oracle, sql.SQL("CREATE ROLE {} NOLOGIN IN ROLE {}").format(
            sql.Identifier(oracle.user_role(principal)), members))


def _grant_columns(conn: psycopg.Connection, oracle: PgOracle, table: OracleTable, rules: dict[str, Any]) -> None:
    denied = rules.get("deny_columns", {})
    for role in rules["allow"]:
        columns = [c for c in table.column_names if role not in denied.get(c, [])]
        _run(conn, oracle, sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier(DATA_SCHEMA, table.name),
            sql.Identifier(oracle.role(role))))


def _row_policies(conn: psycopg.Connection, oracle: PgOracle, table: OracleTable, rules: dict[str, Any],
                  types: Mapping[str, str]) -> None:
    target = sql.Identifier(DATA_SCHEMA, table.name)
    _run(conn, oracle, sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(target))
    filters: dict[str, str] = {}
    for rule in rules.get("row_filters", []):
        for role in rule["roles"]:
            assert role not in filters, f"oracle policy: one row filter per role ({table.name}, {role})"
            filters[role] = pg_predicate(rule["using"], types)
    for role in rules["allow"]:
        _run(conn, oracle, sql.SQL("CREATE POLICY {} ON {} AS PERMISSIVE FOR SELECT TO {} USING ({})").format(
            sql.Identifier(f"{role}_rows"), target, sql.Identifier(oracle.role(role)),
            sql.SQL(filters.get(role, "true"))))


def _visible_columns(conn: psycopg.Connection, oracle: PgOracle, principal: OraclePrincipal,
                     table: OracleTable) -> list[str]:
    """Columns PostgreSQL itself says the principal may select (the union of its roles' column GRANTs)."""
    query = "SELECT has_column_privilege(%s, %s, %s, 'SELECT')"
    qualified = f"{DATA_SCHEMA}.{table.name}"
    return [c for c in table.column_names
            if conn.execute(query, (oracle.user_role(principal), qualified, c)).fetchone()[0]]


def _view_column(oracle: PgOracle, column: str, rules: dict[str, Any]) -> sql.Composable:
    mask = rules.get("mask_columns", {}).get(column)
    if mask is None:
        return sql.Identifier(column)
    denied = rules.get("deny_columns", {}).get(column, [])
    clear = [r for r in rules["allow"] if r not in denied and r not in mask["roles"]]
    if not clear:
        return sql.SQL("({}) AS {}").format(sql.SQL(mask["using"]), sql.Identifier(column))
    member = sql.SQL(" OR ").join(sql.SQL("pg_has_role(current_user, {}, 'MEMBER')").format(
        sql.Literal(oracle.role(r))) for r in clear)
    return sql.SQL("CASE WHEN {} THEN {} ELSE ({}) END AS {}").format(
        member, sql.Identifier(column), sql.SQL(mask["using"]), sql.Identifier(column))


def _principal_views(conn: psycopg.Connection, oracle: PgOracle, principal: OraclePrincipal) -> None:
    schema, grantee = sql.Identifier(oracle.user_schema(principal)), sql.Identifier(oracle.user_role(principal))
    _run(conn, oracle, sql.SQL("CREATE SCHEMA {}").format(schema))
    _run(conn, oracle, sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, grantee))
    for name, rules in oracle.policy["tables"].items():
        table = oracle.tables[name]
        columns = _visible_columns(conn, oracle, principal, table)
        if not columns:
            continue  # invisible: the name falls through to data.<table>, where PostgreSQL denies it
        view = sql.Identifier(oracle.user_schema(principal), name)
        select = sql.SQL(", ").join(_view_column(oracle, c, rules) for c in columns)
        _run(conn, oracle, sql.SQL(
            "CREATE VIEW {} WITH (security_barrier = true, security_invoker = true) AS SELECT {} FROM {}").format(
            view, select, sql.Identifier(DATA_SCHEMA, name)))
        _run(conn, oracle, sql.SQL("GRANT SELECT ON {} TO {}").format(view, grantee))


def _install(conn: psycopg.Connection, oracle: PgOracle) -> None:
    types = attribute_types(oracle.principals)
    _create_tables(conn, oracle)
    _create_roles(conn, oracle)
    for name, rules in oracle.policy["tables"].items():
        _grant_columns(conn, oracle, oracle.tables[name], rules)
        _row_policies(conn, oracle, oracle.tables[name], rules, types)
    for principal in oracle.principals:
        _principal_views(conn, oracle, principal)


def _drop(oracle: PgOracle) -> None:
    with psycopg.connect(oracle.server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(oracle.dbname)))
        roles = [oracle.user_role(p) for p in oracle.principals] + [oracle.role(r) for r in oracle.all_roles()]
        for role in roles:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@contextmanager
def pg_oracle(server_url: str, policy: dict[str, Any], tables: Mapping[str, OracleTable],
              principals: Sequence[OraclePrincipal]) -> Iterator[PgOracle]:
    """Create the oracle database (C collation, like DuckDB's binary string order), yield it, drop it and its roles."""
    oracle = PgOracle(server_url, policy, tables, principals)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
                      .format(sql.Identifier(oracle.dbname)))
    try:
        with psycopg.connect(oracle.db_url(), autocommit=True) as conn:
            _install(conn, oracle)
        yield oracle
    finally:
        _drop(oracle)


@contextmanager
def principal_session(oracle: PgOracle, principal: OraclePrincipal) -> Iterator[psycopg.Connection]:
    """A connection acting as the principal: its role, its attribute settings, its views first on the path."""
    with psycopg.connect(oracle.db_url(), autocommit=True) as conn:
        for name, value in principal.attributes.items():
            conn.execute("SELECT set_config(%s, %s, false)", (f"app.{name}", str(value)))
        conn.execute(sql.SQL("SET search_path = {}, {}").format(
            sql.Identifier(oracle.user_schema(principal)), sql.Identifier(DATA_SCHEMA)))
        conn.execute("SET statement_timeout = '10s'")
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(oracle.user_role(principal))))
        yield conn
