"""The one error base class of the governance package, and its two public subclasses."""
from __future__ import annotations

from typing import Any


class GovernanceError(Exception):
    """Governance refused or could not do something. `hint` says how to fix it; `fields` carry structured detail.

    Messages never contain data values: they name tables, columns, functions and policy entries only.
    """

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.fields = fields

    def __str__(self) -> str:
        return f"{self.message} Hint: {self.hint}" if self.hint else self.message


class PolicyViolation(GovernanceError):
    """A query asks for something the principal may not see or do; `kind` names the rule that refused it."""

    def __init__(self, message: str, *, kind: str = "denied", hint: str | None = None, **fields: Any) -> None:
        super().__init__(message, hint=hint, kind=kind, **fields)
        self.kind = kind


class PolicyLoadError(GovernanceError):
    """A policy file is invalid; the message names the file and the entry, e.g. `tables.x.row_filters[0].using`."""
