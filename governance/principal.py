"""Who is asking: a user, the roles they act in, and attributes that row filters may reference (`:region`)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

AttributeValue = str | int | float | bool | None


class Principal(BaseModel):
    """The caller of a governed query. Roles combine as a union (PostgreSQL permissive policies)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    user: str = Field(min_length=1)
    roles: list[str] = Field(default_factory=list)
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)

    @classmethod
    def local(cls, user: str = "local") -> Principal:
        """The single-user principal that `Policies.allow_all` grants everything to."""
        return cls(user=user, roles=["local"])
