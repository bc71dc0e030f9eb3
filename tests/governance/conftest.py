"""Fixtures for governance tests: the shared policies, schema, principals and a seeded, locked-down Engine."""
from __future__ import annotations

import pytest
from gov_testdata import POLICY_FILE, PRINCIPALS, schema, seeded_engine

from governance import Engine, Policies, Principal, load_policies


@pytest.fixture(scope="session")
def gov_policies() -> Policies:
    """tests/governance/policies.yaml, loaded."""
    return load_policies(POLICY_FILE)


@pytest.fixture(scope="session")
def gov_schema() -> dict[str, dict[str, str]]:
    """{table: {column: type}} of the seeded tables."""
    return schema()


@pytest.fixture(scope="session")
def principals() -> dict[str, Principal]:
    """Named test principals (see gov_testdata.PRINCIPALS)."""
    return PRINCIPALS


@pytest.fixture(scope="session")
def gov_engine(gov_policies: Policies) -> Engine:
    """One shared seeded Engine (in-memory audit) for read-only tests."""
    return seeded_engine(gov_policies)
