"""Every bad input is a 4xx with a reason: schemathesis generates requests from the app's own OpenAPI schema (valid
and invalid bodies, odd path and query values) and the app must never answer with a server error. Bounded examples
per operation keep it short; as a user and as an admin."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from api_support import Api, auth
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from service.api import create_app
from service.demo import DemoWarehouse
from service.settings import Settings

MAX_EXAMPLES = 15


@pytest.fixture(scope="module")
def fuzz_app(demo: DemoWarehouse, tokens_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """One live app for the whole module (its lifespan runs in an outer TestClient; schemathesis calls it too)."""
    root = tmp_path_factory.mktemp("fuzz")
    app = create_app(Settings(warehouse=demo.root, policies=demo.policies, run_store_url=f"sqlite:///{root / 'r.db'}",
                              artifacts=str(root / "artifacts"), tokens_file=tokens_file, ray_address=None,
                              runner="in-process",
                              llm_model=None, max_concurrent_runs=1))
    with TestClient(app) as client:
        Api(client).ready()
        yield app


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app: FastAPI) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


def _check(case: schemathesis.Case, user: str) -> None:
    response = case.call(headers=auth(user))
    case.validate_response(response, checks=[not_a_server_error])
    content_type = (response.headers.get("content-type") or [""])[0]  # schemathesis keeps every header's values
    if 400 <= response.status_code < 500 and content_type.startswith("application/json"):
        error = response.json()["error"]  # every refusal says why
        assert error["type"] and error["message"], response.text


def _fuzz(schema: schemathesis.BaseSchema, mode: GenerationMode, user: str) -> list[str]:
    """Run every operation's generated cases; returns one line per operation that failed (with its error)."""
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema fails the test here

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def run(case: schemathesis.Case) -> None:
            _check(case, user)

        try:
            run()
        except Unsatisfiable:  # no parameters to make invalid (/healthz in negative mode): nothing to test
            continue
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.label} as {user}: {type(exc).__name__}: {str(exc)[:600]}")
    return failures


# pytest 9 and schemathesis' own pytest plugin do not get along (schema.parametrize fails at collection): the
# operations are driven with hypothesis directly, which is what the plugin does too.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_input_makes_a_server_error(fuzz_schema: schemathesis.BaseSchema, mode: GenerationMode) -> None:
    failures = [f for user in ("ann", "ada") for f in _fuzz(fuzz_schema, mode, user)]
    assert not failures, "\n".join(failures)
