"""A warehouse URL with a password never lands on a Ray job's command line: it travels in the job's environment."""
from __future__ import annotations

from executor.jobs import WAREHOUSE_ENV, JobConfig
from governance.warehouses import redact_url


def test_a_warehouse_password_travels_in_the_environment() -> None:
    secret = JobConfig(store_url="sqlite:///r.db", warehouse="postgresql://ann:s3cret@db:5432/wh", artifacts="/a",
                       module="service.jobs")
    assert "s3cret" not in secret.entrypoint("r1") and "--warehouse" not in secret.entrypoint("r1")
    assert secret.runtime_env()["env_vars"][WAREHOUSE_ENV] == "postgresql://ann:s3cret@db:5432/wh"
    plain = JobConfig(store_url="sqlite:///r.db", warehouse="/data/wh", artifacts="/a", module="service.jobs")
    assert "--warehouse /data/wh" in plain.entrypoint("r1") and WAREHOUSE_ENV not in plain.runtime_env()["env_vars"]


def test_redacted_urls_keep_everything_but_the_secret() -> None:
    assert redact_url("postgresql://ann:s3cret@db:5432/wh?schema=x") == "postgresql://ann:***@db:5432/wh?schema=x"
    assert redact_url("databricks://token:dapi1@host/sql/1.0?catalog=c") == "databricks://token:***@host/sql/1.0?catalog=c"
    assert redact_url("postgresql://db/wh?password=p&sslmode=require") == "postgresql://db/wh?password=***&sslmode=require"
