"""`report`: one self-contained HTML file (inline CSS and SVG, no external assets) telling the run's story.

Every input except the title is optional; a section appears only when its input is given. Every piece of text is
escaped with `html.escape` (titles, feature names, levels, plan text); plots come from `skills.library.plots`, whose
SVG text matplotlib escapes. The report only shows what the step outputs it is given contain, and those came through
governance, so it cannot show a column the principal may not see.
"""
from __future__ import annotations

import datetime as dt
import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from string import Template
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from skills.context import SkillContext
from skills.library import plots
from skills.library.evaluate import VALIDATION
from skills.library.explain import Driver, FeatureImportance
from skills.library.residuals import Slice
from skills.plan import Plan, as_ref
from skills.registry import skill
from skills.types import ModelArtifact

MAX_BARS = 15
_HEADLINE_ORDER = ("auc", "roc_auc", "rmse", "r2", "logloss", "accuracy", "f1", "mae")
_ITERATION_ORDER = ("iteration", "candidates", "motivation", "scores", "score", "metric_value", "baseline", "p_value",
                    "accepted", "why", "reason")

_PAGE = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>$title</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1a202c;max-width:1040px;margin:2em auto;
padding:0 1em}h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #e2e8f0}
.meta{color:#718096}.headline{display:flex;gap:1em;flex-wrap:wrap;margin:1em 0}
.card{border:1px solid #e2e8f0;border-radius:6px;padding:.6em 1em;min-width:9em}
.card b{display:block;font-size:1.6em}table{border-collapse:collapse;margin:.6em 0;font-size:13px}
th,td{border-bottom:1px solid #edf2f7;padding:.3em .7em;text-align:left;vertical-align:top}
th{background:#f7fafc}td.prose{min-width:22em}td.num{text-align:right;font-variant-numeric:tabular-nums}.plots{display:flex;flex-wrap:wrap;
gap:1em}.plots svg{max-width:100%;height:auto}ul.drivers li{margin:.2em 0}.yes{color:#2f855a}.no{color:#c53030}
</style></head>
<body>
<h1>$title</h1>
<p class="meta">$meta</p>
$body
</body></html>
""")


class ReportInput(BaseModel):
    """What to put in the report: the title, and any outputs of earlier steps (all optional)."""

    model_config = ConfigDict(extra="forbid")
    title: str
    model: ModelArtifact | None = None
    metrics: dict[str, float] | None = Field(default=None, description="evaluate.metrics or train_xgboost.metrics")
    metric_name: str | None = None
    metric_value: float | None = None
    protocol: str | None = Field(default=None, description="how metric_value was measured (evaluate.protocol)")
    metrics_protocol: str | None = Field(default=None, description="what `metrics` were measured on "
                                         "(evaluate.metrics_protocol)")
    importance: list[FeatureImportance] | None = None
    drivers: list[Driver] | None = None
    trials: list[dict[str, Any]] | None = Field(default=None, description="tune.trials")
    slices: list[Slice] | None = Field(default=None, description="residuals.slices")
    overall_error: float | None = None
    iterations: list[dict[str, Any]] | None = Field(default=None, description="OODA iterations")
    curves: dict[str, Any] | None = Field(default=None, description="evaluate.curves")
    plan: Plan | None = None
    steps: list[dict[str, Any]] | None = Field(default=None, description="step statuses and timings of the run")
    notes: str | None = None
    excluded: list[dict[str, str]] | None = Field(default=None, description="columns left out of training: "
                                                  "{column, reason} (the plan's `excluded`)")


class ReportOutput(BaseModel):
    """Where the HTML report was written."""

    model_config = ConfigDict(extra="forbid")
    uri: str
    path: str | None = None


# ------------------------------------------------------------------------------------------------- html helpers


def esc(value: Any) -> str:
    """Escaped text (quotes too, so it is safe inside attributes)."""
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A value as short, escaped display text."""
    if isinstance(value, bool):
        return '<span class="yes">yes</span>' if value else '<span class="no">no</span>'
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else esc(f"{value:.4g}")
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, Mapping):
        if "name" in value:  # feature specs and similar: the name says it
            return esc(value["name"])
        return esc(json.dumps(value, default=str, separators=(", ", ": ")))
    if isinstance(value, BaseModel):
        return fmt(value.model_dump(mode="json"))
    return esc("" if value is None else value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; numbers right-aligned, every cell escaped by `fmt`."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(value: Any) -> str:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numeric:
        return f'<td class="num">{fmt(value)}</td>'
    prose = isinstance(value, str) and len(value) > 40  # a reason or a note: wide enough to read in a few lines
    return f'<td class="prose">{fmt(value)}</td>' if prose else f"<td>{fmt(value)}</td>"


def dict_table(records: Sequence[Mapping[str, Any]], order: Sequence[str] = ()) -> str:
    """A table of records with unknown keys: preferred keys first, then the rest in order of appearance."""
    keys: list[str] = [k for k in order if any(k in r for r in records)]
    for record in records:
        keys += [k for k in record if k not in keys]
    return table(keys, [[r.get(k) for k in keys] for r in records])


def section(title: str, *parts: str) -> str:
    return f"<section><h2>{esc(title)}</h2>{''.join(parts)}</section>"


def figures(*svgs: str) -> str:
    return f'<div class="plots">{"".join(svgs)}</div>'


# ------------------------------------------------------------------------------------------------------ sections


def headline(inp: ReportInput) -> tuple[str, float] | None:
    """The one number to lead with: the given metric, else AUC/RMSE/... from the metrics."""
    if inp.metric_name is not None and inp.metric_value is not None:
        return inp.metric_name, inp.metric_value
    metrics = inp.metrics or (inp.model.metrics if inp.model else {})
    name = next((m for m in _HEADLINE_ORDER if m in metrics), next(iter(metrics), None))
    return (name, metrics[name]) if name is not None else None


def _card(label: str, value: Any) -> str:
    return f'<div class="card">{esc(label)}<b>{fmt(value)}</b></div>'


def headline_section(inp: ReportInput) -> str:
    cards = []
    seen = inp.metrics_protocol or VALIDATION
    if (top := headline(inp)) is not None:
        name = top[0].split(" (")[0]
        cards.append(_card(f"{top[0]} ({inp.protocol})" if inp.protocol else top[0], float(top[1])))
        if inp.metrics and name in inp.metrics and inp.metric_value is not None:
            cards.append(_card(f"{name}, {seen}", float(inp.metrics[name])))
    if inp.model is not None:
        cards += [_card("task", inp.model.task), _card("target", inp.model.target), *class_cards(inp.model),
                  _card("features", len(inp.model.features)), _card("boosting rounds", inp.model.num_rounds)]
        if inp.model.threshold is not None:
            cards.append(_card("decision threshold", inp.model.threshold))
    body = f'<div class="headline">{"".join(cards)}</div>' if cards else ""
    if inp.metrics:
        body += table([f"metric on {seen}", "value"], sorted(inp.metrics.items()))
    if inp.notes:
        body += f"<p>{esc(inp.notes)}</p>"
    return body


def class_cards(model: ModelArtifact) -> list[str]:
    """What a classifier predicts: the positive level (binary) or its classes (multiclass)."""
    if model.positive is not None:
        return [_card("positive class", f"{model.target} = {model.positive}")]
    if model.multiclass:
        return [_card(f"{len(model.classes)} classes", ", ".join(model.classes))]
    return []


def drivers_section(inp: ReportInput) -> str:
    parts = []
    if inp.drivers:
        items = "".join(f"<li>{esc(d.summary)}</li>" for d in inp.drivers)
        parts.append(f'<ul class="drivers">{items}</ul>')
    ranked = inp.importance or inp.drivers or []
    if ranked:
        top = list(ranked)[:MAX_BARS]
        labels = [f"{f.feature} = {f.level}" if f.level else f.feature for f in top]
        parts.append(figures(plots.bar_chart(labels, [f.importance for f in top], title="Feature importance",
                                             xlabel="mean |SHAP value|")))
        classes = any(f.target_class for f in top)  # multiclass: the class each direction refers to
        parts.append(table(["feature", "importance", "direction", "level", *(["class"] if classes else [])],
                           [[f.feature, f.importance, f.direction, f.level, *([f.target_class] if classes else [])]
                            for f in top]))
    return section("Why: drivers and feature importance", *parts) if parts else ""


def _series(curves: Mapping[str, Any], names: Sequence[str], x: Sequence[str], y: Sequence[str]) \
        -> tuple[list[float], list[float], dict[str, Any]] | None:
    """Find an (x, y) curve under any of `names` (or at the top level) with any of the key spellings given."""
    for source in [*(curves.get(n) for n in names), curves]:
        if not isinstance(source, Mapping):
            continue
        xs = next((source[k] for k in x if k in source), None)
        ys = next((source[k] for k in y if k in source), None)
        if xs is not None and ys is not None and len(xs) == len(ys) and len(xs) > 0:
            return [float(v) for v in xs], [float(v) for v in ys], dict(source)
    return None


def _number(source: Mapping[str, Any], *keys: str) -> float | None:
    value = next((source[k] for k in keys if k in source), None)
    return float(value) if isinstance(value, (int, float)) else None


def curves_section(inp: ReportInput) -> str:
    curves = inp.curves or {}
    svgs = []
    if roc := _series(curves, ("roc", "roc_curve"), ("fpr", "false_positive_rate"), ("tpr", "true_positive_rate")):
        svgs.append(plots.roc_curve(roc[0], roc[1], _number(roc[2], "auc") or _number(inp.metrics or {}, "auc")))
    if pr := _series(curves, ("pr", "precision_recall", "pr_curve"), ("recall",), ("precision",)):
        svgs.append(plots.pr_curve(pr[0], pr[1], _number(pr[2], "average_precision", "ap", "auc_pr")))
    if pva := _series(curves, ("predicted_vs_actual", "pred_vs_actual", "scatter", "regression"),
                      ("actual", "y_true", "y"), ("predicted", "y_pred", "pred", "prediction")):
        svgs.append(plots.predicted_vs_actual(pva[0], pva[1]))
    shares = class_shares(curves)
    return section("Model quality", figures(*svgs), shares) if svgs or shares else ""


def class_shares(curves: Mapping[str, Any]) -> str:
    """A multiclass model's classes: each one's share of the rows and of the predicted classes."""
    classes = curves.get("classes")
    if not isinstance(classes, Mapping) or not classes.get("levels"):
        return ""
    rows = [[level, share, predicted] for level, share, predicted in
            zip(classes["levels"], classes.get("share", []), classes.get("predicted_share", []), strict=False)]
    return table(["class", "share of rows", "share predicted"], rows)


def _metric_label(inp: ReportInput) -> str:
    """What the trials report: the validation-split metric (never the cross-validated headline)."""
    if inp.model is not None and "eval_metric" in inp.model.params:
        return f"validation {inp.model.params['eval_metric']}"
    if inp.metric_name:
        return f"validation {inp.metric_name.split(' (')[0]}"
    return "validation metric"


def trials_section(inp: ReportInput) -> str:
    if not inp.trials:
        return ""
    rows = [[t.get("trial_id"), t.get("metric"), t.get("rounds"), t.get("stopped_early"), t.get("params")]
            for t in inp.trials]
    used = sum(int(t.get("rounds") or 0) for t in inp.trials)
    chart = plots.learning_curves(inp.trials, metric=_metric_label(inp))
    return section("Tuning", figures(chart), f"<p>{len(inp.trials)} trials, {used} boosting rounds in all.</p>",
                   table(["trial", "metric", "rounds", "stopped early", "params"], rows))


def slices_section(inp: ReportInput) -> str:
    if not inp.slices:
        return ""
    top = inp.slices[:MAX_BARS]
    chart = plots.bar_chart([f"{s.column} = {s.slice}" for s in top], [s.lift for s in top], reference=1.0,
                            title="Where the model errs most", xlabel="lift (slice error / overall error)",
                            highlight=[not s.in_model for s in top])
    note = f"<p>Overall error: {fmt(inp.overall_error)}. Orange bars: columns the model does not use.</p>" \
        if inp.overall_error is not None else "<p>Orange bars: columns the model does not use.</p>"
    rows = [[s.column, s.slice, s.count, s.error, s.lift, s.in_model] for s in inp.slices]
    return section("Residual slices", figures(chart), note,
                   table(["column", "slice", "rows", "mean error", "lift", "model uses column"], rows))


def race_chart(rows: Sequence[Mapping[str, Any]]) -> str:
    """Each candidate feature group's score in the ASHA race, by iteration; accepted groups in orange.
    `rows`: {iteration, candidates (the group's name), score, accepted}, as in `iterations`."""
    scored = [r for r in rows if isinstance(r.get("score"), int | float)]
    if not scored:
        return ""
    chart = plots.bar_chart([f"{r.get('iteration')}: {r.get('candidates')}" for r in scored],
                            [float(r["score"]) for r in scored], highlight=[bool(r.get("accepted")) for r in scored],
                            title="Feature race (orange: accepted)", xlabel="validation score",
                            zoom=True)
    return figures(chart) + ("<p>Each bar is a candidate feature group's validation score in its iteration's race; "
                             "groups that ASHA stopped early show their last score.</p>")


def iterations_section(inp: ReportInput) -> str:
    if not inp.iterations:
        return ""
    return section("Improvement loop (OODA iterations)", race_chart(inp.iterations),
                   dict_table(inp.iterations, _ITERATION_ORDER))


def _inputs_text(inputs: Mapping[str, Any]) -> str:
    parts = []
    for name, value in inputs.items():
        ref = as_ref(value)
        shown = f"← {ref}" if ref is not None else json.dumps(value, default=str)
        parts.append(f"{name}: {shown if len(shown) <= 120 else shown[:117] + '...'}")
    return "; ".join(parts)


def excluded_section(inp: ReportInput) -> str:
    if not inp.excluded:
        return ""
    rows = [[e.get("column"), e.get("reason")] for e in inp.excluded]
    return section("Columns left out", table(["column", "why"], rows))


def plan_section(inp: ReportInput) -> str:
    parts = []
    if inp.plan is not None:
        if inp.plan.goal:
            parts.append(f"<p>Goal: {esc(inp.plan.goal)}</p>")
        parts.append(table(["step", "skill", "inputs", "description"],
                           [[s.id, s.skill, _inputs_text(s.inputs), s.description] for s in inp.plan.steps]))
    if inp.steps:
        parts.append(dict_table(inp.steps, ("id", "step", "skill", "status", "seconds", "duration_s", "error")))
    return section("Plan and steps", *parts) if parts else ""


SECTIONS: tuple[Callable[[ReportInput], str], ...] = (
    headline_section, drivers_section, curves_section, trials_section, slices_section, iterations_section,
    excluded_section, plan_section,
)


def render(inp: ReportInput) -> str:
    """The whole HTML document."""
    meta = f"Generated by agentml on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    body = "\n".join(part for part in (s(inp) for s in SECTIONS) if part)
    return _PAGE.substitute(title=esc(inp.title), meta=esc(meta), body=body)


@skill("report", tags=("analysis",))
def report(ctx: SkillContext, inp: ReportInput) -> ReportOutput:
    """Write a self-contained HTML report (inline SVG plots, no external files): headline metric, drivers and feature
    importance, ROC/PR or predicted-vs-actual curves, tuning learning curves, residual slices, improvement-loop
    iterations and the plan. Pass any outputs of earlier steps; only the title is required."""
    ctx.progress("rendering report")
    document = render(inp)
    key = ctx.key("report.html")
    uri = ctx.artifacts.put_bytes(key, document.encode("utf-8"))
    local = ctx.artifacts.local_path(key)
    ctx.progress(f"report written ({len(document) // 1024} KiB)", done=1, total=1, unit="files")
    return ReportOutput(uri=uri, path=str(local) if local is not None else None)
