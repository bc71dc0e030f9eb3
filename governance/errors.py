"""agentml's one error base class (here, in the package that imports nothing of ours, so every layer can extend
it), and governance's own errors.

Every error a user can meet is an `AgentmlError`: a message, a hint how to fix it, and a `category` that says how it
is answered. The service maps categories once to CLI exit codes and once to HTTP statuses; `code` is the
machine-readable type in API error bodies.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

# bad_input: the request, plan, policy file or data asked for something wrong (fix the input); not_found: it names
# something that does not exist; policy: governance refused it; run_failed: a run could not do its work;
# unavailable: a service it needs (Ray, an LLM, a database) cannot be reached now.
Category = Literal["bad_input", "not_found", "policy", "run_failed", "unavailable"]


class AgentmlError(Exception):
    """Base of every agentml error. `hint` says how to fix it; `fields` carry structured detail (never row values)."""

    category: ClassVar[Category] = "bad_input"
    code: ClassVar[str] = "bad_input"

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.fields = fields

    def text(self) -> str:
        """What went wrong, for a terminal (without the hint)."""
        return self.message

    def details(self) -> list[dict[str, Any]]:
        """Structured problems (step, field, kind, message, hint) for API bodies; none by default."""
        return []

    def __str__(self) -> str:
        return f"{self.message} Hint: {self.hint}" if self.hint else self.message


class GovernanceError(AgentmlError):
    """Governance refused or could not do something.

    Messages never contain data values: they name tables, columns, functions and policy entries only.
    """

    code = "governance"


class PolicyViolation(GovernanceError):
    """A query asks for something the principal may not see or do; `kind` names the rule that refused it."""

    category: ClassVar[Category] = "policy"
    code = "policy_violation"

    def __init__(self, message: str, *, kind: str = "denied", hint: str | None = None, **fields: Any) -> None:
        super().__init__(message, hint=hint, kind=kind, **fields)
        self.kind = kind


class PolicyLoadError(GovernanceError):
    """A policy file is invalid; the message names the file and the entry, e.g. `tables.x.row_filters[0].using`."""


class QueryError(GovernanceError):
    """A governed query was allowed but failed in the database; the message carries no data values."""
