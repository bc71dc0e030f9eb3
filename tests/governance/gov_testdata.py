"""Shared governance test data: the policy file, the schema, principals, and tables whose every forbidden cell
holds a unique canary string. `forbidden_values(principal)` is an independent, plain-Python statement of the
policies' union semantics: the set of cell values that principal must never see."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from governance import Engine, Policies, Principal

HERE = Path(__file__).parent
POLICY_FILE = HERE / "policies.yaml"
REGIONS = ("EU", "US", "APAC")

PRINCIPALS: dict[str, Principal] = {
    "analyst_eu": Principal(user="ann", roles=["analyst"], attributes={"region": "EU"}),
    "analyst_us": Principal(user="al", roles=["analyst"], attributes={"region": "US"}),
    "support_sam": Principal(user="sam", roles=["support"]),
    "marketing": Principal(user="mia", roles=["marketing"]),
    "finance": Principal(user="fin", roles=["finance"]),
    "admin": Principal(user="root", roles=["admin"]),
    "analyst_support": Principal(user="bo", roles=["analyst", "support"], attributes={"region": "EU"}),
    "analyst_marketing": Principal(user="cy", roles=["analyst", "marketing"], attributes={"region": "EU"}),
    "analyst_noregion": Principal(user="dee", roles=["analyst"]),
    "analyst_injection": Principal(user="eve", roles=["analyst"], attributes={"region": "EU' OR '1'='1"}),
    "nobody": Principal(user="nil", roles=[]),
    "stranger": Principal(user="x", roles=["intern", "Analyst", "ADMIN"]),
}


def _customers(n: int = 30) -> pa.Table:
    ids = list(range(1, n + 1))
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "name": [f"CANARY-NAME-{i:03d}" for i in ids],
        "email": [f"canary.email.{i:03d}@mail{i % 3}.test" for i in ids],
        "ssn": [f"CANARY-SSN-{i:03d}" for i in ids],
        "phone": [f"CANARY-PH-{i:03d}-555{i:04d}" for i in ids],
        "region": [REGIONS[i % 3] for i in ids],
        "opt_in": [i % 4 == 0 for i in ids],
        "spend": [float(i * 10) for i in ids],
        "signup": [dt.date(2023, 1, 1) + dt.timedelta(days=11 * i) for i in ids],
    })


def _billing(n: int = 60) -> pa.Table:
    ids = list(range(1, n + 1))
    return pa.table({
        "customer_id": pa.array([(i % 30) + 1 for i in ids], pa.int64()),
        "month": [dt.date(2023, 7, 1) + dt.timedelta(days=31 * (i % 12)) for i in ids],
        "amount": [float(i % 17) * 3.5 for i in ids],
        "plan": [f"CANARY-PLAN-{i:03d}" for i in ids],
        "memo": [f"CANARY-MEMO-{i:03d}" for i in ids],
        "card": [f"CANARY-CARD-{i:03d}" for i in ids],
    })


def _tickets(n: int = 20) -> pa.Table:
    ids = list(range(1, n + 1))
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "customer_id": pa.array([(i % 30) + 1 for i in ids], pa.int64()),
        "assignee": ["sam" if i % 2 else "sue" for i in ids],
        "body": [f"CANARY-BODY-{i:03d}" for i in ids],
        "priority": pa.array([i % 3 for i in ids], pa.int32()),
    })


def _secrets() -> pa.Table:
    return pa.table({"id": pa.array([1, 2], pa.int64()), "value": ["CANARY-SECRET-001", "CANARY-SECRET-002"]})


def tables() -> dict[str, pa.Table]:
    """The four test tables, freshly built."""
    return {"customers": _customers(), "billing": _billing(), "tickets": _tickets(), "secrets": _secrets()}


def schema() -> dict[str, dict[str, str]]:
    """{table: {column: DuckDB type}} of the test tables (what enforce() needs)."""
    names = {pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.string(): "VARCHAR", pa.bool_(): "BOOLEAN",
             pa.float64(): "DOUBLE", pa.date32(): "DATE"}
    return {name: {f.name: names[f.type] for f in t.schema} for name, t in tables().items()}


def seeded_engine(policies: Policies, **kwargs: object) -> Engine:
    """A fresh Engine with the four canary-seeded tables registered."""
    engine = Engine(policies, **kwargs)
    for name, table in tables().items():
        engine.register(name, table)
    return engine


# ---------------------------------------------------------------------------------------- the canary oracle
Row = dict[str, object]
_READERS = {"customers": {"analyst", "support", "admin", "marketing"}, "billing": {"analyst", "finance", "admin"},
            "tickets": {"support", "admin"}, "secrets": {"admin"}}
_DENIED = {("customers", "ssn"): {"analyst", "support", "marketing"}, ("billing", "card"): {"analyst", "finance"}}
_MASKED = {("customers", "email"): {"support", "marketing"}, ("customers", "phone"): {"analyst", "marketing"},
           ("billing", "memo"): {"analyst"}}
_FILTERS: dict[tuple[str, str], Callable[[Row, Principal], bool]] = {
    ("customers", "analyst"): lambda r, p: r["region"] == p.attributes.get("region"),
    ("customers", "marketing"): lambda r, p: bool(r["opt_in"]),
    ("billing", "analyst"): lambda r, p: r["month"] >= dt.date(2024, 1, 1),
    ("tickets", "support"): lambda r, p: r["assignee"] == p.user,
}


def _row_visible(table: str, row: Row, principal: Principal, readers: set[str]) -> bool:
    # Union of roles: a reading role without a filter sees every row.
    return any((table, role) not in _FILTERS or _FILTERS[(table, role)](row, principal) for role in readers)


def _cell_visible(table: str, column: str, readers: set[str]) -> bool:
    seeing = readers - _DENIED.get((table, column), set())
    return bool(seeing) and not seeing <= _MASKED.get((table, column), set())


_FORBIDDEN_CACHE: dict[str, frozenset[str]] = {}


def forbidden_values(principal: Principal) -> frozenset[str]:
    """Every canary-bearing cell value this principal must never see (raw masked values included)."""
    key = principal.model_dump_json()
    if key not in _FORBIDDEN_CACHE:
        _FORBIDDEN_CACHE[key] = frozenset(_forbidden(principal))
    return _FORBIDDEN_CACHE[key]


def _forbidden(principal: Principal) -> set[str]:
    forbidden: set[str] = set()
    for name, table in tables().items():
        readers = set(principal.roles) & _READERS[name]
        for row in table.to_pylist():
            row_ok = bool(readers) and _row_visible(name, row, principal, readers)
            for column, value in row.items():
                hidden = not (row_ok and _cell_visible(name, column, readers))
                if hidden and isinstance(value, str) and "canary" in value.lower():
                    forbidden.add(value if not value.startswith("canary.email") else value.split("@")[0])
    return forbidden


def leaked(text: str, principal: Principal) -> list[str]:
    """The forbidden canaries that appear in `text` (case-insensitive)."""
    lowered = text.lower()
    return sorted(v for v in forbidden_values(principal) if v.lower() in lowered)
