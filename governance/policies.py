"""Policy file (YAML) -> validated pydantic models. Every SQL snippet is parsed at load time.

```yaml
tables:
  customers:
    allow: [analyst, support, admin]          # roles that may read the table; a table not listed is invisible
    deny_columns: {ssn: [analyst, support]}   # roles that may not read the column at all
    mask_columns:
      email: {roles: [support], using: "'***@' || split_part(email, '@', 2)"}
    row_filters:
      - {roles: [analyst], using: "region = :region"}   # :name = principal attribute, bound as a literal
```
`:user` binds to `Principal.user` unless the principal has an attribute named `user`. Snippets are DuckDB SQL over
the table's own columns; `enforce` transpiles them to the target dialect. An optional top-level `roles:` list makes
every role in an `allow` list a declared one.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import sqlglot
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlglot import exp

from governance.errors import PolicyLoadError

POLICY_DIALECT = "duckdb"
# A model validator cannot set the error's location; it prefixes the sub-path with this marker instead.
_SUBPATH = "@"


@functools.lru_cache(maxsize=1024)
def _parse_snippet_cached(sql: str) -> exp.Expr:
    try:
        statements = sqlglot.parse(f"SELECT {sql}", read=POLICY_DIALECT)
    except sqlglot.errors.SqlglotError as err:
        raise ValueError(f"cannot parse {sql!r}: {str(err).splitlines()[0]}") from None
    select = statements[0] if len(statements) == 1 else None
    extra_args = [k for k, v in select.args.items() if v and k != "expressions"] if select else ["statements"]
    if not isinstance(select, exp.Select) or len(select.expressions) != 1 or extra_args:
        raise ValueError(f"cannot parse {sql!r}: expected one SQL expression, not a clause or statement")
    return select.expressions[0]


def parse_snippet(sql: str) -> exp.Expr:
    """Parse a policy SQL expression (a mask or a row filter); returns a fresh copy the caller may mutate."""
    return _parse_snippet_cached(sql).copy()


def snippet_attributes(sql: str) -> set[str]:
    """Names of the principal attributes (`:name` placeholders) a policy snippet uses."""
    return {p.name for p in _parse_snippet_cached(sql).find_all(exp.Placeholder)}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _SqlRule(_Model):
    roles: list[str] = Field(min_length=1)
    using: str = Field(min_length=1)

    @field_validator("using")
    @classmethod
    def _parses(cls, value: str) -> str:
        expression = _parse_snippet_cached(value)
        if any(not p.name.isidentifier() for p in expression.find_all(exp.Placeholder)):
            raise ValueError(f"cannot parse {value!r}: use named attributes like :region, not ? or $1")
        return value


class MaskRule(_SqlRule):
    """`using` replaces the column's value for the listed roles (it may reference the table's columns)."""


class RowFilter(_SqlRule):
    """`using` is a predicate over the table's columns; rows where it is not TRUE are invisible to the roles."""


class TablePolicy(_Model):
    """Who may read one table, which columns are denied or masked for whom, and which rows each role sees."""

    allow: list[str] = Field(min_length=1)
    deny_columns: dict[str, list[str]] = Field(default_factory=dict)
    mask_columns: dict[str, MaskRule] = Field(default_factory=dict)
    row_filters: list[RowFilter] = Field(default_factory=list)

    @model_validator(mode="after")
    def _roles_can_read(self) -> TablePolicy:
        allowed = set(self.allow)
        for where, roles in self._role_refs():
            unknown = sorted(set(roles) - allowed)
            if unknown:
                raise ValueError(f"{_SUBPATH}{where}: role(s) {unknown} are not in this table's allow list "
                                 f"{sorted(allowed)}")
        return self

    def _role_refs(self) -> Iterable[tuple[str, Sequence[str]]]:
        for column, roles in self.deny_columns.items():
            yield f"deny_columns.{column}", roles
        for column, mask in self.mask_columns.items():
            yield f"mask_columns.{column}.roles", mask.roles
        for i, row_filter in enumerate(self.row_filters):
            yield f"row_filters[{i}].roles", row_filter.roles


class Policies(_Model):
    """All table policies. Deny by default: a table not listed here is invisible to everyone."""

    roles: list[str] | None = None
    tables: dict[str, TablePolicy] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _declared_roles(self) -> Policies:
        if self.roles is None:
            return self
        declared = set(self.roles)
        for name, table in self.tables.items():
            unknown = sorted(set(table.allow) - declared)
            if unknown:
                raise ValueError(f"{_SUBPATH}tables.{name}.allow: role(s) {unknown} are not declared in `roles`")
        return self

    @field_validator("tables")
    @classmethod
    def _table_names(cls, tables: dict[str, TablePolicy]) -> dict[str, TablePolicy]:
        lowered = [name.lower() for name in tables]
        duplicates = sorted({n for n in lowered if lowered.count(n) > 1})
        if duplicates:
            raise ValueError(f"table names differ only by case: {duplicates}")
        return tables

    @classmethod
    def allow_all(cls, tables: Iterable[str], roles: Sequence[str] = ("local",)) -> Policies:
        """Local single-user mode: every listed table and column visible, unfiltered, to `roles`."""
        return cls(tables={name: TablePolicy(allow=list(roles)) for name in tables})

    def to_yaml(self) -> str:
        """The policies as YAML that `load_policies` reads back."""
        return yaml.safe_dump(self.model_dump(exclude_none=True), sort_keys=False)


def _loc(parts: Sequence[int | str]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _where_and_what(err: ValidationError) -> tuple[str, str]:
    """('tables.x.row_filters[0].using', 'cannot parse ...') for the first problem pydantic found."""
    first = err.errors()[0]
    loc, message = _loc(first["loc"]), first["msg"].removeprefix("Value error, ")
    if message.startswith(_SUBPATH):
        sub, message = message[len(_SUBPATH):].split(": ", 1)
        loc = f"{loc}.{sub}" if loc else sub
    return loc, message


def policies_from_dict(data: Any, source: str = "<policies>") -> Policies:
    """Validate already-parsed policy data; `source` names it in errors."""
    if not isinstance(data, dict):
        raise PolicyLoadError(f"{source}: expected a mapping with a `tables` key", hint="See governance/policies.py.",
                              source=source)
    try:
        return Policies.model_validate(data)
    except ValidationError as err:
        entry, problem = _where_and_what(err)
        raise PolicyLoadError(f"{source}: {entry}: {problem}" if entry else f"{source}: {problem}",
                              hint="Fix that entry of the policy file.", source=source, entry=entry) from None


def load_policies(path: str | Path) -> Policies:
    """Read and validate a YAML policy file. Raises PolicyLoadError naming the file and the bad entry."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise PolicyLoadError(f"{path.name}: cannot read ({err.strerror})", hint="Check the path.",
                              source=str(path)) from None
    except yaml.YAMLError as err:
        raise PolicyLoadError(f"{path.name}: not valid YAML ({str(err).splitlines()[0]})",
                              hint="Check indentation and quoting.", source=str(path)) from None
    return policies_from_dict(data, source=path.name)
