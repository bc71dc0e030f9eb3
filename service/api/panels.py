"""The charts and tables of the run page, server-rendered from the run's step outputs.

They reuse the report skill's sections (which draw with `skills.library.plots`): tuning learning curves with ASHA
stops marked, feature importance bars, ROC/PR curves, residual slices. Each panel is built on its own: an output that
does not fit is left out (and logged), never a broken page.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from executor import RunResult
from skills.library import report as rpt

log = logging.getLogger("agentml.api.dashboard")


@dataclass(frozen=True)
class Panel:
    """One titled block of the run page (its `key` becomes the element id `<key>-chart`)."""

    key: str
    html: str


def latest_outputs(run: RunResult, skill: str) -> Mapping[str, Any] | None:
    """The outputs of the last succeeded step of `skill` in the run (later steps supersede earlier ones)."""
    found = [s.outputs for s in run.steps.values() if s.skill == skill and s.status == "succeeded" and s.outputs]
    return found[-1] if found else None


def _section(key: str, render: Callable[[rpt.ReportInput], str], **fields: Any) -> Panel | None:
    values = {k: v for k, v in fields.items() if v is not None}
    if not values:
        return None
    try:
        html = render(rpt.ReportInput(title="", **values))
    except (ValidationError, TypeError, ValueError, KeyError):
        log.warning("cannot draw the %s panel from this run's outputs", key, exc_info=True)
        return None
    return Panel(key, html) if html else None


def _model(outputs: Mapping[str, Any] | None) -> Any:
    return (outputs or {}).get("model")


def panels(run: RunResult) -> list[Panel]:
    """Every panel the run's outputs allow, in reading order."""
    tune = latest_outputs(run, "tune")
    explain = latest_outputs(run, "explain") or {}
    evaluate = latest_outputs(run, "evaluate") or {}
    residuals = latest_outputs(run, "residuals") or {}
    found = [
        _section("trials", rpt.trials_section, trials=(tune or {}).get("trials"), model=_model(tune)),
        _section("importance", rpt.drivers_section, importance=explain.get("importance"),
                 drivers=explain.get("drivers")),
        _section("curves", rpt.curves_section, curves=evaluate.get("curves"), metrics=evaluate.get("metrics")),
        _section("slices", rpt.slices_section, slices=residuals.get("slices"),
                 overall_error=residuals.get("overall_error")),
        ooda_panel(run.result.get("ooda")),
    ]
    return [p for p in found if p is not None]


def _gain(it: Mapping[str, Any]) -> float | None:
    before, after = it.get("baseline_value"), it.get("metric_value")
    if isinstance(before, (int, float)) and isinstance(after, (int, float)):
        return float(after) - float(before)
    return None


def ooda_panel(ooda: Any) -> Panel | None:
    """The improvement loop: per iteration the candidates tried, the ones accepted and the metric gain."""
    if not isinstance(ooda, Mapping):
        return None
    iterations = [it for it in ooda.get("iterations") or [] if isinstance(it, Mapping)]
    why = ooda.get("stopped") or ooda.get("error") or ""
    state = f"<p>Status: {rpt.esc(ooda.get('status', ''))}. {rpt.esc(why)}</p>"
    rows = [[it.get("index"), len(it.get("candidates") or []), ", ".join(it.get("accepted") or []) or "none",
             it.get("metric_name"), it.get("baseline_value"), it.get("metric_value"), _gain(it), it.get("why")]
            for it in iterations]
    table = rpt.table(["iteration", "candidates", "accepted", "metric", "before", "after", "gain", "why"], rows)
    candidates = [[it.get("index"), c.get("name"), c.get("race_metric"), c.get("cv_delta"), c.get("p_value"),
                   c.get("stopped_early"), c.get("accepted"), c.get("reason"), c.get("motivation")]
                  for it in iterations for c in it.get("candidates") or [] if isinstance(c, Mapping)]
    detail = rpt.table(["iteration", "candidate", "race metric", "CV delta", "p", "stopped early", "accepted",
                        "reason", "motivated by"], candidates) if candidates else ""
    chart = rpt.race_chart([{"iteration": c[0], "candidates": c[1], "score": c[2], "accepted": c[6]}
                            for c in candidates])
    return Panel("ooda", rpt.section("Improvement loop (OODA)", state, table if rows else "", chart, detail))
