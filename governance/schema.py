"""The catalog a rewrite runs against: table and column names with their dialect's identifier rules."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect, NormalizationStrategy

from governance.policies import Policies, TablePolicy
from governance.principal import Principal
from governance.rights import TableRights, table_rights

# Where an unqualified table lives when the caller does not say: the dialect's default schema.
DEFAULT_DB = {"duckdb": "main", "postgres": "public"}


def fold_case(name: str, quoted: bool, strategy: NormalizationStrategy) -> str:
    """How a dialect resolves an identifier: DuckDB folds quoted ones too, PostgreSQL keeps quoted ones exact."""
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
                 *, catalog: str | None = None, db: str | None = None) -> None:
        self.dialect_name = dialect
        self.dialect = Dialect.get_or_raise(dialect)
        self.strategy = self.dialect.NORMALIZATION_STRATEGY
        self.catalog = catalog
        self.db = db if db is not None else DEFAULT_DB.get(dialect)
        policy_by_name = {self.norm(name): policy for name, policy in policies.tables.items()}
        self.tables = {
            self.norm(name): TableInfo(name, {self.norm(c): (c, t) for c, t in columns.items()},
                                       policy_by_name.get(self.norm(name)))
            for name, columns in tables.items()
        }
        # Names a CTE or alias may not take: every table the catalog or the policies know of.
        self.reserved = set(self.tables) | set(policy_by_name)
        self._rights: dict[tuple[str, int], TableRights] = {}

    def rights(self, info: TableInfo | None, principal: Principal) -> TableRights:
        """The principal's rights on a table, computed once per table for the life of this schema (one query)."""
        key = (info.name if info else "", id(principal))
        if key not in self._rights:
            self._rights[key] = table_rights(info.policy if info else None, principal)
        return self._rights[key]

    def norm(self, name: str | exp.Identifier | None) -> str:
        """The comparison key of an identifier under the dialect's case rules (a str counts as unquoted)."""
        if name is None:
            return ""
        if isinstance(name, str):
            return fold_case(name, False, self.strategy)
        return fold_case(name.name, bool(name.args.get("quoted")), self.strategy)

    def ident(self, name: str) -> exp.Identifier:
        """A quoted identifier for a catalog name, spelled so the target dialect resolves it to that object."""
        keep = self.strategy is NormalizationStrategy.CASE_INSENSITIVE
        return exp.Identifier(this=name if keep else fold_case(name, False, self.strategy), quoted=True)

    def qualifiers_match(self, table: exp.Table) -> bool:
        """True when a table reference's catalog/db parts (if any) name this schema's catalog/db."""
        wanted = [(table.args.get("db"), self.db), (table.args.get("catalog"), self.catalog)]
        return all(given is None or (expected is not None and self.norm(given) == self.norm(expected))
                   for given, expected in wanted)

    def qualified(self, name: str) -> exp.Table:
        """The fully qualified table node for catalog table `name`."""
        return exp.Table(this=self.ident(name), db=self.ident(self.db) if self.db else None,
                         catalog=self.ident(self.catalog) if self.catalog and self.db else None)
