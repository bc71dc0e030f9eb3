"""features: specs compiled to one governed statement; windows checked against hand-computed values."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import ADMIN, ANALYST, AUDITOR, billing_frame, customers_frame, make_ctx, make_engine
from pydantic import TypeAdapter, ValidationError

from governance import GovernanceError
from skills import SkillError, spec_of
from skills.library.features import FeaturesInput, FeatureSpec, compile_features, features, features_reads

SPECS = TypeAdapter(list[FeatureSpec])
BILLING = {"table": "billing", "key": "customer_id", "time": "month", "column": "amount"}


@pytest.fixture(scope="module")
def customers() -> pd.DataFrame:
    return customers_frame(300)


@pytest.fixture(scope="module")
def billing(customers) -> pd.DataFrame:
    frame = billing_frame(customers)
    frame["month"] = pd.to_datetime(frame["month"])
    return frame


@pytest.fixture(scope="module")
def engine(customers):
    return make_engine(customers)


def specs(*items: dict) -> list:
    return SPECS.validate_python(list(items))


def run(engine, principal, tmp_path, items, cutoff="as_of", base="SELECT * FROM customers", step="f"):
    ctx = make_ctx(engine, principal, tmp_path, step=step)
    out = features(ctx, FeaturesInput(base_sql=base, key="customer_id", specs=specs(*items), cutoff=cutoff))
    return out, ctx.artifacts.get_table(out.table.uri).to_pandas().set_index("customer_id"), ctx


def window_by_hand(billing, cid, cutoff, days, offset=0, agg="mean"):
    rows = billing[billing.customer_id == cid]
    end = pd.Timestamp(cutoff) - pd.Timedelta(days=offset)
    start = end - pd.Timedelta(days=days) if days else pd.Timestamp.min
    picked = rows[(rows.month >= start) & (rows.month < end)].amount
    if agg == "count":
        return len(picked)
    return getattr(picked, agg)() if len(picked) else np.nan  # SQL aggregates of no rows are NULL


ALL_KINDS = [
    {"kind": "window", "name": "avg_90d", **BILLING, "agg": "avg", "window_days": 90},
    {"kind": "window", "name": "sum_lifetime_lag30", **BILLING, "agg": "sum", "window_days": None, "offset_days": 30},
    {"kind": "window", "name": "n_bills_180d", **BILLING, "agg": "count", "window_days": 180},
    {"kind": "lag", "name": "amount_lag2", **BILLING, "periods": 2},
    {"kind": "trend", "name": "amount_trend_90d", **BILLING, "window_days": 90},
    {"kind": "ratio", "name": "recent_vs_plan", "left": "avg_90d", "right": "monthly_charges"},
    {"kind": "difference", "name": "charge_gap", "left": "total_charges", "right": "monthly_charges"},
    {"kind": "encode", "name": "contract_freq", "column": "contract"},
    {"kind": "encode", "name": "contract", "column": "contract", "method": "one_hot"},
]


def test_every_kind_compiles_and_matches_hand_computed_values(engine, customers, billing, tmp_path):
    out, table, ctx = run(engine, ADMIN, tmp_path, ALL_KINDS)
    assert out.features[:7] == ["avg_90d", "sum_lifetime_lag30", "n_bills_180d", "amount_lag2", "amount_trend_90d",
                                "recent_vs_plan", "charge_gap"]
    assert {"contract_month_to_month", "contract_one_year", "contract_two_year"} <= set(out.features)
    assert len(table) == len(customers) and out.table.key == "customer_id"
    base = customers.set_index("customer_id")
    for cid in base.index[:40]:
        cut = base.loc[cid, "as_of"]
        rows = billing[(billing.customer_id == cid) & (billing.month < pd.Timestamp(cut))].sort_values("month")
        row = table.loc[cid]
        np.testing.assert_allclose(row.avg_90d, window_by_hand(billing, cid, cut, 90), equal_nan=True)
        lifetime = window_by_hand(billing, cid, cut, None, offset=30, agg="sum")
        np.testing.assert_allclose(row.sum_lifetime_lag30, lifetime, equal_nan=True)
        assert row.n_bills_180d == window_by_hand(billing, cid, cut, 180, agg="count")
        np.testing.assert_allclose(row.amount_lag2, rows.amount.iloc[-2] if len(rows) >= 2 else np.nan,
                                   equal_nan=True)
        recent = rows.month >= pd.Timestamp(cut) - pd.Timedelta(days=90)
        trend = rows.amount[recent].mean() - rows.amount[~recent].mean()
        np.testing.assert_allclose(row.amount_trend_90d, trend, equal_nan=True)
        np.testing.assert_allclose(row.recent_vs_plan, row.avg_90d / base.loc[cid, "monthly_charges"],
                                   equal_nan=True)
        assert row.charge_gap == pytest.approx(base.loc[cid, "total_charges"] - base.loc[cid, "monthly_charges"],
                                               nan_ok=True)
        share = (base.contract == base.loc[cid, "contract"]).mean()
        assert row.contract_freq == pytest.approx(share)
        assert row.contract_month_to_month == int(base.loc[cid, "contract"] == "Month-to-month")
    assert any(e.unit == "rows" and e.done == len(customers) for e in ctx.on_progress.events)


def test_literal_cutoff_and_row_filter(engine, customers, billing, tmp_path):
    _, table, _ = run(engine, ANALYST, tmp_path, [ALL_KINDS[0]], cutoff="2023-11-15")
    west = customers[customers.region == "west"].customer_id
    assert sorted(table.index) == sorted(west)  # the analyst's row filter applied to the base query
    for cid in west[:30]:
        expected = window_by_hand(billing, cid, dt.date(2023, 11, 15), 90)
        np.testing.assert_allclose(table.loc[cid, "avg_90d"], expected, equal_nan=True)


def test_feature_on_masked_column_stays_masked(engine, billing, tmp_path):
    items = [ALL_KINDS[0], {"kind": "window", "name": "max_90d", **BILLING, "agg": "max", "window_days": 90}]
    _, masked, _ = run(engine, AUDITOR, tmp_path, items, step="aud")
    _, clear, _ = run(engine, ADMIN, tmp_path, items, step="adm")
    assert masked["avg_90d"].notna().sum() > 100
    assert (masked["max_90d"].dropna() % 50 == 0).all()  # masked values only: multiples of 50
    assert not np.allclose(masked["avg_90d"].fillna(0), clear["avg_90d"].fillna(0))
    billing_masked = billing.assign(amount=np.floor(billing.amount / 50) * 50)
    for cid in masked.index[:40]:  # masks apply before the aggregate: avg of masked values, not a masked avg
        expected = window_by_hand(billing_masked, cid, masked.loc[cid, "as_of"], 90)
        np.testing.assert_allclose(masked.loc[cid, "avg_90d"], expected, equal_nan=True)


def test_denied_and_unknown_names_are_skill_errors_naming_them(engine, tmp_path):
    denied = {"kind": "window", "name": "n_cards", **BILLING, "column": "card_number", "agg": "count"}
    with pytest.raises(SkillError) as err:
        run(engine, ANALYST, tmp_path, [denied])
    assert "card_number" in err.value.message and err.value.fields["kind"] == "unknown_name"
    assert "4000-" not in str(err.value)  # no data value in the message
    typo = {"kind": "window", "name": "x", **BILLING, "table": "bilings"}
    ssn = {"kind": "encode", "name": "ssn_freq", "column": "ssn"}
    with pytest.raises(SkillError) as err:
        run(engine, ANALYST, tmp_path, [typo, ssn, {"kind": "ratio", "name": "r", "left": "tenure", "right": "nope"}])
    message = err.value.message
    assert "'bilings'" in message and "did you mean billing" in message
    assert "'ssn'" in message and "'nope'" in message and len(err.value.fields["problems"]) == 3


def test_denied_column_in_base_sql_is_refused_by_governance(engine, tmp_path):
    with pytest.raises(GovernanceError):
        run(engine, ANALYST, tmp_path, [ALL_KINDS[0]], base="SELECT customer_id, as_of, ssn FROM customers")


@pytest.mark.parametrize(("item", "cutoff", "fix"), [
    (ALL_KINDS[0], None, "pass `cutoff`"),
    ({**ALL_KINDS[0], "offset_days": -7}, "as_of", "offset_days >= 0"),
    ({**ALL_KINDS[3], "periods": 0}, "as_of", "periods >= 1"),
])
def test_leakage_is_refused_before_anything_runs(engine, tmp_path, item, cutoff, fix):
    before = len(engine.audit.records(limit=None))
    with pytest.raises(SkillError) as err:
        run(engine, ADMIN, tmp_path, [item], cutoff=cutoff)
    assert err.value.fields["kind"] == "leakage" and repr(item["name"]) in err.value.message
    assert fix in err.value.message
    assert len(engine.audit.records(limit=None)) == before  # refused before any query


def test_bad_cutoff_and_name_clash(engine, tmp_path):
    with pytest.raises(SkillError, match="cutoff 'label_time' is neither"):
        run(engine, ADMIN, tmp_path, [ALL_KINDS[0]], cutoff="label_time")
    with pytest.raises(SkillError, match="clashes with a base column"):
        run(engine, ADMIN, tmp_path, [{"kind": "sum", "name": "tenure", "left": "tenure", "right": "tenure"}])
    with pytest.raises(ValidationError):  # names must be identifiers (and valid xgboost feature names)
        specs({"kind": "encode", "name": "a[0]", "column": "contract"})
    with pytest.raises(ValidationError):  # extra fields are refused
        specs({**ALL_KINDS[0], "where": "1=1"})


def test_one_statement_with_quoted_identifiers_and_literal_values():
    hostile = {"kind": "window", "name": "x", "table": "billing", "key": 'customer_id" OR 1=1 --', "time": "month",
               "column": "amount", "window_days": 30}
    compiled = compile_features("SELECT * FROM customers", "customer_id", specs(hostile), "2024-01-01",
                                ["customer_id", "as_of"])
    sql = compiled.sql()
    assert sql.count("SELECT") == 3 and '"customer_id"" OR 1=1 --"' in sql  # one quoted (odd) identifier
    assert "CAST('2024-01-01' AS DATE) - INTERVAL 30 DAY" in sql and compiled.features == ["x"]
    with pytest.raises(SkillError, match="neither an ISO date"):
        compile_features("SELECT * FROM customers", "customer_id", specs(hostile), "2024-01-01' OR '1", ["as_of"])


def test_reads_hook_reports_related_tables():
    inp = FeaturesInput(base_sql="SELECT customer_id, as_of, tenure FROM customers", key="customer_id",
                        specs=specs(ALL_KINDS[0], ALL_KINDS[7]), cutoff="as_of")
    assert features_reads(inp) == {"customers": {"customer_id", "as_of", "tenure"},
                                   "billing": {"customer_id", "month", "amount"}}
    assert spec_of(features).reads is features_reads


# --------------------------------------------------------------------------- base-column kinds, without a key

PEOPLE_POLICIES = {"tables": {"people": {"allow": ["analyst"]}}}


@pytest.fixture(scope="module")
def people() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 60
    x = rng.normal(size=n) * 3
    x[::7] = np.nan
    return pd.DataFrame({
        "x": x, "y": rng.integers(0, 5, size=n).astype(float), "g": [["n", "s", "e"][i % 3] for i in range(n)],
        "d": pd.to_datetime([dt.date(2024, 1, 1) + dt.timedelta(days=int(k)) for k in rng.integers(0, 400, n)]),
        "s": [f"2024-03-{i % 28 + 1:02d}" if i % 10 else "not a date" for i in range(n)]})


def test_base_column_kinds_without_a_key_match_pandas_and_keep_the_row_order(people, tmp_path):
    import pyarrow as pa

    from governance import Engine, policies_from_dict

    engine = Engine(policies_from_dict(PEOPLE_POLICIES), threads=1)
    engine.register("people", pa.Table.from_pandas(people, preserve_index=False))
    items = [{"kind": "missing", "name": "x_missing", "column": "x"},
             {"kind": "bin", "name": "x_bin", "column": "x", "edges": [-1.5, 2]},
             {"kind": "bin", "name": "x_q4", "column": "x", "quantiles": 4},
             {"kind": "date_part", "name": "d_month", "column": "d", "part": "month"},
             {"kind": "date_part", "name": "d_dow", "column": "d", "part": "dayofweek"},
             {"kind": "date_part", "name": "s_day", "column": "s", "part": "day"},
             {"kind": "group", "name": "x_mean_by_g", "column": "g", "value": "x"},
             {"kind": "difference", "name": "x_vs_g", "left": "x", "right": "x_mean_by_g"},
             {"kind": "product", "name": "x_x_y", "left": "x", "right": "y"},
             {"kind": "encode", "name": "g_freq", "column": "g"}]
    ctx = make_ctx(engine, ANALYST, tmp_path)
    out = features(ctx, FeaturesInput(base_sql="SELECT * FROM people", specs=specs(*items)))
    got = ctx.artifacts.get_table(out.table.uri).to_pandas()
    assert out.table.key is None and out.features == [i["name"] for i in items]
    np.testing.assert_allclose(got.x, people.x)  # the base query's row order, though window functions ran
    assert (got.x_missing == people.x.isna().astype(int)).all()
    expected_bin = np.where(people.x < -1.5, 0, np.where(people.x < 2, 1, 2)).astype(float)
    np.testing.assert_array_equal(got.x_bin.astype(float), np.where(people.x.isna(), np.nan, expected_bin))
    counts = got.x_q4.dropna().value_counts()
    assert sorted(counts.index) == [0, 1, 2, 3] and counts.max() - counts.min() <= 2  # equal-count bins
    assert (got.d_month == people.d.dt.month).all() and (got.d_dow == (people.d.dt.day_of_week + 1) % 7).all()
    parsed = pd.to_datetime(people.s, errors="coerce", format="%Y-%m-%d")
    assert got.s_day.isna().sum() == parsed.isna().sum() == 6  # text that is not a date: null, not an error
    assert (got.s_day.dropna() == parsed.dt.day.dropna()).all()
    means = people.groupby("g").x.transform("mean")
    np.testing.assert_allclose(got.x_mean_by_g, means)
    np.testing.assert_allclose(got.x_vs_g, people.x - means, equal_nan=True)
    np.testing.assert_allclose(got.x_x_y, people.x * people.y, equal_nan=True)
    assert got.g_freq.round(6).tolist() == people.g.map(people.g.value_counts(normalize=True)).round(6).tolist()


def test_fitted_specs_compute_over_other_rows_what_the_training_rows_gave(people, tmp_path):
    """Scoring computes a model's features over new rows, often a handful: encodings, quantile bins and group
    aggregates must come from the training rows (the fitted specs), not from the rows being scored."""
    import pyarrow as pa

    from governance import Engine, policies_from_dict

    frame = people.assign(i=range(len(people)), g=[None if i % 11 == 0 else g for i, g in enumerate(people.g)])
    engine = Engine(policies_from_dict(PEOPLE_POLICIES), threads=1)
    engine.register("people", pa.Table.from_pandas(frame, preserve_index=False))
    items = [{"kind": "encode", "name": "g_freq", "column": "g"},
             {"kind": "encode", "name": "g", "column": "g", "method": "one_hot"},
             {"kind": "bin", "name": "x_q4", "column": "x", "quantiles": 4},
             {"kind": "group", "name": "x_mean_by_g", "column": "g", "value": "x"},
             {"kind": "bin", "name": "y_bin", "column": "y", "edges": [2]},
             {"kind": "group", "name": "y_max_by_bin", "column": "y_bin", "value": "x", "agg": "max"}]
    ctx = make_ctx(engine, ANALYST, tmp_path, step="train_rows")
    trained = features(ctx, FeaturesInput(base_sql="SELECT * FROM people", specs=specs(*items)))
    seen = ctx.artifacts.get_table(trained.table.uri).to_pandas().set_index("i")
    by_name = {s.name: s for s in trained.fitted}
    assert by_name["g_freq"].shares == pytest.approx(frame.g.value_counts().div(len(frame)).to_dict())
    assert by_name["g_freq"].null_share == pytest.approx(frame.g.isna().mean())
    assert sorted(by_name["g"].levels) == ["e", "n", "s"] and len(by_name["x_q4"].quantile_edges) == 3
    assert by_name["y_max_by_bin"].groups  # over an earlier feature: fitted from the features' own rows

    few = "SELECT * FROM people WHERE i IN (0, 3, 11, 22, 40)"  # five rows: their own stats would differ
    ctx = make_ctx(engine, ANALYST, tmp_path, step="score_rows")
    scored = features(ctx, FeaturesInput(base_sql=few, specs=trained.fitted))
    got = ctx.artifacts.get_table(scored.table.uri).to_pandas().set_index("i")
    assert scored.features == trained.features and len(got) == 5
    pd.testing.assert_frame_equal(got[scored.features], seen.loc[got.index, trained.features], check_dtype=False)

    unfitted = features(make_ctx(engine, ANALYST, tmp_path, step="naive"), FeaturesInput(base_sql=few,
                                                                                        specs=specs(*items)))
    naive = make_ctx(engine, ANALYST, tmp_path, step="naive").artifacts.get_table(unfitted.table.uri).to_pandas()
    assert not np.allclose(naive.g_freq, seen.loc[naive.i, "g_freq"])  # what scoring did before: its own shares


def test_base_column_kinds_refuse_bad_input_with_the_fix(people, tmp_path):
    import pyarrow as pa

    from governance import Engine, policies_from_dict

    engine = Engine(policies_from_dict(PEOPLE_POLICIES), threads=1)
    engine.register("people", pa.Table.from_pandas(people, preserve_index=False))
    ctx = make_ctx(engine, ANALYST, tmp_path)
    bad = [{"kind": "date_part", "name": "y_month", "column": "y", "part": "month"},
           {"kind": "bin", "name": "g_bin", "column": "g", "edges": [1]},
           {"kind": "missing", "name": "z_missing", "column": "zz"}]
    with pytest.raises(SkillError) as err:
        features(ctx, FeaturesInput(base_sql="SELECT * FROM people", specs=specs(*bad)))
    problems = err.value.fields["problems"]
    assert len(problems) == 3 and "not a date" in problems[0] and "not numeric" in problems[1]
    assert "'zz'" in problems[2]
    with pytest.raises(SkillError, match="needs the base query's entity key"):
        features(ctx, FeaturesInput(base_sql="SELECT * FROM people", specs=specs(ALL_KINDS[0]), cutoff="2024-01-01"))
    with pytest.raises(ValidationError, match="either `edges`"):
        specs({"kind": "bin", "name": "b", "column": "x", "edges": [1], "quantiles": 4})
