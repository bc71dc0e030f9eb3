"""The plan DAG as inline SVG: layered top-down (a step sits one layer below its deepest input), one box per step
with its id, skill and status; the dashboard's script recolours boxes as step events arrive."""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape

from skills.plan import Plan

NODE_W, NODE_H = 168, 46
GAP_X, GAP_Y, PAD = 26, 34, 12


@dataclass(frozen=True)
class Box:
    """Where one step is drawn."""

    id: str
    skill: str
    description: str
    x: float
    y: float


def layers(plan: Plan) -> list[list[str]]:
    """Step ids by depth (longest path from a step without inputs); within a layer, ordered near their inputs."""
    deps = {sid: {d for d in ds if d != sid} for sid, ds in plan.dependencies().items()}
    depth: dict[str, int] = {}
    try:
        order = plan.topological_order()
    except ValueError:  # a cyclic plan cannot run, but can still be drawn
        order = [s.id for s in plan.steps]
    for sid in order:
        depth[sid] = 1 + max((depth.get(d, -1) for d in deps.get(sid, ()) if d in deps), default=-1)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for sid in order:
        out[depth[sid]].append(sid)
    return _untangle(out, deps)


def _untangle(rows: list[list[str]], deps: Mapping[str, set[str]]) -> list[list[str]]:
    """One barycentre pass: each step goes under the mean position of its inputs (fewer crossing edges)."""
    position: dict[str, float] = {}
    for row in rows:
        first = {sid: float(i) for i, sid in enumerate(row)}
        row.sort(key=functools.partial(_centre, deps=deps, position=position, first=first))
        position.update({sid: float(i) for i, sid in enumerate(row)})
    return rows


def _centre(sid: str, deps: Mapping[str, set[str]], position: Mapping[str, float],
            first: Mapping[str, float]) -> float:
    parents = [position[d] for d in deps.get(sid, ()) if d in position]
    return sum(parents) / len(parents) if parents else first[sid]


def boxes(plan: Plan) -> tuple[list[Box], float, float]:
    """The boxes and the drawing's width and height (each layer centred)."""
    rows = layers(plan)
    widest = max((len(r) for r in rows), default=1)
    width = PAD * 2 + widest * NODE_W + (widest - 1) * GAP_X
    out = []
    for depth, row in enumerate(rows):
        span = len(row) * NODE_W + (len(row) - 1) * GAP_X
        left = (width - span) / 2
        for i, sid in enumerate(row):
            step = plan.step(sid)
            said = step.description
            if said and plan.metadata.get("planner") == "llm":  # the model's words, never shown as ours
                said = f'the LLM wrote: "{said}"'
            out.append(Box(sid, step.skill, said, left + i * (NODE_W + GAP_X),
                           PAD + depth * (NODE_H + GAP_Y)))
    height = PAD * 2 + len(rows) * NODE_H + max(len(rows) - 1, 0) * GAP_Y
    return out, width, height


def _edge(a: Box, b: Box) -> str:
    x1, y1 = a.x + NODE_W / 2, a.y + NODE_H
    x2, y2 = b.x + NODE_W / 2, b.y - 2
    mid = (y1 + y2) / 2
    return (f'<path class="edge" data-from="{escape(a.id)}" data-to="{escape(b.id)}" '
            f'd="M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2:.1f}" '
            'marker-end="url(#dag-arrow)"/>')


def _node(box: Box, status: str) -> str:
    sid, skill = escape(box.id), escape(box.skill)
    tip = escape(f"{box.id} ({box.skill}): {box.description}" if box.description else f"{box.id} ({box.skill})")
    return (f'<g class="node st-{escape(status)}" data-step="{sid}" transform="translate({box.x:.1f},{box.y:.1f})">'
            f"<title>{tip}</title>"
            f'<rect width="{NODE_W}" height="{NODE_H}" rx="7"/>'
            f'<text class="id" x="10" y="19">{sid[:22]}</text>'
            f'<text class="skill" x="10" y="36">{skill[:16]}</text>'
            f'<text class="state" x="{NODE_W - 8}" y="36" text-anchor="end">{escape(status)}</text></g>')


def dag_svg(plan: Plan, statuses: Mapping[str, str]) -> str:
    """The plan as an `<svg id="dag">` with one `g.node[data-step]` per step, classed `st-<status>`."""
    placed, width, height = boxes(plan)
    by_id = {b.id: b for b in placed}
    edges = [_edge(by_id[d], by_id[s]) for s, ds in plan.dependencies().items() for d in sorted(ds)
             if d in by_id and s in by_id and d != s]
    nodes = [_node(b, statuses.get(b.id, "pending")) for b in placed]
    return (f'<svg id="dag" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="plan DAG">'
            '<defs><marker id="dag-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>'
            + "".join(edges) + "".join(nodes) + "</svg>")
