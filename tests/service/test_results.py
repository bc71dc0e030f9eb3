"""result.json from a session's step outputs: the cross-validated headline named with its protocol, the validation
number named as the rows that tuned the model, the decision threshold and the training table's row count."""
from __future__ import annotations

from datetime import UTC, datetime

from service.results import SessionSummary
from service.session import summarize
from skills.plan import Plan
from skills.runs import RunResult, StepResult

NOW = datetime(2024, 1, 1, tzinfo=UTC)
PLAN = Plan.model_validate({"goal": "predict churn", "steps": [
    {"id": "query", "skill": "query", "inputs": {"sql": "SELECT * FROM customers"}},
    {"id": "features", "skill": "features", "inputs": {"table": {"$ref": "query.table"}}},
    {"id": "tune", "skill": "tune", "inputs": {"table": {"$ref": "features.table"}, "target": "churn"}},
    {"id": "evaluate", "skill": "evaluate", "inputs": {"model": {"$ref": "tune.model"},
                                                       "table": {"$ref": "features.table"}}},
]})
OUTPUTS = {
    "query": {"table": {"uri": "q", "rows": 5000, "columns": ["churn", "x"]}},
    "features": {"table": {"uri": "f", "rows": 4990, "columns": ["churn", "x", "x2"]}},
    "tune": {"model": {"uri": "m", "task": "classification", "target": "churn", "features": ["x", "x2"],
                       "threshold": 0.31, "metrics": {"auc": 0.91}}},
    "evaluate": {"metric_name": "auc", "metric_value": 0.88, "cv_metrics": {"auc": 0.88}, "metrics": {"auc": 0.91},
                 "protocol": "5-fold stratified CV, seed 0", "metrics_protocol": "validation (used for tuning)"},
}


def test_result_names_which_number_is_which_and_counts_the_training_rows() -> None:
    run = RunResult(id="r1", user="ann", status="succeeded", created=NOW, updated=NOW, plan=PLAN.model_dump(),
                    steps={sid: StepResult(id=sid, skill=PLAN.step(sid).skill, status="succeeded", outputs=out)
                           for sid, out in OUTPUTS.items()})
    result = SessionSummary.model_validate(summarize(PLAN, run, None, elapsed=1.0))
    assert result.rows == 4990  # the table the model was trained on (the features step's), not the query's
    assert result.metric is not None and result.metric.model_dump() == {
        "name": "auc", "value": 0.88, "protocol": "5-fold stratified CV, seed 0"}
    assert result.validation is not None and result.validation.model_dump() == {
        "name": "auc", "value": 0.91, "protocol": "validation (used for tuning)"}
    assert result.metric_value == 0.88 and result.metric_protocol == "5-fold stratified CV, seed 0"
    assert result.threshold == 0.31
