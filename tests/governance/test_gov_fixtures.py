"""sqlglot-style fixture files: input SQL and the expected governed rewrite, or the expected violation kind.

Each case is a block of `# key: value` lines (title, principal [analyst_eu], dialect [duckdb], error) followed by
statements that end with `;` at the end of a line: the input, then (for rewrites) the expected output.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from gov_testdata import PRINCIPALS, leaked

from governance import Engine, Policies, PolicyViolation, enforce

FIXTURES = Path(__file__).parent / "fixtures"
_META = re.compile(r"^#\s*(\w+):\s*(.*)$")


@dataclass(frozen=True)
class Case:
    """One fixture case."""

    file: str
    title: str
    principal: str
    dialect: str
    sql: str
    expected: str | None
    error: str | None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.title}"


def _statements(lines: list[str]) -> list[str]:
    text = "\n".join(line for line in lines if not line.startswith("#"))
    return [s.strip() for s in re.split(r";[ \t]*$", text, flags=re.MULTILINE) if s.strip()]


def _case(file: str, block: str) -> Case | None:
    lines = [line for line in block.splitlines() if line.strip()]
    meta = dict(m.groups() for m in map(_META.match, lines) if m)
    statements = _statements(lines)
    if not statements:
        return None
    if len(statements) != (1 if "error" in meta else 2):
        raise ValueError(f"{file}: case {meta.get('title')!r} has {len(statements)} statements")
    return Case(file, meta["title"], meta.get("principal", "analyst_eu"), meta.get("dialect", "duckdb"),
                statements[0], None if "error" in meta else statements[1], meta.get("error"))


def load_cases(path: Path) -> list[Case]:
    """Every case of one fixture file."""
    blocks = re.split(r"\n\s*\n", path.read_text())
    return [case for block in blocks if (case := _case(path.name, block)) is not None]


CASES = [case for path in sorted(FIXTURES.glob("*.sql")) for case in load_cases(path)]
REWRITES = [c for c in CASES if c.expected is not None]
VIOLATIONS = [c for c in CASES if c.error is not None]


def test_fixture_corpus_size() -> None:
    assert len(CASES) >= 80
    assert all(c.file.endswith("_violations.sql") == (c.error is not None) for c in CASES)
    assert len({c.id for c in CASES}) == len(CASES), "titles must be unique within a file"


@pytest.mark.parametrize("case", REWRITES, ids=[c.id for c in REWRITES])
def test_rewrite(case: Case, gov_policies: Policies, gov_schema: dict, gov_engine: Engine) -> None:
    principal = PRINCIPALS[case.principal]
    assert enforce(case.sql, principal, gov_policies, gov_schema, case.dialect) == case.expected
    if case.dialect == "duckdb":  # the rewrite also runs, and shows nothing forbidden
        rows = gov_engine.query(case.sql, principal).to_pylist()
        assert not leaked(repr(rows), principal)


@pytest.mark.parametrize("case", VIOLATIONS, ids=[c.id for c in VIOLATIONS])
def test_violation(case: Case, gov_policies: Policies, gov_schema: dict, gov_engine: Engine) -> None:
    principal = PRINCIPALS[case.principal]
    with pytest.raises(PolicyViolation) as raised:
        enforce(case.sql, principal, gov_policies, gov_schema, case.dialect)
    assert raised.value.kind == case.error, raised.value.message
    assert raised.value.hint
    if case.dialect == "duckdb":
        with pytest.raises(PolicyViolation):
            gov_engine.query(case.sql, principal)
