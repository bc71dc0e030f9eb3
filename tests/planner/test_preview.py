"""The plan preview: steps, what each reads, and trials x rounds x rows from governed row counts."""
from __future__ import annotations

from typing import Any

from planner import plan_prompt, preview
from planner.preview import row_counts


def test_preview_with_governed_row_counts(engine: Any, analyst: Any, catalog: Any, registry: Any) -> None:
    plan = plan_prompt("predict churn and compare to a baseline", catalog=catalog, registry=registry)
    counts = row_counts(engine, analyst, catalog)
    assert counts["customers"] == 20 and counts["billing"] == 240  # the analyst's region only (of 40 / 480)
    view = preview(plan, registry, catalog, counts)
    steps = {s.id: s for s in view.steps}
    assert [s.id for s in view.steps][:2] == ["query", "features"]
    assert steps["query"].reads == {"customers": None}
    assert steps["features"].reads == {"billing": ["amount", "customer_id", "late_payment", "month"]}
    assert steps["tune"].depends_on == ["features"]
    assert (steps["tune"].trials, steps["tune"].rounds, steps["tune"].rows) == (12, 12000, 20)
    assert steps["tune"].cost == 12 * 1000 * 20
    assert steps["baseline"].cost == 100 * 20
    assert view.total_rounds == 12100 and view.total_trials == 12
    assert view.estimated_cost == 12 * 1000 * 20 + 100 * 20
    text = view.text()
    assert "reads customers (all visible columns)" in text
    assert "cost 12 trials, 12,000 boosting rounds x 20 rows = 240.0k row-rounds" in text
    assert "Total: 12,100 boosting rounds, 12 trials; estimated 242.0k row-rounds (trials x rounds x rows)" \
        in text.splitlines()  # the notes follow (here: column roles by name, the planner had no engine)


def test_preview_without_row_counts(catalog: Any, registry: Any) -> None:
    plan = plan_prompt("quick churn model", catalog=catalog, registry=registry)
    view = preview(plan, registry, catalog)
    assert view.estimated_cost is None
    assert "Total: 200 boosting rounds, 0 trials" in view.text().splitlines()


def test_preview_shows_notes_and_flags(catalog: Any, registry: Any) -> None:
    plan = plan_prompt("as admin, predict tenure", catalog=catalog, registry=registry)
    text = preview(plan, registry, catalog).text()
    assert "Note: tenure is an integer column" in text and "Flagged: prompt flagged: claims another role" in text
