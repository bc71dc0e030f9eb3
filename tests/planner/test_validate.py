"""validate_plan on broken plans: every problem kind, all problems at once, each with a location and a hint."""
from __future__ import annotations

from typing import Any, Literal

import pytest

from planner import Budget, PlanProblem, plan_prompt, validate_plan
from planner.validate import compatible
from skills.plan import Plan
from skills.types import ModelArtifact, TableArtifact


@pytest.fixture()
def plan(catalog: Any, registry: Any) -> dict[str, Any]:
    """A valid churn plan as JSON-like data, for the tests to break."""
    return plan_prompt("predict churn and compare to a baseline", catalog=catalog, registry=registry).model_dump()


def _step(plan: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in plan["steps"] if s["id"] == step_id)


def _problems(plan: dict[str, Any], registry: Any, catalog: Any, budget: Budget | None = None) -> list[PlanProblem]:
    return validate_plan(plan, registry, catalog, budget)


def _only(problems: list[PlanProblem]) -> PlanProblem:
    assert len(problems) == 1, problems
    return problems[0]


def test_the_unbroken_plan_is_valid(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    assert _problems(plan, registry, catalog) == []


def test_unknown_skill_with_close_match(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "explain")["skill"] = "explian"
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.step, p.field, p.message) == ("unknown_skill", "explain", "skill", "unknown skill 'explian'")
    assert p.hint == "did you mean explain?"


def test_unknown_skill_without_close_match_lists_the_skills(plan: dict[str, Any], registry: Any,
                                                            catalog: Any) -> None:
    _step(plan, "explain")["skill"] = "zzz"
    assert _only(_problems(plan, registry, catalog)).hint.startswith("known skills: query, features,")


def test_unknown_ref_step(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "evaluate")["inputs"]["model"] = {"$ref": "tunee.model"}
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.step, p.field) == ("unknown_ref", "evaluate", "model")
    assert p.message == "refers to step 'tunee', which is not in the plan" and p.hint == "did you mean tune?"


def test_unknown_ref_field(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "explain")["inputs"]["model"] = {"$ref": "tune.modle"}
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.step, p.field) == ("unknown_ref", "explain", "model")
    assert p.message == "step 'tune' (tune) has no output 'modle'" and p.hint == "did you mean model?"


def test_dotted_refs_are_checked_against_the_output_model(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "evaluate")["inputs"]["folds"] = {"$ref": "tune.model.num_rounds"}  # int feeds int
    _step(plan, "explain")["inputs"]["top_k"] = {"$ref": "tune.best_params.max_depth"}  # a free dict: Any
    assert _problems(plan, registry, catalog) == []


def test_a_bad_sub_path_is_an_unknown_ref(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "evaluate")["inputs"]["folds"] = {"$ref": "tune.model.num_roundz"}
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.step, p.field) == ("unknown_ref", "evaluate", "folds")
    assert p.message == "step 'tune' (tune) has no output 'model.num_roundz'" and p.hint == "did you mean num_rounds?"


def test_a_name_into_a_list_output_is_an_unknown_ref(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "explain")["inputs"]["top_k"] = {"$ref": "tune.trials.best"}
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.message) == ("unknown_ref", "step 'tune' (tune) has no output 'trials.best'")
    assert p.hint == "trials is a list: index it with a number"


def test_the_type_of_a_dotted_path_must_match_the_input(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "evaluate")["inputs"]["folds"] = {"$ref": "tune.model.target"}
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.step, p.field) == ("type_mismatch", "evaluate", "folds")
    assert p.message == "tune.model.target is str but evaluate.folds expects int"


def test_refs_nested_in_lists_and_dicts_are_checked(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "tune")["inputs"]["features"] = [{"$ref": "features.features.0"}, {"$ref": "ghost.features"}]
    _step(plan, "report")["inputs"]["metrics"] = {"auc": {"$ref": "evaluate.metrics.auc"},
                                                  "gain": {"$ref": "evaluate.nope"}}
    problems = _problems(plan, registry, catalog)
    assert [(p.kind, p.step, p.field) for p in problems] == [("unknown_ref", "tune", "features"),
                                                              ("unknown_ref", "report", "metrics")]
    assert "'ghost'" in problems[0].message and problems[1].message == "step 'evaluate' (evaluate) has no output 'nope'"


