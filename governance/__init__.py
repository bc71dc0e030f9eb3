"""governance: every query an agent sends is rewritten to the caller's row and column rights, fail closed.

    policies = load_policies("policies.yaml")
    eng = Engine(policies); eng.register("customers", arrow_table)
    eng.query("SELECT region, avg(spend) FROM customers GROUP BY 1", Principal(user="ann", roles=["analyst"]))
"""
from __future__ import annotations

from governance.audit import AuditLog, AuditRecord
from governance.enforce import enforce
from governance.engine import Engine, QueryError
from governance.errors import AgentmlError, Category, GovernanceError, PolicyLoadError, PolicyViolation
from governance.policies import MaskRule, Policies, RowFilter, TablePolicy, load_policies, policies_from_dict
from governance.principal import Principal
from governance.rules import duplicate_names
from governance.shards import Shard

__all__ = [
    "AgentmlError", "AuditLog", "AuditRecord", "Category", "Engine", "GovernanceError", "MaskRule", "Policies",
    "PolicyLoadError", "PolicyViolation", "Principal", "QueryError", "RowFilter", "Shard", "TablePolicy",
    "duplicate_names",
    "enforce", "load_policies", "policies_from_dict",
]
