"""Fixtures of the executor tests: a private skill registry, a real governed DuckDB engine, run stores on SQLite and on
a fresh PostgreSQL database per test session."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import exec_skills
import pyarrow as pa
import pytest

from executor import RunStore
from governance import Engine, Policies, Principal
from skills import ArtifactStore
from skills.registry import Registry

CUSTOMERS = pa.table({
    "id": pa.array([1, 2, 3, 4, 5], pa.int64()),
    "region": ["EU", "EU", "US", "US", "EU"],
    "email": ["a@x.org", "b@x.org", "c@y.org", "d@y.org", "e@x.org"],
    "spend": [10.0, 20.0, 30.0, 40.0, 50.0],
})
POLICIES = {
    "tables": {
        "customers": {
            "allow": ["analyst", "admin"],
            "deny_columns": {"email": ["analyst"]},
            "row_filters": [{"roles": ["analyst"], "using": "region = :region"}],
        },
    },
}


@pytest.fixture
def registry() -> Registry:
    return exec_skills.REGISTRY


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def engine() -> Engine:
    eng = Engine(Policies.model_validate(POLICIES), threads=1)
    eng.register("customers", CUSTOMERS)
    return eng


@pytest.fixture
def analyst() -> Principal:
    return Principal(user="ann", roles=["analyst"], attributes={"region": "EU"})


@pytest.fixture
def admin() -> Principal:
    return Principal(user="ada", roles=["admin"])


@pytest.fixture(scope="session")
def pg_store_url(new_pg_database: Callable[[str], AbstractContextManager[str]]) -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    with new_pg_database("agentml_exec") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    """A run store on a SQLite file, then on real PostgreSQL."""
    url = f"sqlite:///{tmp_path / 'runs.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_store_url")
    run_store = RunStore(url)
    yield run_store
    run_store.close()
