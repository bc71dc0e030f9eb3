"""Fixtures of the API tests: the demo warehouse with its policies, a tokens file of three users, run stores on a
SQLite file and on a fresh PostgreSQL database, and an `Api` helper around a live app (TestClient, real lifespan)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import yaml
from api_support import TOKENS, USERS, Api, Server
from fastapi.testclient import TestClient

from service.api import create_app
from service.api.auth import hash_token
from service.demo import DemoWarehouse, build_warehouse
from service.settings import Settings


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoWarehouse:
    """The demo warehouse (real telco churn customers + synthetic billing) and its policies."""
    return build_warehouse(tmp_path_factory.mktemp("warehouse"))


@pytest.fixture(scope="session")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ann and bob are analysts of two regions, ada is an admin; only hashes are written."""
    entries = [{"sha256": hash_token(TOKENS[u["user"]]), **u} for u in USERS]
    path = tmp_path_factory.mktemp("auth") / "tokens.yaml"
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return path


@pytest.fixture
def pg_url(new_pg_database: Callable[[str], AbstractContextManager[str]]) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    with new_pg_database("agentml_api") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The run store: a SQLite file, then real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def settings_for(demo: DemoWarehouse, tokens_file: Path, tmp_path: Path) -> Callable[..., Settings]:
    """Settings over the demo warehouse and the tokens file; keywords override any field."""
    def make(store: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {"warehouse": demo.root, "policies": demo.policies, "run_store_url": store,
                                  "artifacts": str(tmp_path / "artifacts"), "tokens_file": tokens_file,
                                  "ray_address": None, "llm_model": None,
                                  "runner": "in-process"}  # fast; the Ray job runner has its own tests
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def api_for(settings_for: Callable[..., Settings]) -> Iterator[Callable[..., Api]]:
    """Start apps (lifespan included) on a given store; every one is stopped at the end of the test."""
    clients: list[TestClient] = []

    def start(store: str, **overrides: Any) -> Api:
        client = TestClient(create_app(settings_for(store, **overrides)))
        client.__enter__()
        clients.append(client)
        api = Api(client)
        api.ready()
        return api

    yield start
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def api(api_for: Callable[..., Api], store_url: str) -> Api:
    """A ready app over the demo warehouse, on SQLite and on PostgreSQL."""
    return api_for(store_url)


@pytest.fixture
def server_env(demo: DemoWarehouse, tokens_file: Path, tmp_path: Path) -> Callable[..., dict[str, str]]:
    """The AGENTML_* environment of an `agentml serve` subprocess over the demo warehouse."""
    def make(store: str, **extra: str) -> dict[str, str]:
        return {"AGENTML_WAREHOUSE": str(demo.root), "AGENTML_POLICIES": str(demo.policies),
                "AGENTML_RUN_STORE_URL": store, "AGENTML_ARTIFACTS": str(tmp_path / "artifacts"),
                "AGENTML_TOKENS_FILE": str(tokens_file), "AGENTML_RAY_ADDRESS": "", "RAY_ADDRESS": "",
                "AGENTML_LLM_MODEL": "", "AGENTML_RUNNER": "in-process", **extra}

    return make


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Server]]:
    """Start `agentml serve` subprocesses (ready when returned); any still alive is stopped after the test."""
    started: list[Server] = []

    def start(env: dict[str, str]) -> Server:
        server = Server(env, cwd=str(tmp_path), log=str(tmp_path / "server.log"))
        started.append(server)
        server.ready()
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.kill()
