"""The planner: a prompt becomes a validated skill DAG (rule-based by default, any LLM via litellm when configured).

Public API: `plan_prompt` (rules), `plan_with_llm` (litellm, imported on first use), `validate_plan`, `preview`,
`flag_injection`, `Budget`, `PlanProblem`, `PlanError`.
"""
from __future__ import annotations

from typing import Any

from planner.budget import Budget
from planner.errors import PlanError, PlanProblem
from planner.preview import Preview, preview
from planner.rules import plan_prompt
from planner.rules_injection import flag_injection
from planner.validate import validate_plan

__all__ = ["Budget", "PlanError", "PlanProblem", "Preview", "flag_injection", "plan_prompt", "plan_with_llm",
           "preview", "validate_plan"]


def __getattr__(name: str) -> Any:
    if name == "plan_with_llm":  # litellm takes seconds to import: only when an LLM is configured
        from planner.llm import plan_with_llm

        return plan_with_llm
    raise AttributeError(f"module 'planner' has no attribute {name!r}")
