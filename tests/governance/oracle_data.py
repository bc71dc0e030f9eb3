"""Deterministic data and principals shared by the agentml engine and the PostgreSQL oracle.

The same rows go into DuckDB (as Arrow tables) and into PostgreSQL (INSERT), so any difference between the two
engines' answers comes from governance, not from the data. NULLs, orphan foreign keys and ties are there on purpose.
"""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyarrow as pa

SEED = 20240607


@dataclass(frozen=True)
class Column:
    """One column: its name, PostgreSQL type and Arrow type (DuckDB derives its type from Arrow)."""

    name: str
    pg_type: str
    arrow_type: pa.DataType


@dataclass(frozen=True)
class OracleTable:
    """A table's columns and rows (tuples in column order)."""

    name: str
    columns: tuple[Column, ...]
    rows: list[tuple[Any, ...]]

    def to_arrow(self) -> pa.Table:
        """The rows as an Arrow table with the declared types."""
        schema = pa.schema([pa.field(c.name, c.arrow_type) for c in self.columns])
        rows = [dict(zip(self.column_names, row, strict=False)) for row in self.rows]
        return pa.Table.from_pylist(rows, schema=schema)

    @property
    def column_names(self) -> list[str]:
        """Column names in table order (the order `SELECT *` must follow)."""
        return [c.name for c in self.columns]


@dataclass(frozen=True)
class OraclePrincipal:
    """A principal of the oracle: user name, roles and attributes (`:region`, `:max_amount`)."""

    user: str
    roles: tuple[str, ...]
    attributes: dict[str, Any] = field(default_factory=dict)


PRINCIPALS: tuple[OraclePrincipal, ...] = (
    OraclePrincipal("ann", ("analyst",), {"region": "EU"}),
    OraclePrincipal("bob", ("analyst",), {"region": "US"}),
    OraclePrincipal("sue", ("support",)),
    OraclePrincipal("fay", ("finance",), {"max_amount": 300}),
    OraclePrincipal("adm", ("admin",)),
    OraclePrincipal("ivy", ("intern",)),
    # Multi-role principals: rows are the union of the roles' filters, a column is unmasked if any role reads it
    # unmasked and visible if any role may read it.
    OraclePrincipal("cam", ("analyst", "finance"), {"region": "APAC", "max_amount": 150}),
    OraclePrincipal("dan", ("analyst", "support"), {"region": "US"}),
    OraclePrincipal("eve", ("support", "intern")),
    OraclePrincipal("gus", ("guest",)),  # a role no table allows: deny by default
)

_DEC = pa.decimal128(10, 2)
_FIRST = ("Ada", "Ben", "Cleo", "Dev", "Ema", "Finn", "Gia", "Hal", "Ivo", "Juno", "Kai", "Lea")
_DOMAINS = ("example.com", "mail.org", "corp.net")
_REGIONS = ("EU", "US", "APAC", None)
_TIERS = ("free", "silver", "gold", "platinum")
_STATUSES = ("shipped", "pending", "cancelled", "returned")
_METHODS = ("card", "paypal", "bank")


def _money(rng: random.Random, low: int, high: int) -> Decimal:
    return Decimal(rng.randint(low * 100, high * 100)) / 100


def _day(rng: random.Random, start: dt.date, days: int) -> dt.date:
    return start + dt.timedelta(days=rng.randrange(days))


def _maybe(rng: random.Random, value: Any, null_rate: float) -> Any:
    return None if rng.random() < null_rate else value


def _customers(rng: random.Random, n: int) -> OracleTable:
    columns = (
        Column("id", "INTEGER", pa.int32()), Column("name", "TEXT", pa.string()),
        Column("email", "TEXT", pa.string()), Column("phone", "TEXT", pa.string()),
        Column("ssn", "TEXT", pa.string()), Column("region", "TEXT", pa.string()),
        Column("tier", "TEXT", pa.string()), Column("spend", "NUMERIC(10,2)", _DEC),
        Column("signup", "DATE", pa.date32()),
    )
    rows = []
    for i in range(1, n + 1):
        name = f"{rng.choice(_FIRST)} {chr(65 + i % 26)}."
        email = _maybe(rng, f"{name.split()[0].lower()}{i}@{rng.choice(_DOMAINS)}", 0.1)
        phone = _maybe(rng, f"555-{rng.randint(0, 9999):04d}", 0.15)
        ssn = f"{rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
        rows.append((i, name, email, phone, ssn, rng.choice(_REGIONS), rng.choice(_TIERS), _money(rng, 0, 2500),
                     _day(rng, dt.date(2022, 1, 1), 900)))
    return OracleTable("customers", columns, rows)


def _orders(rng: random.Random, n: int, customers: int) -> OracleTable:
    columns = (
        Column("id", "INTEGER", pa.int32()), Column("customer_id", "INTEGER", pa.int32()),
        Column("region", "TEXT", pa.string()), Column("status", "TEXT", pa.string()),
        Column("amount", "NUMERIC(10,2)", _DEC), Column("discount_code", "TEXT", pa.string()),
        Column("ordered_on", "DATE", pa.date32()),
    )
    rows = []
    for i in range(1, n + 1):
        customer = rng.randint(1, customers + 5)  # a few orphan orders for outer/anti joins
        code = _maybe(rng, rng.choice(("SAVE10", "VIP", "SPRING")), 0.6)
        rows.append((i, customer, rng.choice(_REGIONS[:3]), rng.choice(_STATUSES), _money(rng, 5, 500), code,
                     _day(rng, dt.date(2023, 1, 1), 800)))
    return OracleTable("orders", columns, rows)


def _payments(rng: random.Random, n: int, orders: int) -> OracleTable:
    columns = (
        Column("id", "INTEGER", pa.int32()), Column("order_id", "INTEGER", pa.int32()),
        Column("method", "TEXT", pa.string()), Column("card_number", "TEXT", pa.string()),
        Column("cvv", "TEXT", pa.string()), Column("amount", "NUMERIC(10,2)", _DEC),
        Column("settled", "BOOLEAN", pa.bool_()),
    )
    rows = []
    for i in range(1, n + 1):
        method = rng.choice(_METHODS)
        card = f"{rng.choice('45')}{rng.randint(0, 10**15 - 1):015d}" if method == "card" else None
        rows.append((i, rng.randint(1, orders + 10), method, card, f"{rng.randint(0, 999):03d}",
                     _money(rng, 5, 500), rng.random() < 0.7))
    return OracleTable("payments", columns, rows)


def build_tables(seed: int = SEED) -> dict[str, OracleTable]:
    """customers (60 rows), orders (200) and payments (150), the same on every call for a given seed."""
    rng = random.Random(seed)
    customers = _customers(rng, 60)
    orders = _orders(rng, 200, len(customers.rows))
    payments = _payments(rng, 150, len(orders.rows))
    return {t.name: t for t in (customers, orders, payments)}
