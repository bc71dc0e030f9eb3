"""Reading the governed catalog: column kinds, entity keys, time columns, related tables and the target a prompt means.

The catalog is `Engine.catalog(principal)`: `{table: {column: duckdb type}}`, only what the principal may see. The
planner never sees more than that (no row values, no denied tables), so everything here works from names and types.
"""
from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from planner.errors import PlanError

Catalog = Mapping[str, Mapping[str, str]]
Kind = Literal["integer", "float", "boolean", "text", "temporal", "other"]

_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
            "UBIGINT", "UHUGEINT", "INT1", "INT2", "INT4", "INT8", "LONG", "SHORT")
_FLOAT = ("DOUBLE", "FLOAT", "REAL", "DECIMAL", "NUMERIC", "FLOAT4", "FLOAT8")
_TEXT = ("VARCHAR", "TEXT", "STRING", "CHAR", "BPCHAR", "ENUM", "UUID")

# Words that mean the same goal. A prompt word and a column word in the same group match ("leaving" ~ "churn").
CONCEPTS: dict[str, frozenset[str]] = {name: frozenset(words.split()) for name, words in {
    "churn": "churn churned churning churner churners churns leave leaves leaving left leaver leavers attrition "
             "attrited attrite cancel cancels canceled cancelled cancellation cancellations cancelling quit quits "
             "quitting defect defected defection lapse lapsed exit exited exiting retention retain retained "
             "unsubscribe unsubscribed",
    "revenue": "revenue revenues charge charges charged spend spends spending spent sales income amount amounts "
               "price prices cost costs ltv turnover earnings",
    "fraud": "fraud fraudulent frauds scam chargeback chargebacks",
    "default": "default defaulted defaults delinquent delinquency arrears",
    "conversion": "convert converts converted conversion conversions purchase purchased purchases buy buys bought",
    "satisfaction": "satisfaction satisfied nps csat rating ratings",
    "tenure": "tenure stay stays staying longevity",
    "demand": "demand quantity units volume orders",
}.items()}
BINARY_CONCEPTS = frozenset({"churn", "fraud", "default", "conversion"})
_WORD_CONCEPT = {word: name for name, words in CONCEPTS.items() for word in words}

# Words that say nothing about which column is meant: never evidence for a target.
STOPWORDS = frozenset("""a an the and or of for to in on at by with from into about as is are was were be been
being do does did will would can could should may might must i me my we us our you your it its this that these those
what which who whom why how when where there here than then so if not no yes please also just very more most less
build train make create fit run give tell show explain find get want need like using use based over per each all any
some model models classifier classifiers regressor prediction predictions predict predicting forecast forecasting
estimate estimating classify classification regression regress drive drives driving driver drivers matter matters
affect affects influence influences factor factors reason reasons happen happens users user customers customer
people clients client accounts account members member rows row data table tables column columns target label feature
features quick quickly fast rough tune tuned tuning trials trial rounds round budget baseline compare compared
against versus vs score scoring new next month months day days week weeks year years last lag lags lagged rolling
window ratio ratios difference history historical trend trends good best better top important most key keys id
ids""".split())

# Column words that qualify without naming a concept: `is_churned` is about "churned".
_GENERIC = frozenset({"is", "has", "was", "did", "flag", "num", "number", "of", "the", "nb", "n"})
# Words after which a column is probably the target ("predict X") and before which ("X model").
_TARGET_BEFORE = frozenset({"predict", "predicting", "prediction", "forecast", "forecasting", "estimate",
                            "estimating", "classify", "regress", "drives", "drive", "driving", "drivers", "affects",
                            "influences", "explain", "why", "target", "of", "for", "about"})
_TARGET_AFTER = frozenset({"model", "models", "classifier", "regressor", "prediction", "predictions", "predictor",
                           "forecast", "score", "drivers", "analysis"})
# Words after which a column is probably an input ("from tenure", "using billing").
_FEATURE_BEFORE = frozenset({"from", "using", "with", "by", "including", "include", "add", "features", "feature",
                             "lag", "rolling", "ratio", "over", "per", "exclude", "excluding", "without"})
_TEMPORAL_NAMES = frozenset({"date", "time", "timestamp", "ts", "month", "day", "week", "period", "datetime"})
_CUTOFF_NAMES = ("as_of", "asof", "cutoff", "snapshot", "observation", "label_date", "reference_date", "score_date")
_PII_HEADS = frozenset({"name", "email", "phone", "mobile", "telephone", "address", "ssn", "passport", "iban", "dob",
                        "birthdate", "birthday"})
