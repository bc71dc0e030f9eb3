"""Append-only audit log of every governance decision: JSON lines on disk, or a list in memory."""
from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["allowed", "denied", "flagged", "error"]
# What was decided on: a query run through governance, a plan checked before it runs, a prompt that was flagged,
# a call to an LLM (what was sent, what came back).
Action = Literal["query", "plan", "prompt", "llm"]


class AuditRecord(BaseModel):
    """One decision: who asked what, what ran instead, and why it was allowed, denied or flagged."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    user: str
    roles: list[str] = Field(default_factory=list)
    sql: str = ""
    rewritten: str | None = None
    verdict: Verdict
    reason: str = ""
    rows: int | None = None
    action: Action = "query"
    detail: dict[str, Any] = Field(default_factory=dict, description="facts about the decision (never row values)")


class AuditLog:
    """Append-only store of AuditRecords. With a `path`, one JSON object per line (survives processes, shared by
    Ray workers on the same file system); without, an in-memory list."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._memory: list[AuditRecord] = []
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch(exist_ok=True)

    def append(self, *, user: str, roles: list[str] | tuple[str, ...] = (), sql: str = "",
               rewritten: str | None = None, verdict: Verdict, reason: str = "", rows: int | None = None,
               action: Action = "query", detail: dict[str, Any] | None = None) -> AuditRecord:
        """Record one decision and return it."""
        return self.add(AuditRecord(user=user, roles=list(roles), sql=sql, rewritten=rewritten, verdict=verdict,
                                    reason=reason, rows=rows, action=action, detail=detail or {}))

    def add(self, record: AuditRecord) -> AuditRecord:
        """Keep a record made elsewhere (e.g. by a Ray task's copy of the engine, handed back to the driver)."""
        with self._lock:
            if self.path is None:
                self._memory.append(record)
            else:
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(record.model_dump_json() + "\n")
        return record

    def _all(self) -> list[AuditRecord]:
        if self.path is None:
            return list(self._memory)
        with self._lock, self.path.open(encoding="utf-8") as handle:
            return [AuditRecord.model_validate(json.loads(line)) for line in handle if line.strip()]

    def records(self, user: str | None = None, limit: int | None = 100) -> list[AuditRecord]:
        """The latest `limit` records (oldest first), optionally only those of `user`."""
        found = [r for r in self._all() if user is None or r.user == user]
        return found[-limit:] if limit else found

    def __reduce__(self) -> tuple[Any, ...]:
        # A copy in another process (a Ray task) appends to the same file; an in-memory log starts empty there.
        return (AuditLog, (self.path,))

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path) if self.path else 'memory'})"


def as_audit_log(audit: AuditLog | str | Path | None) -> AuditLog:
    """Accept an AuditLog, a path to a JSON-lines file, or None (in memory)."""
    return audit if isinstance(audit, AuditLog) else AuditLog(audit)
