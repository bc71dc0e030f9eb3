"""Property tests: identifier case, quoting, comments and whitespace never change what a query returns, and never
turn a refused query into an allowed one (DuckDB resolves identifiers case-insensitively, quoted or not)."""
from __future__ import annotations

import re

import pytest
from gov_testdata import PRINCIPALS, leaked
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance import Engine, GovernanceError, PolicyViolation

KEYWORDS = {"select", "from", "where", "and", "or", "group", "by", "order", "join", "on", "as", "with", "in",
            "exists", "union", "all", "distinct", "not", "like", "limit", "having", "left", "desc"}
_TOKEN = re.compile(r"'[^']*'|\w+|[^\w\s]")
SEPARATORS = st.sampled_from([" ", "  ", "\n", "\t", " /* x */ ", "/**/", " -- c\n", "\n\t "])

ALLOWED = [
    ("analyst_eu", "SELECT name, spend FROM customers WHERE spend > 50 ORDER BY name"),
    ("analyst_eu", "SELECT c.region, count(*) AS n FROM customers AS c JOIN billing AS b ON b.customer_id = c.id "
                   "GROUP BY c.region"),
    ("support_sam", "SELECT email, phone FROM customers WHERE id IN (SELECT customer_id FROM tickets) ORDER BY id"),
    ("analyst_marketing", "WITH x AS (SELECT id, phone FROM customers) SELECT phone FROM x ORDER BY id"),
    ("finance", "SELECT plan, memo FROM billing WHERE amount > 10 ORDER BY plan"),
]
REFUSED = [
    ("analyst_eu", "SELECT ssn FROM customers"),
    ("analyst_eu", "SELECT c.name FROM customers AS c WHERE c.ssn LIKE 'x'"),
    ("support_sam", "SELECT name FROM customers UNION SELECT value FROM secrets"),
    ("finance", "WITH billing AS (SELECT 1 AS card) SELECT card FROM billing"),
]


def _recase(word: str, flips: list[bool]) -> str:
    return "".join(c.upper() if flip else c.lower() for c, flip in zip(word, flips + [False] * len(word), strict=False))


@st.composite
def variant(draw: st.DrawFn, sql: str) -> str:
    """The same query with random keyword/identifier case, identifier quoting, comments and whitespace."""
    tokens = _TOKEN.findall(sql)
    out: list[str] = []
    for i, token in enumerate(tokens):
        word = token.isidentifier()
        if word:
            token = _recase(token, draw(st.lists(st.booleans(), max_size=len(token))))
        is_function = i + 1 < len(tokens) and tokens[i + 1] == "("
        if word and token.lower() not in KEYWORDS and not is_function and draw(st.booleans()):
            token = f'"{token}"'
        out.append(token)
        out.append(draw(SEPARATORS) if i + 1 < len(tokens) else draw(st.sampled_from(["", " ", "\n", ";"])))
    return draw(st.sampled_from(["", " ", "\n"])) + "".join(out)


def _values(engine: Engine, sql: str, who: str) -> list[tuple]:
    # Compare values only: the spelling of a column in the query becomes its result name.
    return [tuple(row.values()) for row in engine.query(sql, PRINCIPALS[who]).to_pylist()]


PROPERTY_SETTINGS = settings(max_examples=25, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize(("who", "sql"), ALLOWED)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_variants_return_the_same_rows(who: str, sql: str, data: st.DataObject, gov_engine: Engine) -> None:
    text = data.draw(variant(sql))
    assert _values(gov_engine, text, who) == _values(gov_engine, sql, who)


@pytest.mark.parametrize(("who", "sql"), REFUSED)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_variants_stay_refused(who: str, sql: str, data: st.DataObject, gov_engine: Engine) -> None:
    with pytest.raises(PolicyViolation) as original:
        gov_engine.query(sql, PRINCIPALS[who])
    text = data.draw(variant(sql))
    with pytest.raises(PolicyViolation) as raised:
        gov_engine.query(text, PRINCIPALS[who])
    assert raised.value.kind == original.value.kind


FRAGMENTS = ["SELECT", "*", "ssn", "name", "email", "c", "c.*", "customers", "billing", "secrets", "c.ssn", "FROM",
             "WHERE", "JOIN", "ON", "USING (ssn)", "AS c", "AS customers", "(", ")", ",", "=", "'x'", "1", "UNION",
             "WITH x AS", "x", "x.ssn", "EXISTS", "IN", "LATERAL", "COLUMNS(*)", "struct_pack", "read_csv",
             "'/etc/passwd'", "query_table", "EXCLUDE", "REPLACE", "ORDER BY", "GROUP BY", "count(*)", ";",
             "/* c */", "--\n", '"SSN"', "main.customers", "information_schema.tables", "secret_df", "NOT", "AND"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=14))
def test_random_fragments_never_crash_or_leak(words: list[str], gov_engine: Engine) -> None:
    """Any input ends as rows without forbidden canaries, or as a GovernanceError: never another exception."""
    who = PRINCIPALS["analyst_eu"]
    try:
        text = repr(gov_engine.query(" ".join(words), who).to_pylist())
    except GovernanceError as err:
        text = f"{err.message} {err.hint}"
    assert not leaked(text, who)