_PII_PAIRS = frozenset({("phone", "number"), ("mobile", "number"), ("security", "number"), ("card", "number")})
_POST_OUTCOME = frozenset({"date", "reason", "at", "on", "time", "score", "probability", "prob", "status", "flag",
                           "type", "code", "outcome", "result"})


def column_kind(type_: str) -> Kind:
    """The broad kind of a DuckDB type name."""
    base = type_.upper().split("(")[0].strip()
    if base.startswith(("TIMESTAMP", "DATE", "TIME", "INTERVAL")):
        return "temporal"
    if base in ("BOOLEAN", "BOOL"):
        return "boolean"
    if base in _INTEGER:
        return "integer"
    if base in _FLOAT:
        return "float"
    if base in _TEXT:
        return "text"
    return "other"


def is_numeric(type_: str) -> bool:
    """Integer or floating point (DECIMAL included)."""
    return column_kind(type_) in ("integer", "float")


@functools.lru_cache(maxsize=8192)
def words(name: str) -> tuple[str, ...]:
    """`monthly_charges`, `MonthlyCharges`, `monthly charges` -> ("monthly", "charges"). Cached: the planner asks
    for the words of every column name several times per prompt."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return tuple(w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w)


def _same_word(a: str, b: str) -> bool:
    """Equal up to a plural s: `charge` ~ `charges`."""
    return a == b or (a.rstrip("s") == b.rstrip("s") and min(len(a), len(b)) > 3)


def singular(name: str) -> str:
    """A table name's entity: customers -> customer, companies -> company, addresses -> address."""
    if name.endswith("ies") and len(name) > 4:
        return name[:-3] + "y"
    if name.endswith(("sses", "xes", "ches", "shes")):
        return name[:-2]
    if name.endswith("s") and not name.endswith(("ss", "us", "is")):
        return name[:-1]
    return name


def lookup(names: Iterable[str], name: str) -> str | None:
    """The spelling in `names` of `name`, matched case-insensitively; None when absent."""
    lowered = name.lower()
    return next((n for n in names if n.lower() == lowered), None)


def close_matches(name: str, names: Iterable[str], n: int = 3) -> list[str]:
    """Names that look like `name` (for "did you mean" hints)."""
    pool = list(names)
    by_lower = {p.lower(): p for p in pool}
    return [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.6)]


def is_key_like(column: str) -> bool:
    """Identifier columns: `id`, `customer_id`, `customerId`, `uuid`, `*_key`."""
    ws = words(column)
    return bool(ws) and ws[-1] in ("id", "uuid", "guid", "key")


def is_pii_like(column: str) -> bool:
    """Free-text identifiers (names, emails, phone numbers): no generalisable signal, and sensitive. Judged by the
    last words (`customer_name`, `phone_number`), so that `phone_service` stays a feature."""
    ws = words(column)
    return bool(ws) and (ws[-1] in _PII_HEADS or ws[-2:] in _PII_PAIRS)


def time_columns(columns: Mapping[str, str]) -> list[str]:
    """Time columns, typed ones first (DATE/TIMESTAMP), then ones named like a time (`month`, `created_at`)."""
    typed = [c for c, t in columns.items() if column_kind(t) == "temporal"]
    named = [c for c in columns if c not in typed and (set(words(c)) & _TEMPORAL_NAMES or words(c)[-1:] == ("at",))
             and column_kind(columns[c]) != "float"]
    return typed + named


def cutoff_column(columns: Mapping[str, str]) -> str | None:
    """The column holding each row's label cutoff (`as_of`, `snapshot_date`), if the table has one."""
    for column in time_columns(columns):
        if any(hint in column.lower() for hint in _CUTOFF_NAMES):
            return column
    return None


def _own_key_names(table: str) -> tuple[str, ...]:
    return f"{singular(table)}_id", f"{table}_id", "id", f"{singular(table)}id"


def entity_key(catalog: Catalog, table: str) -> str | None:
    """The column identifying one entity of `table`: `<entity>_id`, `id`, then an `*_id` shared with another table."""
    columns = catalog[table]
    for name in _own_key_names(table):
        if (found := lookup(columns, name)) is not None:
            return found
    keys = [c for c in columns if is_key_like(c)]
    shared = [c for c in keys if any(lookup(cols, c) for t, cols in catalog.items() if t != table)]
    return next(iter(shared or keys), None)


