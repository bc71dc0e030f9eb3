"""Shared fixtures: a real local Ray cluster and a real PostgreSQL server (started by .ci/run)."""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
# Idle OpenMP threads sleep instead of spinning (xgboost on a busy 2-core machine: 63 s instead of 4 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of a real PostgreSQL server. CI sets it; elsewhere the test is skipped unless CI demands it."""
    url = os.environ.get("AGENTML_TEST_POSTGRES_URL")
    if url:
        return url
    message = "PostgreSQL not configured: run .ci/run, or set AGENTML_TEST_POSTGRES_URL=postgresql://user:pw@host/db"
    if os.environ.get("AGENTML_REQUIRE_POSTGRES"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def new_pg_database(postgres_url: str) -> Callable[[str], AbstractContextManager[str]]:
    """`with new_pg_database("prefix") as url:` a fresh database on the PostgreSQL server, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    @contextmanager
    def create(prefix: str) -> Iterator[str]:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return create


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster with 2 CPUs and the dashboard on (Tune hangs were seen without it)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=True, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
