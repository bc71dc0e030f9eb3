"""Runs side by side: the final model's parameters, holdout and cross-validated metrics, learning curves (the final
model's validation metric per round, each tuning trial's reports) and feature importance, with what differs.

A session's final model may come from one of its OODA runs: each run is read together with the runs its session
started (`views.session_children`), latest step last, so "the final model" is the session's.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from executor import RunResult, RunStore
from service.api.auth import ApiUser
from service.api.errors import ApiError
from service.api.models import RUN_ID, RunSummary
from service.api.views import MODEL_SKILLS, session_children, summary
from skills.library import plots

MAX_RUNS = 10


class TrialCurve(BaseModel):
    """One tuning trial: its validation metric at each report."""

    trial_id: str
    metric: float | None = None
    stopped_early: bool = False
    history: list[float] = Field(default_factory=list)


class RunSide(BaseModel):
    """One run of a comparison."""

    run: RunSummary
    params: dict[str, Any] = Field(default_factory=dict, description="the final model's xgboost parameters, its "
                                   "rounds, best round and feature count")
    metrics: dict[str, float] = Field(default_factory=dict, description="the final model's metrics on its"
                                      " validation rows (used for tuning)")
    cv_metrics: dict[str, float] = Field(default_factory=dict, description="mean cross-validated metrics")
    curve_metric: str | None = None
    curve: list[float] = Field(default_factory=list, description="the final model's validation metric per round")
    trials: list[TrialCurve] = Field(default_factory=list)
    importance: dict[str, float] = Field(default_factory=dict, description="feature -> importance (explain)")


class Row(BaseModel):
    """One line of a side-by-side table: a name and each run's value (null where a run has none)."""

    name: str
    values: list[Any]
    differs: bool


class Comparison(BaseModel):
    """`GET /v1/compare`: every run, then the tables that line them up."""

    runs: list[RunSide]
    params: list[Row]
    metrics: list[Row]
    importance: list[Row]


def parse_ids(text: str) -> list[str]:
    """`a,b,c` -> ids (2 to MAX_RUNS, each a run id, no repeats); 422 naming what is wrong."""
    ids = list(dict.fromkeys(i.strip() for i in text.split(",") if i.strip()))
    bad = [i for i in ids if not _is_run_id(i)]
    if bad or not 2 <= len(ids) <= MAX_RUNS:
        why = f"not run ids: {', '.join(bad[:5])}" if bad else f"{len(ids)} run(s) given"
        raise ApiError(422, "request_invalid", f"`runs` must list 2 to {MAX_RUNS} run ids, comma-separated ({why})",
                       hint="select runs in the runs table and press Compare, or pass ?runs=ID1,ID2")
    return ids


def _is_run_id(text: str) -> bool:
    return re.fullmatch(RUN_ID, text) is not None


def visible_runs(store: RunStore, user: ApiUser, ids: Sequence[str]) -> list[RunResult]:
    """The runs `ids` in order; 404 for any that does not exist or that `user` may not see (the same answer, so
    another user's run ids are not confirmed)."""
    found = {r.id: r for r in store.get_runs(ids)}
    missing = [i for i in ids if i not in found or not user.may_see(found[i].user)]
    if missing:
        raise ApiError(404, "not_found", f"no run {', '.join(missing)} that you may see",
                       hint="compare your own runs (admins: anyone's)")
    return [found[i] for i in ids]


def _outputs(runs: Iterable[RunResult], *skills: str) -> list[Mapping[str, Any]]:
    """Succeeded outputs of these skills over the runs in order, latest first."""
    found = [s.outputs for r in runs for s in r.steps.values()
             if s.skill in skills and s.status == "succeeded" and s.outputs]
    return list(reversed(found))


def _floats(values: Any) -> dict[str, float]:
    if not isinstance(values, Mapping):
        return {}
    return {str(k): float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def side(run: RunResult, children: Sequence[RunResult]) -> RunSide:
    """What `run` (with the runs its session started) brings to a comparison."""
    session = [run, *children]
    models = [o["model"] for o in _outputs(session, *MODEL_SKILLS) if isinstance(o.get("model"), Mapping)]
    model: Mapping[str, Any] = models[0] if models else {}
    evaluate = next(iter(_outputs(session, "evaluate")), {})
    explain = next(iter(_outputs(session, "explain")), {})
    tune = next(iter(_outputs(session, "tune")), {})
    history = model.get("history") or {}
    curve_metric = next((m for m in ("auc", "rmse", "mlogloss", "logloss") if m in history), next(iter(history), None))
    params = {**(model.get("params") or {}), "num_rounds": model.get("num_rounds"),
              "best_iteration": model.get("best_iteration"), "features": len(model.get("features") or []) or None}
    importance = {str(i.get("feature")): float(i["importance"]) for i in explain.get("importance") or []
                  if isinstance(i, Mapping) and isinstance(i.get("importance"), (int, float))}
    trials = [TrialCurve(trial_id=str(t.get("trial_id", "")), metric=t.get("metric"),
                         stopped_early=bool(t.get("stopped_early")), history=list(t.get("history") or []))
              for t in tune.get("trials") or [] if isinstance(t, Mapping)]
    return RunSide(run=summary(run), params={k: v for k, v in params.items() if v is not None},
                   metrics=_floats(evaluate.get("metrics") or model.get("metrics")),
                   cv_metrics=_floats(evaluate.get("cv_metrics")), curve_metric=curve_metric,
                   curve=[float(v) for v in history.get(curve_metric, [])] if curve_metric else [], trials=trials,
                   importance=importance)


def _rows(values: Sequence[Mapping[str, Any]]) -> list[Row]:
    names = sorted({k for v in values for k in v})
    out = []
    for name in names:
        row = [v.get(name) for v in values]
        out.append(Row(name=name, values=row, differs=len({repr(x) for x in row}) > 1))
    return out


def compare(store: RunStore, user: ApiUser, ids: Sequence[str]) -> Comparison:
    """The comparison of the runs `ids` as `user` may see them."""
    runs = visible_runs(store, user, ids)
    kids = {k.id: k for k in store.get_runs(c for r in runs for c in session_children(r))}
    sides = [side(r, [kids[c] for c in session_children(r) if c in kids and kids[c].user == r.user])
             for r in runs]
    metrics = [{**{f"validation {k}": v for k, v in s.metrics.items()},
                **{f"cross-validated {k}": v for k, v in s.cv_metrics.items()}} for s in sides]
    importance = _rows([s.importance for s in sides])
    importance.sort(key=lambda r: -max((v for v in r.values if v is not None), default=0.0))
    return Comparison(runs=sides, params=_rows([s.params for s in sides]), metrics=_rows(metrics),
                      importance=importance)


def curves_svg(comparison: Comparison) -> str:
    """Every run's final-model learning curve on one chart ("" when no run has one)."""
    series = [(s.run.id, range(1, len(s.curve) + 1), s.curve) for s in comparison.runs if s.curve]
    if not series:
        return ""
    metric = next(s.curve_metric for s in comparison.runs if s.curve)
    return str(plots.line_chart(series, title="Final model: validation metric per round", xlabel="round",
                                ylabel=metric or ""))


def importance_svg(comparison: Comparison, top: int = 12) -> str:
    """Importance of the top features, per run, as grouped bars drawn as one labelled bar per (feature, run)."""
    rows = comparison.importance[:top]
    if not rows:
        return ""
    labels = [f"{r.name} · {s.run.id[:6]}" for r in rows for s in comparison.runs]
    values = [float(v or 0.0) for r in rows for v in r.values]
    return str(plots.bar_chart(labels, values, title="Feature importance by run", xlabel="importance"))