def owns_key(catalog: Catalog, table: str) -> bool:
    """Whether `table` is where its entity lives: it has `id` or `<entity>_id` (customers.customer_id)."""
    return any(lookup(catalog[table], k) for k in _own_key_names(table))


def foreign_keys(catalog: Catalog, table: str) -> list[str]:
    """Key columns of `table` that identify another table's entities (`customer_id` in `billing`)."""
    others = {f"{singular(t)}_id" for t in catalog if t != table} | {f"{t}_id" for t in catalog if t != table}
    return [c for c in catalog[table] if c.lower() in others]


def is_event_table(catalog: Catalog, table: str) -> bool:
    """Rows over time about another table's entities (billing: customer_id + month)."""
    return bool(time_columns(catalog[table])) and bool(foreign_keys(catalog, table))


@dataclass(frozen=True)
class Related:
    """A table with rows about the entity over time: join on `key`, order by `time`, aggregate `values`."""

    table: str
    key: str
    time: str
    values: tuple[str, ...]


def _is_copy(columns: Mapping[str, str], entity: Mapping[str, str], link: str) -> bool:
    """Mostly the entity table's own columns (a snapshot or the rows to score), not rows over time."""
    own = [c for c in columns if c != link]
    return bool(own) and sum(lookup(entity, c) is not None for c in own) > 0.6 * len(own)


def related_tables(catalog: Catalog, table: str, key: str | None, max_values: int = 3) -> list[Related]:
    """Tables sharing the entity key (by name, or `<entity>_id` when the key is `id`) and holding a time column."""
    if key is None:
        return []
    names = {key.lower(), f"{singular(table)}_id"}
    out = []
    for other, columns in catalog.items():
        link = next((c for c in columns if c.lower() in names), None)
        times = time_columns(columns)
        if other == table or link is None or not times or owns_key(catalog, other) \
                or _is_copy(columns, catalog[table], link):
            continue  # an entity table of its own, or a copy of this one (new rows to score), is not a history
        values = [c for c, t in columns.items() if is_numeric(t) and c not in (link, *times) and not is_key_like(c)]
        out.append(Related(other, link, times[0], tuple(values[:max_values])))
    return out


# ---------------------------------------------------------------------------------------------------------------------
# The target a prompt means


@dataclass(frozen=True)
class Candidate:
    """A column the prompt may mean as target, how strongly (`score`) and how (`named`, `words`, `synonym`)."""

    table: str
    column: str
    score: float
    how: str

    def label(self, qualified: bool) -> str:
        return f"{self.table}.{self.column}" if qualified else self.column


@dataclass(frozen=True)
class PromptWords:
    """The prompt as words, with spelling fixed against the catalog's vocabulary (column words and synonyms)."""

    raw: tuple[str, ...]
    fixed: tuple[str, ...]   # raw words, misspellings replaced by the vocabulary word they are close to
    quality: tuple[float, ...]  # 1.0 as typed, 0.8 spelling-corrected, 0.0 not evidence (stopword, table name)


def prompt_words(prompt: str, catalog: Catalog) -> PromptWords:
    """Tokenise `prompt`; table names and stopwords are not evidence for a column; misspellings are fixed."""
    raw = words(prompt)
    tables = {w for t in catalog for w in (t.lower(), singular(t.lower()))}
    vocab = {w for cols in catalog.values() for c in cols for w in words(c)} | set(_WORD_CONCEPT)
    pairs = [_fix_word(word, tables, vocab) for word in raw]
    return PromptWords(raw, tuple(w for w, _ in pairs), tuple(q for _, q in pairs))


def _fix_word(word: str, tables: set[str], vocab: set[str]) -> tuple[str, float]:
    """(word as meant, quality): stopwords and table names are no evidence (0), misspellings count 0.8."""
    if word in STOPWORDS or word in tables or word.isdigit():
        return word, 0.0
    if word in vocab or len(word) < 4:
        return word, 1.0
    close = difflib.get_close_matches(word, sorted(vocab), n=1, cutoff=0.8)
    return (close[0], 0.8) if close else (word, 1.0)


