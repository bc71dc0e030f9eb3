"""Per-user limits on starting runs: how many may be queued or running at once, and how many boosting rounds the
runs of one day may plan. A refused start is a 429 that says when to come back (`Retry-After`), and records nothing.
"""
from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from executor import RunStore
from planner.budget import plan_costs
from service.api.errors import ApiError
from service.settings import Settings
from skills.plan import Plan
from skills.registry import Registry

DAY = timedelta(hours=24)
ACTIVE_RETRY_S = 30  # no way to know when a run ends: ask again in a while


def plan_rounds(plan: Plan, registry: Registry) -> int:
    """Boosting rounds `plan` may spend (every trial of every step), by the skills' own cost functions."""
    return sum(c.rounds for c in plan_costs(plan, registry).values())


def check_quota(store: RunStore, settings: Settings, registry: Registry, user: str, plan: Plan,
                now: datetime | None = None) -> None:
    """Raise a 429 ApiError when `user` may not start `plan` now."""
    check_active(store, settings, user)
    _check_rounds(store, settings.max_boosting_rounds_per_day, registry, user, plan, now or datetime.now(UTC))


def check_active(store: RunStore, settings: Settings, user: str) -> None:
    """Raise a 429 ApiError when `user` already has as many runs going as one user may."""
    active = store.count_active(user)
    if active >= settings.max_active_runs_per_user:
        raise ApiError(429, "too_many_runs", f"you have {active} run(s) queued or running; the limit is "
                       f"{settings.max_active_runs_per_user} at once per user",
                       hint="wait until one ends (or cancel one), then start this run again",
                       headers={"Retry-After": str(ACTIVE_RETRY_S)})


def _check_rounds(store: RunStore, limit: int, registry: Registry, user: str, plan: Plan, now: datetime) -> None:
    needed = plan_rounds(plan, registry)
    if needed > limit:
        raise ApiError(429, "quota_exceeded", f"this run plans {needed} boosting rounds, more than the daily limit "
                       f"of {limit} per user", hint="lower num_trials, max_rounds or num_rounds (the budget)")
    spent = [(run.created, plan_rounds(Plan.model_validate(run.plan), registry))
             for run in store.runs_since(user, now - DAY)]
    total = sum(rounds for _, rounds in spent)
    if total + needed <= limit:
        return
    for created, rounds in spent:  # oldest first: when enough of the window has slid past
        total -= rounds
        if total + needed <= limit:
            wait = max(1, math.ceil((created + DAY - now).total_seconds()))
            at = (now + timedelta(seconds=wait)).isoformat(timespec="seconds")
            raise ApiError(429, "quota_exceeded", f"your runs of the last 24 hours planned {total + rounds} boosting "
                           f"rounds; this one needs {needed} more, over the daily limit of {limit}",
                           hint=f"start it again after {at} (in {wait} s), or lower its budget",
                           headers={"Retry-After": str(wait)})