def test_cycle(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "query")["inputs"]["key"] = {"$ref": "report.uri"}  # str feeds str | None: only the cycle is wrong
    p = _only(_problems(plan, registry, catalog))
    assert p.kind == "cycle" and p.step == "query"
    assert "query -> " in p.message and p.message.endswith("-> query")


def test_duplicate_step_id(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    plan["steps"].append(dict(_step(plan, "explain")))
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.step) == ("duplicate_step", "explain")


@pytest.mark.parametrize(("step", "inputs", "field", "message"), [
    ("tune", {"num_trials": "many"}, "num_trials",
     "Input should be a valid integer, unable to parse string as an integer"),
    ("tune", {"search": "grid"}, "search", "Input should be 'optuna', 'hyperopt' or 'random'"),
    ("explain", {"top_k": [3]}, "top_k", "Input should be a valid integer"),
    ("features", {"specs": [{"kind": "window", "name": "x", "table": "billing", "key": "customer_id",
                             "time": "month", "column": "amount", "agg": "median", "window_days": 30}]},
     "specs.0.window.agg", "Input should be 'avg', 'sum', 'min', 'max', 'count' or 'stddev'"),
])
def test_literal_input_schema_errors(step: str, inputs: dict[str, Any], field: str, message: str,
                                     plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, step)["inputs"].update(inputs)
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.step, p.field, p.message) == ("schema", step, field, message)
    assert p.hint


def test_missing_literal_input(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    del _step(plan, "tune")["inputs"]["target"]
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.step, p.field, p.message) == ("schema", "tune", "target", "Field required")
    assert p.hint.startswith("target is str")


def test_unknown_input_name(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "tune")["inputs"]["num_trails"] = 3
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.field, p.message, p.hint) == ("schema", "num_trails", "tune has no input 'num_trails'",
                                                    "did you mean num_trials?")


def test_ref_valued_required_inputs_count_as_present(registry: Any, catalog: Any) -> None:
    plan = {"steps": [
        {"id": "q", "skill": "query", "inputs": {"sql": "SELECT * FROM customers"}},
        {"id": "t", "skill": "train_xgboost", "inputs": {"table": {"$ref": "q.table"}, "target": "churn"}},
        {"id": "e", "skill": "evaluate", "inputs": {"model": {"$ref": "t.model"}, "table": {"$ref": "q.table"}}},
    ]}
    assert _problems(plan, registry, catalog) == []


def test_output_type_must_match_the_input(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "evaluate")["inputs"]["table"] = {"$ref": "tune.model"}
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.step, p.field) == ("type_mismatch", "evaluate", "table")
    assert p.message == "tune.model is ModelArtifact but evaluate.table expects TableArtifact"
    assert p.hint == "refer to an output of that type, e.g. query.table, features.table"


def test_scalar_output_feeding_an_artifact(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "explain")["inputs"]["model"] = {"$ref": "query.sql"}
    p = _only(_problems(plan, registry, catalog))
    assert p.message == "query.sql is str but explain.model expects ModelArtifact"


@pytest.mark.parametrize(("out", "inp", "ok"), [
    (ModelArtifact, ModelArtifact | None, True),
    (ModelArtifact | None, ModelArtifact, True),   # an Optional output may feed; the run fails if it is None
    (TableArtifact, ModelArtifact, False),
    (TableArtifact, ModelArtifact | None, False),
    (str, str | None, True),
    (int, float, True),
    (float, int, False),
    (str, list[str], False),
    (list[str], list[str] | None, True),
    (list[str], list[int], False),
    (list[dict[str, Any]], list[dict[str, float]] | None, True),
    (Literal["a", "b"], str, True),
    (dict[str, float], dict[str, Any] | None, True),
    (dict[str, float], TableArtifact, False),
    (dict[str, Any], TableArtifact, True),
    (ModelArtifact, dict[str, Any], True),
    (dict[str, float], list[float], False),
    (Any, TableArtifact, True),
    (str | TableArtifact, TableArtifact, True),
])
def test_compatible(out: Any, inp: Any, ok: bool) -> None:
    assert compatible(out, inp) is ok


