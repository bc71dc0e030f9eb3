"""PostgreSQL as the oracle for agentml governance.

The oracle policy file (oracle_policies.yaml) is enforced twice over the same data (oracle_data.py):
by agentml (`Engine.query` on DuckDB) and natively by a real PostgreSQL server (roles, column GRANTs, permissive
RLS policies, security_barrier views for masks; see oracle_pg.py). Every corpus query (oracle_queries.sql) runs for
every principal on both; they must return the same multiset of rows, or both deny.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
from oracle_compare import Comparison, OracleQuery, load_queries, run_agentml, run_postgres
from oracle_data import PRINCIPALS, OraclePrincipal, build_tables
from oracle_pg import load_policy_yaml, pg_oracle, principal_session

from governance import Engine, PolicyViolation, Principal, load_policies

pytestmark = pytest.mark.postgres

HERE = Path(__file__).parent
POLICY_PATH = HERE / "oracle_policies.yaml"
QUERIES = load_queries(HERE / "oracle_queries.sql")
MIN_AGREEING = 100


class OracleRun:
    """Both engines, one PostgreSQL session per principal, and a cache so each comparison runs once."""

    def __init__(self, engine: Engine, sessions: dict[str, psycopg.Connection]) -> None:
        self.engine = engine
        self.sessions = sessions
        self._cache: dict[str, list[Comparison]] = {}

    def compare(self, query: OracleQuery) -> list[Comparison]:
        """The query's comparison for every principal."""
        if query.name not in self._cache:
            self._cache[query.name] = [self._compare_one(query, p) for p in PRINCIPALS]
        return self._cache[query.name]

    def _compare_one(self, query: OracleQuery, principal: OraclePrincipal) -> Comparison:
        who = Principal(user=principal.user, roles=list(principal.roles), attributes=dict(principal.attributes))
        agentml = run_agentml(lambda text: self.engine.query(text, who), query.sql, PolicyViolation)
        postgres = run_postgres(self.sessions[principal.user], query.sql)
        return Comparison(query, principal.user, agentml, postgres)


@pytest.fixture(scope="module")
def oracle_run(postgres_url: str) -> Iterator[OracleRun]:
    """agentml's engine and the PostgreSQL oracle over the same data and policies."""
    tables = build_tables()
    engine = Engine(load_policies(POLICY_PATH))
    for table in tables.values():
        engine.register(table.name, table.to_arrow())
    with pg_oracle(postgres_url, load_policy_yaml(POLICY_PATH), tables, PRINCIPALS) as oracle, ExitStack() as stack:
        sessions = {p.user: stack.enter_context(principal_session(oracle, p)) for p in PRINCIPALS}
        yield OracleRun(engine, sessions)


def test_corpus_is_well_formed() -> None:
    """Enough distinct queries, unique names, so a failure names exactly one entry."""
    names = [q.name for q in QUERIES]
    assert len(set(names)) == len(names), "duplicate query names in oracle_queries.sql"
    assert len(QUERIES) >= MIN_AGREEING


@pytest.mark.parametrize("query", QUERIES, ids=[q.name for q in QUERIES])
def test_agentml_agrees_with_postgres(oracle_run: OracleRun, query: OracleQuery) -> None:
    """Same multiset of rows or both DENIED, for every principal."""
    disagreements = [c for c in oracle_run.compare(query) if not c.agrees]
    assert not disagreements, "agentml and PostgreSQL disagree:\n" + "\n".join(c.diff() for c in disagreements)


def test_oracle_summary_and_coverage(oracle_run: OracleRun) -> None:
    """>= 100 queries agree for every principal, and the corpus really exercises rows, denials, filters and masks."""
    results = {q.name: oracle_run.compare(q) for q in QUERIES}
    flat = [c for comparisons in results.values() for c in comparisons]
    agreeing = [name for name, comparisons in results.items() if all(c.agrees for c in comparisons)]
    with_rows = [c for c in flat if c.agrees and c.postgres.kind == "rows" and c.postgres.rows]
    denied = [c for c in flat if c.agrees and c.postgres.kind == "denied"]
    print(f"\npg oracle: {len(agreeing)}/{len(QUERIES)} queries agree for all {len(PRINCIPALS)} principals; "
          f"{sum(c.agrees for c in flat)}/{len(flat)} comparisons agree "
          f"({len(with_rows)} with rows, {len(denied)} both denied)")
    assert len(agreeing) >= MIN_AGREEING, [c.diff() for c in flat if not c.agrees][:5]
    assert len(with_rows) >= 300 and len(denied) >= 100, "the corpus must exercise both results and denials"
    _assert_policies_bite(results)


def _assert_policies_bite(results: dict[str, list[Comparison]]) -> None:
    """Non-vacuity: every restricted principal sees something different from admin, and masked values show up."""
    by_user = {c.user: c for c in results["star-customers"]}
    admin_rows = by_user["adm"].postgres.rows
    for user in ("ann", "bob", "sue", "fay", "cam", "dan"):
        assert by_user[user].postgres.rows != admin_rows, f"{user} sees what admin sees: the policy does nothing"
    masked = [v for row in by_user["sue"].postgres.rows for v in row if isinstance(v, str) and v.startswith("***@")]
    assert masked, "support should see masked e-mail addresses"
