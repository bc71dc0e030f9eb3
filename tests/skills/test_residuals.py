"""residuals: per-row error and the slices where it is highest (planted bad slice, hand-checked numbers)."""
from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb
from analysis_fixtures import ADMIN, customers_frame, make_ctx, make_engine, planted_churn, planted_model

from skills import SkillError
from skills.frame import build_frame
from skills.library.residuals import ResidualsInput, residuals, slice_codes


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Churn data with a `segment` column the model does not use; in segment z, 45% of labels are flipped."""
    df = planted_churn()
    rng = np.random.default_rng(7)
    df["segment"] = rng.choice(["a", "b", "c", "z"], len(df), p=[0.3, 0.3, 0.3, 0.1])
    flip = (df.segment == "z").to_numpy() & (rng.random(len(df)) < 0.45)
    df.loc[flip, "churn"] = np.where(df.loc[flip, "churn"] == "Yes", "No", "Yes")
    ctx = make_ctx(make_engine(customers_frame(50)), ADMIN, tmp_path_factory.mktemp("residuals"), step="res")
    model, table = planted_model(ctx.artifacts, df)
    return ctx, model, table, df


def predicted(ctx, model, table):
    booster = xgb.Booster()
    booster.load_model(bytearray(ctx.artifacts.get_bytes(model.uri)))
    frame = build_frame(ctx.artifacts.get_table(table.uri), model.features, model.target, model.task,
                        categories=model.categories)
    return frame.y, booster.predict(frame.dmatrix())


def test_planted_bad_slice_is_found_first(setup):
    ctx, model, table, df = setup
    out = residuals(ctx, ResidualsInput(model=model, table=table))
    top = out.slices[0]
    assert (top.column, top.slice, top.in_model) == ("segment", "z", False)
    assert top.count == int((df.segment == "z").sum()) and top.lift > 2.0
    y, p = predicted(ctx, model, table)
    logloss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert out.overall_error == pytest.approx(logloss.mean(), rel=1e-6) and out.error_name == "logloss"
    assert top.error == pytest.approx(logloss[(df.segment == "z").to_numpy()].mean(), rel=1e-6)
    assert top.lift == pytest.approx(top.error / out.overall_error)
    assert len(out.slices) == 10 and [s.error for s in out.slices] == sorted((s.error for s in out.slices),
                                                                              reverse=True)
    assert {"customer_id", "ssn", "churn"}.isdisjoint(s.column for s in out.slices)
    assert any(e.unit == "columns" for e in ctx.on_progress.events)


def test_min_count_top_k_columns_and_abs_error(setup):
    ctx, model, table, df = setup
    n_z = int((df.segment == "z").sum())
    out = residuals(ctx, ResidualsInput(model=model, table=table, columns=["segment", "tenure"], min_count=n_z + 1,
                                        top_k=50, error="abs"))
    assert out.slices and all(s.count > n_z for s in out.slices) and "z" not in {s.slice for s in out.slices}
    assert {s.column for s in out.slices} == {"segment", "tenure"}
    y, p = predicted(ctx, model, table)
    assert out.overall_error == pytest.approx(np.abs(p - y).mean(), rel=1e-6)
    small = residuals(ctx, ResidualsInput(model=model, table=table, top_k=3, min_count=1))
    assert len(small.slices) == 3


def test_quantile_bins_cover_every_row(setup):
    ctx, model, table, df = setup
    out = residuals(ctx, ResidualsInput(model=model, table=table, columns=["tenure"], bins=4, min_count=1, top_k=99))
    assert len(out.slices) == 4 and sum(s.count for s in out.slices) == len(df)
    assert all(s.slice.startswith("[") for s in out.slices)
    assert sum(s.slice.endswith("]") for s in out.slices) == 1  # only the last bin is closed


def test_regression_squared_error(tmp_path):
    df = customers_frame(1200).dropna(subset=["total_charges"])
    ctx = make_ctx(make_engine(customers_frame(20)), ADMIN, tmp_path)
    model, table = planted_model(ctx.artifacts, df, target="total_charges", task="regression")
    out = residuals(ctx, ResidualsInput(model=model, table=table, columns=["contract"], min_count=10))
    y, p = predicted(ctx, model, table)
    assert out.error_name == "squared" and out.overall_error == pytest.approx(((p - y) ** 2).mean(), rel=1e-5)
    with pytest.raises(SkillError, match="log loss needs a classification"):
        residuals(ctx, ResidualsInput(model=model, table=table, error="logloss"))


def test_unknown_slice_column_and_labels(setup):
    ctx, model, table, _ = setup
    with pytest.raises(SkillError, match="not in the table: nope"):
        residuals(ctx, ResidualsInput(model=model, table=table, columns=["nope"]))
    import pyarrow as pa

    codes, names = slice_codes(pa.chunked_array([[1, 2, None, 2]]), bins=5)
    assert [names[c] for c in codes] == ["1", "2", "(missing)", "2"]  # few distinct values: a slice each
    codes, names = slice_codes(pa.chunked_array([["b", None], ["a", "b"]]), bins=5)
    assert [names[c] for c in codes] == ["b", "(missing)", "a", "b"]


def _slices(out):
    return {(s.column, s.slice): s for s in out.slices}


def test_ray_tasks_over_row_groups_give_the_slices_of_one_read(setup, ray_cluster):
    """The same table stored in many row groups, scored in two Ray tasks and many batches: same slices, same counts,
    errors equal up to the order of summation."""
    import dataclasses

    import pyarrow.parquet as pq

    ctx, model, table, df = setup
    data = ctx.artifacts.get_table(table.uri)
    path = ctx.artifacts.local_path("fixture/grouped.parquet")
    pq.write_table(data, path, row_group_size=700)
    grouped = table.model_copy(update={"uri": ctx.artifacts.uri("fixture/grouped.parquet")})
    on_ray = dataclasses.replace(ctx, settings=ctx.settings.model_copy(update={"compute": "ray"}))
    every = {"min_count": 1, "top_k": 500}
    here = residuals(ctx, ResidualsInput(model=model, table=table, **every))
    there = residuals(on_ray, ResidualsInput(model=model, table=grouped, **every))
    assert there.rows == here.rows == len(df) and there.overall_error == pytest.approx(here.overall_error, rel=1e-9)
    assert _slices(there).keys() == _slices(here).keys() and len(here.slices) > 20
    for key, s in _slices(here).items():
        assert (_slices(there)[key].count, _slices(there)[key].error) == (s.count, pytest.approx(s.error, rel=1e-9))
    assert any(e.unit == "parts" and e.total >= 2 for e in ctx.on_progress.events)  # several tasks


def test_a_table_larger_than_the_sample_keeps_exact_counts(setup, monkeypatch):
    """Bins come from a sample, counts and errors from every row: levels exact, bins cover every row and are named
    with the whole table's min and max."""
    import skills.library.residuals as module

    ctx, model, table, df = setup
    spec = ResidualsInput(model=model, table=table, columns=["segment", "tenure"], min_count=1, top_k=99)
    full = residuals(ctx, spec)
    monkeypatch.setattr(module, "SAMPLE_ROWS", 500)
    sampled = residuals(ctx, spec)
    assert sampled.rows == full.rows and sampled.overall_error == pytest.approx(full.overall_error, rel=1e-12)
    levels = {k: v for k, v in _slices(sampled).items() if k[0] == "segment"}
    assert levels.keys() == {k for k in _slices(full) if k[0] == "segment"}
    assert all(s.count == _slices(full)[k].count and s.error == pytest.approx(_slices(full)[k].error)
               for k, s in levels.items())
    bins = sorted((s for s in sampled.slices if s.column == "tenure"), key=lambda s: float(s.slice[1:].split(",")[0]))
    assert sum(s.count for s in bins) == len(df) - int(df.tenure.isna().sum())
    assert bins[0].slice.startswith(f"[{int(df.tenure.min())},") and bins[-1].slice.endswith(f"{int(df.tenure.max())}]")
