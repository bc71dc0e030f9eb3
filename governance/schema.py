"""The catalog a rewrite runs against: table and column names with their dialect's identifier rules."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect, NormalizationStrategy

from governance.errors import PolicyViolation
from governance.policies import Policies, TablePolicy
from governance.principal import Principal
from governance.rights import TableRights, table_rights

# Where an unqualified table lives when the caller does not say: the dialect's default schema.
DEFAULT_DB = {"duckdb": "main", "postgres": "public"}


# The identifier case rules this module knows; any other strategy (a newer sqlglot may add some) is refused.
KNOWN_STRATEGIES = frozenset(NormalizationStrategy[name] for name in (
    "CASE_SENSITIVE", "CASE_INSENSITIVE", "CASE_INSENSITIVE_UPPERCASE", "LOWERCASE", "UPPERCASE",
    "CASE_INSENSITIVE_EXCEPT_TABLES") if name in NormalizationStrategy.__members__)


def fold_case(name: str, quoted: bool, strategy: NormalizationStrategy, *, table: bool = False) -> str:
    """How a dialect resolves an identifier: DuckDB folds quoted ones too, PostgreSQL keeps quoted ones exact,
    BigQuery keeps table names exact and folds everything else. `table`: the identifier names a table (or its
    dataset/project). Fails closed on a strategy it does not know."""
    if strategy not in KNOWN_STRATEGIES:
        raise PolicyViolation(f"unknown identifier case rule {strategy.name!r} of this SQL dialect", kind="dialect",
                              hint="Governance refuses dialects whose name resolution it does not model; use "
                              "another dialect or update governance/schema.py.")
    if strategy.name == "CASE_INSENSITIVE_EXCEPT_TABLES":
        return name if table else name.lower()
    if strategy is NormalizationStrategy.CASE_INSENSITIVE:
        return name.lower()
    if strategy is NormalizationStrategy.CASE_INSENSITIVE_UPPERCASE:
        return name.upper()
    if quoted or strategy is NormalizationStrategy.CASE_SENSITIVE:
        return name
    return name.lower() if strategy is NormalizationStrategy.LOWERCASE else name.upper()


@dataclass(frozen=True)
class TableInfo:
    """One table: its exact name, its columns (normalized name -> (exact name, type)) and its policy."""

    name: str
    columns: dict[str, tuple[str, str]]
    policy: TablePolicy | None


class GovernedSchema:
    """Tables and columns keyed by normalized identifier, the dialect, and the qualifiers of base tables."""

    def __init__(self, tables: Mapping[str, Mapping[str, str]], policies: Policies, dialect: str = "duckdb",
                 *, catalog: str | None = None, db: str | None = None, source_db: str | None = None) -> None:
        self.dialect_name = dialect
        self.dialect = Dialect.get_or_raise(dialect)
        self.strategy = self.dialect.NORMALIZATION_STRATEGY
        fold_case("", False, self.strategy)  # refuses an unknown case rule before anything is compared
        self.catalog = catalog
        self.db = db if db is not None else DEFAULT_DB.get(dialect)
        # Where the governance wrappers read the tables; queries may only name `db`. The DuckDB engine keeps raw
        # tables in a schema of their own, so a reference the rewrite missed resolves to a governed view instead.
        self.source_db = source_db or self.db
        policy_by_name = {self.norm(name, table=True): policy for name, policy in policies.tables.items()}
        self.tables = {
            self.norm(name, table=True): TableInfo(name, {self.norm(c): (c, t) for c, t in columns.items()},
                                                   policy_by_name.get(self.norm(name, table=True)))
            for name, columns in tables.items()
        }
        # Names a CTE or alias may not take: every table the catalog or the policies know of, compared without
        # case so that no dialect's case rule can let an alias capture a table's references.
        self.reserved = {name.lower() for name in (*self.tables, *policy_by_name)}
        self._rights: dict[tuple[str, int], TableRights] = {}

    def rights(self, info: TableInfo | None, principal: Principal) -> TableRights:
        """The principal's rights on a table, computed once per table for the life of this schema (one query)."""
        key = (info.name if info else "", id(principal))
        if key not in self._rights:
            self._rights[key] = table_rights(info.policy if info else None, principal)
        return self._rights[key]

    def norm(self, name: str | exp.Identifier | None, *, table: bool = False) -> str:
        """The comparison key of an identifier under the dialect's case rules (a str counts as unquoted);
        `table`: the identifier names a table, its schema or its catalog."""
        if name is None:
            return ""
        if isinstance(name, str):
            return fold_case(name, False, self.strategy, table=table)
        return fold_case(name.name, bool(name.args.get("quoted")), self.strategy, table=table)

    def ident(self, name: str, *, table: bool = False) -> exp.Identifier:
        """A quoted identifier for a catalog name, spelled so the target dialect resolves it to that object."""
        keep = self.strategy in (NormalizationStrategy.CASE_INSENSITIVE, NormalizationStrategy.CASE_SENSITIVE) or \
            self.strategy.name == "CASE_INSENSITIVE_EXCEPT_TABLES"
        return exp.Identifier(this=name if keep else fold_case(name, False, self.strategy, table=table), quoted=True)

    def qualifiers_match(self, table: exp.Table) -> bool:
        """True when a table reference's catalog/db parts (if any) name this schema's catalog/db."""
        wanted = [(table.args.get("db"), self.db), (table.args.get("catalog"), self.catalog)]
        return all(given is None or (expected is not None and
                                     self.norm(given, table=True) == self.norm(expected, table=True))
                   for given, expected in wanted)

    def qualified(self, name: str) -> exp.Table:
        """The fully qualified table node for catalog table `name`."""
        db = self.source_db
        return exp.Table(this=self.ident(name, table=True), db=self.ident(db, table=True) if db else None,
                         catalog=self.ident(self.catalog, table=True) if self.catalog and db else None)