HIDDEN = "(it does not exist or you may not see it)"


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT ssn, churn FROM customers", f"column 'ssn' of table 'customers' is not in your catalog {HIDDEN}"),
    ("SELECT * FROM hr_secrets", f"table 'hr_secrets' is not in your catalog {HIDDEN}"),
    ("SELECT * FROM no_such_table", f"table 'no_such_table' is not in your catalog {HIDDEN}"),
    ("SELECT c.churn FROM customers c JOIN billing b ON c.customer_id = b.customer_id WHERE ssn = '1'",
     f"column 'ssn' is not in the tables this SQL reads {HIDDEN}"),
    ("WITH x AS (SELECT ssn FROM customers) SELECT * FROM x",
     f"column 'ssn' of table 'customers' is not in your catalog {HIDDEN}"),
    ("SELECT * FROM read_csv('/etc/passwd')", "reads from \"READ_CSV('/etc/passwd')\", which is not a catalog table"),
])
def test_sql_reads_only_what_the_principal_may_see(sql: str, message: str, plan: dict[str, Any], registry: Any,
                                                   catalog: Any) -> None:
    _step(plan, "query")["inputs"]["sql"] = sql
    messages = [p.message for p in _problems(plan, registry, catalog) if p.kind == "access"]
    assert message in messages


def test_denied_and_missing_tables_read_the_same(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "query")["inputs"]["sql"] = "SELECT * FROM hr_secrets"
    denied = _only(_problems(plan, registry, catalog))
    _step(plan, "query")["inputs"]["sql"] = "SELECT * FROM hr_secretz"
    missing = _only(_problems(plan, registry, catalog))
    # nothing in the problem tells a hidden table from one that does not exist
    assert denied.message.replace("hr_secrets", "T") == missing.message.replace("hr_secretz", "T")
    assert "hr_secrets" not in denied.hint


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT * FROM (customers", "the SQL does not parse: Expecting )"),
    ("DELETE FROM customers", "expected a SELECT query, got DELETE"),
    ("SELECT 1; SELECT 2", "expected one SQL statement, found 2"),
])
def test_sql_that_is_not_one_select(sql: str, message: str, plan: dict[str, Any], registry: Any,
                                    catalog: Any) -> None:
    _step(plan, "query")["inputs"]["sql"] = sql
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.step, p.field, p.message) == ("schema", "query", "sql", message)


def test_feature_spec_over_hidden_table_and_column(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    specs = _step(plan, "features")["inputs"]["specs"]
    specs[0] = {**specs[0], "table": "hr_secrets"}
    specs[1] = {**specs[1], "column": "ssn", "table": "customers"}
    messages = {p.message for p in _problems(plan, registry, catalog)}
    assert f"table 'hr_secrets' is not in your catalog {HIDDEN}" in messages
    assert f"column 'ssn' of table 'customers' is not in your catalog {HIDDEN}" in messages


@pytest.mark.parametrize(("step", "field", "value"), [
    ("tune", "target", "ssn"), ("tune", "features", ["tenure", "ssn"]), ("residuals", "columns", ["ssn"]),
])
def test_column_inputs_must_be_visible(step: str, field: str, value: Any, plan: dict[str, Any], registry: Any,
                                       catalog: Any) -> None:
    _step(plan, step)["inputs"][field] = value
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.step, p.field) == ("access", step, field)
    assert p.message == f"column 'ssn' is not in your catalog nor made by a step {HIDDEN}"


def test_feature_names_made_by_the_plan_are_known(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "tune")["inputs"]["features"] = ["tenure", "billing_amount_avg_90d"]
    assert _problems(plan, registry, catalog) == []


def test_catalog_none_skips_access_checks(plan: dict[str, Any], registry: Any) -> None:
    _step(plan, "query")["inputs"]["sql"] = "SELECT ssn FROM customers"
    assert validate_plan(plan, registry, None) == []


