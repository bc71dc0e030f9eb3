"""Shared fixtures: a real local Ray cluster, a real PostgreSQL server (started by .ci/run) and a real S3-compatible
server on loopback (moto)."""
from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

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


# What every node of a cluster has in its environment for an S3 artifact store (the Helm chart puts them in every pod
# from a Secret): credentials for the loopback S3 server, which accepts any. The endpoint is not here: it travels with
# the artifact store's filesystem, as the driver resolved it.
S3_NODE_ENV = {"AWS_ACCESS_KEY_ID": "agentml-test", "AWS_SECRET_ACCESS_KEY": "agentml-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster with 2 CPUs and the dashboard on (Tune hangs were seen without it). Its processes
    start with S3_NODE_ENV, as every node of a cluster with an S3 artifact store does; this process does not keep it."""
    import ray

    if not ray.is_initialized():
        with pytest.MonkeyPatch.context() as env:
            for name, value in S3_NODE_ENV.items():
                env.setenv(name, value)
            ray.init(address="local", num_cpus=2, include_dashboard=True, log_to_driver=False,
                     configure_logging=False)
    yield ray
    ray.shutdown()


@dataclass(frozen=True)
class S3Server:
    """An S3-compatible server on loopback with one empty bucket: `uri(prefix)` is a store root inside it, `keys`
    lists what is in it."""

    endpoint: str
    bucket: str

    def uri(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under `prefix`, listed by boto3 (not through pyarrow, which the code under test uses)."""
        import boto3

        pages = boto3.client("s3", endpoint_url=self.endpoint).get_paginator("list_objects_v2")
        return [obj["Key"] for page in pages.paginate(Bucket=self.bucket, Prefix=prefix)
                for obj in page.get("Contents", []) if not obj["Key"].endswith("/")]  # not pyarrow's folder markers


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 (a free port), one bucket; this process gets the endpoint and credentials in its
    environment (`AWS_ENDPOINT_URL`, which pyarrow and boto3 honour) for the session."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = pytest.MonkeyPatch()
    for name, value in {**S3_NODE_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():
        env.setenv(name, value)
    try:
        boto3.client("s3").create_bucket(Bucket="agentml-test")
        yield S3Server(f"http://127.0.0.1:{port}", "agentml-test")
    finally:
        env.undo()
        server.stop()
