"""Audit log: every Engine.query is recorded (allowed, denied, error); external callers append `flagged`."""
from __future__ import annotations

import json
import pickle
from datetime import UTC
from pathlib import Path

import pytest
from gov_testdata import PRINCIPALS, seeded_engine

from governance import AuditLog, Policies, PolicyViolation, QueryError


def test_every_query_is_recorded(tmp_path: Path, gov_policies: Policies) -> None:
    path = tmp_path / "audit" / "log.jsonl"
    engine = seeded_engine(gov_policies, audit=str(path))
    ann, sam = PRINCIPALS["analyst_eu"], PRINCIPALS["support_sam"]
    engine.query("SELECT id FROM customers", ann)
    with pytest.raises(PolicyViolation):
        engine.query("SELECT ssn FROM customers", ann)
    with pytest.raises(QueryError):
        engine.query("SELECT CAST(name AS INT) FROM customers", sam)
    allowed, denied, failed = engine.audit.records()
    assert (allowed.verdict, allowed.user, allowed.roles, allowed.rows) == ("allowed", "ann", ["analyst"], 10)
    assert allowed.sql == "SELECT id FROM customers" and f'"memory"."{engine._raw}"."customers"' in allowed.rewritten
    assert denied.verdict == "denied" and denied.rewritten is None and "'ssn'" in denied.reason
    assert failed.verdict == "error" and failed.user == "sam" and "Conversion" in failed.reason
    assert allowed.time.tzinfo is not None and allowed.time <= denied.time <= failed.time
    lines = path.read_text().splitlines()
    assert [json.loads(line)["verdict"] for line in lines] == ["allowed", "denied", "error"]


def test_append_only_and_filters(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    log.append(user="ann", roles=["analyst"], sql="SELECT 1", verdict="allowed")
    before = (tmp_path / "a.jsonl").read_text()
    log.append(user="bob", roles=[], sql="plan 7", verdict="flagged", reason="prompt asks for raw SSNs")
    log.append(user="ann", sql="SELECT 2", verdict="denied", reason="no")
    assert (tmp_path / "a.jsonl").read_text().startswith(before)
    assert [r.sql for r in log.records(user="ann")] == ["SELECT 1", "SELECT 2"]
    assert [r.verdict for r in log.records(limit=2)] == ["flagged", "denied"]
    assert AuditLog(tmp_path / "a.jsonl").records(user="bob")[0].reason == "prompt asks for raw SSNs"
    assert pickle.loads(pickle.dumps(log)).records() == log.records()


def test_in_memory_default() -> None:
    log = AuditLog()
    record = log.append(user="u", verdict="flagged", reason="r")
    assert log.records() == [record] and log.path is None
    assert record.time.tzinfo == UTC
    with pytest.raises(ValueError):
        log.append(user="u", verdict="maybe")  # type: ignore[arg-type]
