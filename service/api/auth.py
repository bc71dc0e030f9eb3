"""Who is calling: bearer tokens mapped to principals in a YAML file of sha256 hashes (never the tokens themselves).

    # tokens.yaml (AGENTML_TOKENS_FILE)
    tokens:
      - sha256: 5e884898da28...        # hash_token("<the token>")
        user: ann
        roles: [analyst]
        attributes: {region: EU}       # row filters read these (`region = :region`)
      - sha256: 9b74c9897bac...
        user: ada
        roles: [admin]
        admin: true                    # may see every run and the audit log
        budget: {max_boosting_rounds: 50000}

`new_token()` makes a random token and its entry. Without a tokens file the API makes one token at start (local
single-user mode, printed once by `serve`), so the API never answers without authentication. The principal comes only
from the token: request bodies and prompts cannot name a user.
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from governance import Principal
from planner.budget import Budget
from service.api.errors import ApiError

LOCAL_USER = "local"
_HEX64 = frozenset("0123456789abcdef")


def hash_token(token: str) -> str:
    """The sha256 hex digest stored in the tokens file for `token`."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """A random 256-bit token and its hash: give the first to the user, put the second in the tokens file."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


class TokenEntry(BaseModel):
    """One line of the tokens file: a token's hash and the principal it stands for."""

    model_config = ConfigDict(extra="forbid")
    sha256: str = Field(description="hex sha256 of the token")
    user: str = Field(min_length=1, max_length=200)
    roles: list[str] = Field(default_factory=list)
    attributes: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    admin: bool = False
    budget: Budget = Field(default_factory=Budget)

    @field_validator("sha256")
    @classmethod
    def _is_hash(cls, value: str) -> str:
        value = value.strip().lower()
        if len(value) != 64 or not set(value) <= _HEX64:
            raise ValueError("must be the 64 hex digits of sha256(token), not the token itself")
        return value


class TokensFile(BaseModel):
    """The whole tokens file."""

    model_config = ConfigDict(extra="forbid")
    tokens: list[TokenEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class ApiUser:
    """An authenticated caller: the governance principal plus what the API itself decides (admin, budget)."""

    principal: Principal
    admin: bool = False
    budget: Budget = field(default_factory=Budget)

    @property
    def user(self) -> str:
        return self.principal.user

    def may_see(self, owner: str) -> bool:
        """Runs are private to their user; admins see all."""
        return self.admin or owner == self.user

    def effective_budget(self, asked: Budget | None) -> Budget:
        """The smaller of the quota and what the request asks: a request may lower its budget, never raise it."""
        if asked is None:
            return self.budget
        return Budget(**{name: min(getattr(self.budget, name), getattr(asked, name)) for name in Budget.model_fields})


class TokenTable:
    """Token hash -> ApiUser. `authenticate` is the only way the API learns who is calling."""

    def __init__(self, entries: list[TokenEntry], *, default_token: str | None = None) -> None:
        self._users: dict[str, ApiUser] = {}
        for entry in entries:
            principal = Principal(user=entry.user, roles=entry.roles, attributes=entry.attributes)
            self._users[entry.sha256] = ApiUser(principal, admin=entry.admin, budget=entry.budget)
        self.default_token = default_token

    @classmethod
    def load(cls, path: Path | None, *, local_roles: Sequence[str] = ()) -> TokenTable:
        """The tokens of `path`; without a file, one random admin token for the local user (`default_token`),
        acting in `local_roles` too (with a policy file: every role it names, so the operator sees what they
        govern)."""
        if path is None:
            token, digest = new_token()
            entry = TokenEntry(sha256=digest, user=LOCAL_USER, roles=sorted({LOCAL_USER, *local_roles}), admin=True)
            return cls([entry], default_token=token)
        return cls(_read(path).tokens)

    @property
    def roles(self) -> set[str]:
        """Every role some token acts in (local mode grants them all every table)."""
        return {role for u in self._users.values() for role in u.principal.roles}

    def authenticate(self, token: str | None) -> ApiUser:
        """The caller behind `token`. Raises ApiError 401 for a missing or unknown token."""
        if not token:
            raise ApiError(401, "unauthenticated", "this endpoint needs a bearer token",
                           hint="send the header `Authorization: Bearer <token>`")
        user = self._users.get(hash_token(token))
        if user is None:
            raise ApiError(401, "unauthenticated", "the bearer token is not valid",
                           hint="check the token; ask an admin to add its sha256 to the tokens file")
        return user


def _read(path: Path) -> TokensFile:
    """Parse and validate the tokens file; errors name the file and the entry, never a token."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return TokensFile.model_validate(data)
    except OSError as exc:
        raise ApiError(500, "config", f"cannot read the tokens file {path}: {exc.strerror}",
                       hint="check AGENTML_TOKENS_FILE") from None
    except (yaml.YAMLError, ValidationError) as exc:
        where = ""
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) + ": " + first["msg"]
        raise ApiError(500, "config", f"the tokens file {path} is invalid: {where or 'not YAML'}",
                       hint="see service/api/README.md for its format") from None