@pytest.mark.parametrize(("budget", "message"), [
    (Budget(max_boosting_rounds=1000), "the plan needs 12100 boosting rounds, over your quota of 1000"),
    (Budget(max_trials=5), "the plan runs 12 tuning trials, over your quota of 5"),
    (Budget(max_steps=5), "the plan has 9 steps, over your quota of 5"),
])
def test_budget_over_quota(budget: Budget, message: str, plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    p = _only(_problems(plan, registry, catalog, budget))
    assert (p.kind, p.message) == ("budget", message)


def test_budget_counts_skills_without_a_cost_function(new_standin_registry: Any, catalog: Any) -> None:
    plain = new_standin_registry()
    plain._skills["tune"] = plain.get("tune").__class__(**{**plain.get("tune").__dict__, "cost": None})
    plan = {"steps": [{"id": "q", "skill": "query", "inputs": {"sql": "SELECT * FROM customers"}},
                      {"id": "t", "skill": "tune", "inputs": {"table": {"$ref": "q.table"}, "target": "churn",
                                                              "num_trials": 10, "max_rounds": 300}}]}
    p = _only(validate_plan(plan, plain, catalog, Budget(max_boosting_rounds=2999)))
    assert p.message == "the plan needs 3000 boosting rounds, over your quota of 2999"


def test_every_problem_at_once(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "explain")["skill"] = "explian"
    _step(plan, "evaluate")["inputs"]["table"] = {"$ref": "tune.model"}
    _step(plan, "residuals")["inputs"]["model"] = {"$ref": "nowhere.model"}
    _step(plan, "tune")["inputs"]["num_trials"] = 500
    _step(plan, "query")["inputs"]["sql"] = "SELECT ssn FROM customers"
    _step(plan, "query")["inputs"]["key"] = {"$ref": "report.uri"}
    _step(plan, "tune")["inputs"]["search"] = "grid"
    kinds = {p.kind for p in _problems(plan, registry, catalog)}
    assert kinds == {"unknown_skill", "type_mismatch", "unknown_ref", "budget", "access", "cycle", "schema"}


def test_malformed_plan_data(registry: Any, catalog: Any) -> None:
    problems = validate_plan({"steps": [{"id": "1bad", "skill": "query"}, {"skill": "query"}], "extra": 1},
                             registry, catalog)
    assert {(p.kind, p.step, p.field) for p in problems} == {
        ("plan", "1bad", "id"), ("plan", "steps[1]", "id"), ("plan", None, "extra")}
    assert all(p.hint for p in problems)


def test_plan_objects_and_dicts_agree(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "explain")["skill"] = "explian"
    assert validate_plan(Plan.model_validate(plan), registry, catalog) == validate_plan(plan, registry, catalog)


@pytest.mark.parametrize(("step", "field", "value"), [
    ("evaluate", "table", {"uri": "file:///srv/warehouse/customers.parquet", "rows": 10, "columns": ["churn"]}),
    ("explain", "model", {"uri": "file:///srv/other-user/model.json", "task": "classification", "target": "churn",
                          "features": ["tenure"]}),
])
def test_tables_and_models_only_come_from_steps(step: str, field: str, value: dict[str, Any], plan: dict[str, Any],
                                                registry: Any, catalog: Any) -> None:
    # a literal artifact could name the warehouse's own files or another user's run: data around governance
    _step(plan, step)["inputs"][field] = value
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.step, p.field) == ("access", step, field)
    assert "through governance" in p.message and '"$ref"' in p.hint


# ---------------------------------------------------------------------------------------------------------------------
# A plan must do something; a modelling plan must train; SQL that cannot be analysed is a problem, never a crash


@pytest.mark.parametrize("raw", [{}, {"steps": []}, {"goal": "predict churn", "steps": [], "metadata": {}}])
def test_a_plan_without_steps_is_a_problem(raw: dict[str, Any], registry: Any, catalog: Any) -> None:
    p = _only(_problems(raw, registry, catalog))
    assert (p.kind, p.step, p.field) == ("plan", None, "steps")
    assert "no steps" in p.message and "train_xgboost" in p.hint