def _word_match(col_word: str, pw: PromptWords) -> tuple[float, int] | None:
    """Best (quality, position) at which a column word appears in the prompt: exact, same concept, or misspelt."""
    best: tuple[float, int] | None = None
    concept = _WORD_CONCEPT.get(col_word)
    for i, (word, q) in enumerate(zip(pw.fixed, pw.quality, strict=True)):
        if not q:
            continue
        if _same_word(word, col_word):
            score = q
        elif concept is not None and _WORD_CONCEPT.get(word) == concept:
            score = 0.9 * q
        else:
            continue
        if best is None or score > best[0]:
            best = (score, i)
    return best


def _named_at(column: str, pw: PromptWords) -> int | None:
    """Position where the column's full name is spelt out in the prompt (`monthly charges`, `monthly_charges`)."""
    cw = words(column)
    if all(w in STOPWORDS for w in cw):
        return None  # `as_of` is not named by "as of 2024-01-01", nor `score` by "score new rows"
    return _spelt_at(cw, pw.raw)


def named_columns(pw: PromptWords, columns: Iterable[str]) -> list[str]:
    """The columns whose full name the prompt spells out, in prompt order."""
    found = [(pos, c) for c in columns if (pos := _named_at(c, pw)) is not None]
    return [c for _, c in sorted(found)]


def _spelt_at(name_words: tuple[str, ...], said: tuple[str, ...]) -> int | None:
    """Where `name_words` appear in a row in `said` (plurals aside), or None."""
    for i in range(len(said) - len(name_words) + 1):
        if all(_same_word(said[i + j], w) for j, w in enumerate(name_words)):
            return i
    return None


def named_tables(prompt: str, tables: Iterable[str]) -> list[str]:
    """The tables the prompt names (`billing`, `transaction history`, `the new customers`)."""
    said = words(prompt)
    return [t for t in tables if _spelt_at(words(t), said) is not None or singular(t.lower()) in said]


def _slot_bonus(position: int, pw: PromptWords, span: int) -> float:
    """+1 where the column sits where targets go ("predict X", "X model"), -0.75 where inputs go ("from X")."""
    before = [w for w in pw.raw[max(0, position - 4):position] if w not in ("the", "a", "an", "my", "our", "their")]
    after = pw.raw[position + span:position + span + 3]
    if any(w in _FEATURE_BEFORE for w in before[-3:]):
        return -0.75
    if any(w in _TARGET_BEFORE for w in before[-3:]) or any(w in _TARGET_AFTER for w in after):
        return 1.0
    return 0.0


def _score_column(column: str, pw: PromptWords) -> tuple[float, str] | None:
    """How strongly the prompt names `column`: 3 spelt out, 2 every word (or its synonym), 1.5 the head word."""
    named = _named_at(column, pw)
    if named is not None:
        return 3.0 + _slot_bonus(named, pw, len(words(column))), "named"
    significant = [w for w in words(column) if w not in _GENERIC] or list(words(column))
    matches = [_word_match(w, pw) for w in significant]
    head = matches[-1]
    if head is None:
        return None
    found = [m for m in matches if m is not None]
    quality = sum(m[0] for m in found) / len(found)
    base = 2.0 if len(found) == len(matches) else 1.5
    how = "synonym" if quality < 1.0 else "words"
    return base * quality + _slot_bonus(min(m[1] for m in found), pw, 1), how


def _target_tables(catalog: Catalog) -> list[str]:
    """Tables a target may come from unless spelt out: entity tables (event tables are feature sources)."""
    entity = [t for t in catalog if not is_event_table(catalog, t)]
    return entity or list(catalog)


def target_candidates(prompt: str, catalog: Catalog) -> list[Candidate]:
    """Every column the prompt may mean as its target, best first."""
    pw = prompt_words(prompt, catalog)
    entity = set(_target_tables(catalog))
    out = []
    for table, columns in catalog.items():
        times = set(time_columns(columns))
        for column in columns:
            scored = _score_column(column, pw)
            if scored is None:
                continue
            score, how = scored
            plain = how != "named"
            if plain and (table not in entity or column in times or is_key_like(column) or is_pii_like(column)):
                continue  # keys, times and event rows are targets only when the prompt spells them out
            out.append(Candidate(table, column, score, how))
    return sorted(out, key=lambda c: -c.score)


def binary_like(column: str, type_: str) -> bool:
    """A yes/no column by type or by name (`is_active`, `churned`, `fraud`)."""
    ws = words(column)
    return column_kind(type_) == "boolean" or (bool(ws) and ws[0] in ("is", "has", "was", "did")) \
        or (bool(ws) and _WORD_CONCEPT.get(ws[-1]) in BINARY_CONCEPTS)


