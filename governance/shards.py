"""Shards of a governed result: the governed SQL wrapped in a predicate that keeps one of `count` disjoint parts.

The predicate is added *after* the rewrite, around the governed SQL, so it can only drop rows the principal may see,
never add any: a shard needs no rights of its own and every shard is audited like the query it comes from. Rows are
split by a hash, computed in the warehouse, of the entity key (so an entity's rows stay together) or else of the whole
governed row; `count` readers then read disjoint parts in parallel and together read every row exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from governance.errors import GovernanceError

ALIAS = "__agentml_shard"
# hash of {x} -> a non-negative shard number below {n}, per dialect. ABS(MOD(...)) rather than MOD(ABS(...)): the
# absolute value of the smallest 64-bit integer overflows, the remainder's never does.
_SHARD_NUMBER = {
    "duckdb": "hash({x}) % {n}",
    "postgres": "ABS(MOD(hashtext(CAST({x} AS TEXT)), {n}))",
    "snowflake": "ABS(MOD(HASH({x}), {n}))",
    "bigquery": "ABS(MOD(FARM_FINGERPRINT(TO_JSON_STRING({x})), {n}))",
    "databricks": "ABS(MOD(xxhash64({x}), {n}))",
}


@dataclass(frozen=True)
class Shard:
    """Part `index` of `count` of a governed result, split on the column `key` (None: the whole row)."""

    index: int
    count: int
    key: str | None = None

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise GovernanceError(f"shard {self.index} of {self.count} does not exist",
                                  hint="use 0 <= index < count")

    def wrap(self, governed: str, dialect: str) -> str:
        """`governed` (already rewritten SQL in `dialect`) restricted to this shard's rows."""
        template = _SHARD_NUMBER.get(dialect)
        if template is None:
            raise GovernanceError(f"reading a governed result in shards is not supported for the {dialect} dialect",
                                  hint=f"read it in one part, or use one of: {', '.join(sorted(_SHARD_NUMBER))}")
        subject = exp.column(self.key, table=ALIAS, quoted=True).sql(dialect) if self.key else ALIAS
        number = template.format(x=subject, n=self.count)
        return f"SELECT * FROM ({governed}) AS {ALIAS} WHERE {number} = {self.index}"

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}" + (f" by {self.key}" if self.key else "")
