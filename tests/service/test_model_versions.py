"""A model version's data snapshot keeps the feature specs as fitted on the training rows (one-hot levels, quantile
edges, level shares, group aggregates), so that scoring computes the features the model saw."""
from __future__ import annotations

from pathlib import Path

from service.model_versions import snapshot
from skills.artifacts import ArtifactStore
from skills.plan import Plan

SPECS = [{"kind": "encode", "name": "g_freq", "column": "g"}]
FITTED = [{**SPECS[0], "shares": {"a": 0.75, "b": 0.25}, "null_share": None}]


def _plan() -> Plan:
    return Plan.model_validate({"goal": "g", "steps": [
        {"id": "features", "skill": "features", "inputs": {"base_sql": "SELECT * FROM t", "specs": SPECS}},
        {"id": "train", "skill": "train_xgboost", "inputs": {"table": {"$ref": "features.table"}, "target": "y"}},
    ]})


def test_the_snapshot_keeps_the_fitted_specs(tmp_path: Path) -> None:
    outputs = {"features": {"table": {"rows": 4}, "features": ["g_freq"], "fitted": FITTED},
               "train": {"model": {"uri": "file:///m"}}}
    data = snapshot(ArtifactStore(tmp_path), _plan(), outputs)
    assert data is not None and data.specs == FITTED and data.rows == 4 and data.sql == "SELECT * FROM t"


def test_outputs_from_before_fitting_keep_the_plan_specs(tmp_path: Path) -> None:
    outputs = {"features": {"table": {"rows": 4}, "features": ["g_freq"]}, "train": {"model": {"uri": "file:///m"}}}
    data = snapshot(ArtifactStore(tmp_path), _plan(), outputs)
    assert data is not None and data.specs == SPECS
