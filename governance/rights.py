"""What one principal may see of one table: the union of its reading roles' rights.

Union semantics (PostgreSQL permissive policies / Snowflake secondary roles): a role with no row filter sees every
row, so the whole filter disappears; a column is unmasked if any reading role sees it unmasked; it is denied only if
every reading role is denied.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from governance.policies import TablePolicy
from governance.principal import Principal

V = TypeVar("V")


class Access(StrEnum):
    """How a principal sees one column."""

    PLAIN = "plain"
    MASKED = "masked"
    DENIED = "denied"


@dataclass(frozen=True)
class TableRights:
    """A principal's rights on one table. `row_filters` empty + `all_rows` means no filter at all."""

    readers: tuple[str, ...]
    denied: frozenset[str] = frozenset()          # lower-case column names
    masks: dict[str, str] = field(default_factory=dict)   # lower-case column name -> mask SQL
    row_filters: tuple[str, ...] = ()             # OR-ed together
    all_rows: bool = True

    @property
    def visible(self) -> bool:
        """True when at least one of the principal's roles may read the table."""
        return bool(self.readers)

    def access(self, column: str) -> Access:
        """PLAIN, MASKED or DENIED for `column` (any case)."""
        key = column.lower()
        if key in self.denied:
            return Access.DENIED
        return Access.MASKED if key in self.masks else Access.PLAIN


def _lower_keys(mapping: dict[str, V]) -> dict[str, V]:
    return {key.lower(): value for key, value in mapping.items()}


def _column_rights(policy: TablePolicy, readers: list[str]) -> tuple[frozenset[str], dict[str, str]]:
    denied_by = _lower_keys(policy.deny_columns)
    masked_by = _lower_keys(policy.mask_columns)
    denied: set[str] = set()
    masks: dict[str, str] = {}
    for column in set(denied_by) | set(masked_by):
        roles_denied = set(denied_by.get(column, ()))
        mask = masked_by.get(column)
        seeing = [r for r in readers if r not in roles_denied]
        if not seeing:
            denied.add(column)
        elif mask is not None and all(r in mask.roles for r in seeing):
            masks[column] = mask.using
    return frozenset(denied), masks


def _row_rights(policy: TablePolicy, readers: list[str]) -> tuple[tuple[str, ...], bool]:
    filters: list[str] = []
    for role in readers:
        own = [rule.using for rule in policy.row_filters if role in rule.roles]
        if not own:
            return (), True
        filters.extend(u for u in own if u not in filters)
    return tuple(filters), False


def table_rights(policy: TablePolicy | None, principal: Principal) -> TableRights:
    """The principal's combined rights on a table (invisible when no role of theirs is allowed)."""
    readers = [role for role in dict.fromkeys(principal.roles) if policy is not None and role in policy.allow]
    if policy is None or not readers:
        return TableRights(readers=())
    denied, masks = _column_rights(policy, readers)
    filters, all_rows = _row_rights(policy, readers)
    return TableRights(readers=tuple(readers), denied=denied, masks=masks, row_filters=filters, all_rows=all_rows)