def _or_list(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _ask(question: str, lead: str, candidates: list[str]) -> PlanError:
    """The question to ask: `question` with the candidates as a list (API), `lead` followed by them (terminal)."""
    return PlanError(question, candidates=candidates,
                     cli_message=f"{lead} {_or_list(candidates)}?" if candidates else question,
                     hint="pick one of the candidates as the target" if candidates else
                     "name the column to predict in the goal, or set the target",
                     cli_hint="Re-run with --target COL." if candidates else
                     "name the column to predict with --target COL")


def _labels(cands: list[Candidate]) -> list[str]:
    qualified = len({c.column for c in cands}) < len(cands)
    return list(dict.fromkeys(c.label(qualified) for c in cands))


def _prefer(tables: list[str], prompt: str, catalog: Catalog) -> list[str]:
    """Of several tables holding the same column: the one the prompt names, else the one that is not an event table,
    else the entity's own table (customers.tenure over new_customers.tenure); several left = still a question."""
    entity = set(_target_tables(catalog))
    for keep in (named_tables(prompt, tables), [t for t in tables if t in entity],
                 [t for t in tables if owns_key(catalog, t)]):
        if len(keep) == 1:
            return keep
    return tables


def _prefer_tables(best: list[Candidate], prompt: str, catalog: Catalog) -> list[Candidate]:
    """Equally good candidates from several tables: keep those of the preferred table (the question that remains is
    about columns, not about copies of the same table)."""
    keep = set(_prefer(list(dict.fromkeys(c.table for c in best)), prompt, catalog))
    return [c for c in best if c.table in keep]


def resolve_target(prompt: str, catalog: Catalog, target: str | None = None) -> tuple[str, str]:
    """(table, column) the prompt wants predicted. Raises PlanError with the candidates when it cannot tell."""
    if target is not None:
        return _resolve_named(target, catalog)
    cands = target_candidates(prompt, catalog)
    if not cands:
        tables = _target_tables(catalog)
        tables = [t for t in tables if owns_key(catalog, t)] or tables
        yes_no = [Candidate(t, c, 0.0, "binary") for t in tables for c, ty in catalog[t].items()
                  if binary_like(c, ty) and not is_key_like(c)]
        raise _ask("The goal names no column to predict: which column should the model predict?",
                   "Which column should the model predict? Candidates:", _labels(yes_no)[:8]) if yes_no else _ask(
            "No column in your catalog matches this goal; which column should the model predict?", "", [])
    best = _prefer_tables([c for c in cands if c.score >= cands[0].score - 0.05], prompt, catalog)
    if len({(c.table, c.column) for c in best}) > 1:
        raise _ask("Which column is the target?", "Which column is the target:", _labels(best))
    return best[0].table, best[0].column


def _resolve_named(target: str, catalog: Catalog) -> tuple[str, str]:
    """`--target COL` or `--target table.col`, as the principal sees the catalog."""
    table_part, _, column_part = target.rpartition(".")
    tables = [t for t in catalog if not table_part or t.lower() == table_part.lower()]
    hits = [(t, c) for t in tables if (c := lookup(catalog[t], column_part)) is not None]
    if len(hits) > 1:
        keep = set(_prefer([t for t, _ in hits], "", catalog))
        hits = [h for h in hits if h[0] in keep]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise _ask("Which table holds the target?", "Which table holds the target:", [f"{t}.{c}" for t, c in hits])
    every = {c for t in tables for c in catalog[t]}
    close = close_matches(column_part, every)
    raise PlanError(f"column {target!r} is not in your catalog (it does not exist or you may not see it)",
                    candidates=close, hint=f"did you mean {_or_list(close)}?" if close else
                    "run `agentml plan` with --json to list the columns you may use")


# ---------------------------------------------------------------------------------------------------------------------
# Columns that must not be features


def leakage_columns(columns: Mapping[str, str], target: str, classification: bool) -> list[str]:
    """Columns that record the outcome itself (`churn_reason`, `churn_date`, `cancelled` next to `churn`)."""
    target_words = set(words(target)) - _GENERIC
    target_concepts = {_WORD_CONCEPT[w] for w in target_words if w in _WORD_CONCEPT}
    out = []
    for column in columns:
        ws = set(words(column))
        if column == target or not ws:
            continue
        related = bool(ws & target_words) or any(_WORD_CONCEPT.get(w) in target_concepts for w in ws)
        if related and (ws & _POST_OUTCOME or classification):
            out.append(column)
    return out
