"""Typed ML skills, the registry, the Plan model and the context skills run in."""
from __future__ import annotations

from skills.artifacts import ArtifactStore
from skills.context import Progress, RuntimeSettings, SkillContext
from skills.errors import SkillError, SkillRegistrationError
from skills.plan import Plan, Ref, Step
from skills.registry import Registry, SkillSpec, load_registry, skill, spec_of
from skills.types import Figure, ModelArtifact, TableArtifact, Task

__all__ = [
    "ArtifactStore", "Figure", "ModelArtifact", "Plan", "Progress", "Ref", "Registry", "RuntimeSettings",
    "SkillContext", "SkillError", "SkillRegistrationError", "SkillSpec", "Step", "TableArtifact", "Task",
    "load_registry", "skill", "spec_of",
]