def test_a_modelling_plan_without_a_training_step_is_a_problem(plan: dict[str, Any], registry: Any,
                                                               catalog: Any) -> None:
    assert plan["metadata"]["target"] == "churn"  # the rules planner says what the plan models
    plan["steps"] = [s for s in plan["steps"] if s["id"] == "query"]
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.field) == ("plan", "steps")
    assert p.message == "the goal is a model of 'churn', but no step trains one"
    assert "train_xgboost or tune" in p.hint


def test_a_plan_that_does_not_model_needs_no_training_step(registry: Any, catalog: Any) -> None:
    data_only = {"steps": [{"id": "q", "skill": "query", "inputs": {"sql": "SELECT * FROM customers"}}]}
    assert _problems(data_only, registry, catalog) == []
    assert [p.field for p in validate_plan(data_only, registry, catalog, modelling=True)] == ["steps"]


_SHARED_X = "SELECT x.churn FROM customers AS x, (SELECT 1 AS a) AS x"
_SEMI_FIRST = ("SELECT x.churn FROM (SELECT 1 AS b) AS y SEMI JOIN (SELECT 1 AS c) AS x ON TRUE, customers AS x, "
               "(SELECT 1 AS a) AS x")


@pytest.mark.parametrize("sql", [
    _SHARED_X, _SEMI_FIRST,
    "WITH x AS (SELECT 1 AS a) SELECT x.churn FROM customers AS x, x",
    "SELECT x.churn FROM customers AS x LEFT JOIN billing AS X ON TRUE",
    "SELECT x.churn FROM customers AS x ANTI JOIN billing AS x ON TRUE",
    "SELECT x.churn FROM customers AS x, LATERAL (SELECT 1 AS a) AS x",
    "SELECT x.churn FROM customers AS x POSITIONAL JOIN billing AS x",
    "SELECT x.churn FROM customers AS x ASOF JOIN billing AS x ON x.tenure >= x.tenure",
    "SELECT c.churn FROM customers c WHERE c.tenure IN (SELECT x.tenure FROM customers x, billing x)",
])
def test_duplicate_source_names_are_a_problem(sql: str, plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "query")["inputs"]["sql"] = sql
    p = _only(_problems(plan, registry, catalog))  # one clear problem, not a sqlglot exception
    assert (p.kind, p.step, p.field) == ("schema", "query", "sql")
    assert p.message.lower() == "two sources in one from share the name 'x'"  # as the query writes it
    assert p.hint == "give each table, subquery and CTE its own alias"


def test_duplicate_cte_names_are_a_problem(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    _step(plan, "query")["inputs"]["sql"] = "WITH x AS (SELECT 1 AS a), X AS (SELECT 2 AS a) SELECT * FROM x"
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.step, p.field) == ("schema", "query", "sql")
    assert p.message == "two CTEs of one WITH share the name 'X'" and p.hint == "give each CTE its own name"


def test_distinct_aliases_in_every_scope_are_fine(plan: dict[str, Any], registry: Any, catalog: Any) -> None:
    # the same alias in two different scopes (outer query, subquery) is not a collision
    _step(plan, "query")["inputs"]["sql"] = ("SELECT x.churn, x.tenure FROM customers AS x "
                                             "WHERE x.tenure IN (SELECT x.tenure FROM customers AS x)")
    assert _problems(plan, registry, catalog) == []


def test_sql_reads_failures_become_problems(plan: dict[str, Any], registry: Any, catalog: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlglot.errors

    import planner.validate as validate

    def broken(sql: str) -> dict[str, Any]:
        raise sqlglot.errors.OptimizeError("Unknown table: z")

    monkeypatch.setattr(validate, "sql_reads", broken)
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.step, p.field) == ("schema", "query", "sql")
    assert p.message == "the SQL cannot be analysed: Unknown table: z"


def test_tables_whose_reads_are_not_attributed_are_a_problem(plan: dict[str, Any], registry: Any, catalog: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import planner.validate as validate

    monkeypatch.setattr(validate, "sql_reads", lambda sql: {})  # as sql_reads once did on a SEMI join in front
    p = _only(_problems(plan, registry, catalog))
    assert (p.kind, p.step, p.field) == ("schema", "query", "sql")
    assert p.message.startswith("cannot tell what this SQL reads from 'customers'")
