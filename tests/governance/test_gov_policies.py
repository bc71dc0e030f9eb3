"""Policy loading: YAML -> validated models; every problem is a PolicyLoadError naming the file and the entry."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from gov_testdata import POLICY_FILE
from pydantic import ValidationError

from governance import Engine, GovernanceError, Policies, PolicyLoadError, Principal, load_policies
from governance.policies import parse_snippet, snippet_attributes

BASE = yaml.safe_load(POLICY_FILE.read_text())


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _edited(**table_changes: object) -> dict:
    data = yaml.safe_load(POLICY_FILE.read_text())
    data["tables"]["customers"].update(table_changes)
    return data


def test_shared_policy_file_loads() -> None:
    policies = load_policies(POLICY_FILE)
    assert set(policies.tables) == {"customers", "billing", "tickets", "secrets"}
    customers = policies.tables["customers"]
    assert customers.deny_columns["ssn"] == ["analyst", "support", "marketing"]
    assert customers.mask_columns["email"].roles == ["support", "marketing"]
    assert snippet_attributes(customers.row_filters[0].using) == {"region"}


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    policies = load_policies(POLICY_FILE)
    assert load_policies(_write(tmp_path, policies.to_yaml())) == policies


@pytest.mark.parametrize(("data", "entry", "problem"), [
    ({**BASE, "version": 2}, "version", "Extra inputs are not permitted"),
    (_edited(allowed=["analyst"]), "tables.customers.allowed", "Extra inputs are not permitted"),
    (_edited(mask_columns={"email": {"roles": ["support"], "using": "'x'", "when": "y"}}),
     "tables.customers.mask_columns.email.when", "Extra inputs are not permitted"),
    (_edited(row_filters=[{"roles": ["analyst"], "using": "region = = :region"}]),
     "tables.customers.row_filters[0].using", "cannot parse"),
    (_edited(row_filters=[{"roles": ["analyst"], "using": "true"}, {"roles": ["support"], "using": "1; DROP x"}]),
     "tables.customers.row_filters[1].using", "cannot parse"),
    (_edited(mask_columns={"email": {"roles": ["support"], "using": "email FROM customers"}}),
     "tables.customers.mask_columns.email.using", "cannot parse"),
    (_edited(row_filters=[{"roles": ["analyst"], "using": "region = ?"}]),
     "tables.customers.row_filters[0].using", "named attributes"),
    (_edited(deny_columns={"ssn": ["analyst", "auditor"]}),
     "tables.customers.deny_columns.ssn", "['auditor'] are not in this table's allow list"),
    (_edited(mask_columns={"email": {"roles": ["finance"], "using": "'x'"}}),
     "tables.customers.mask_columns.email.roles", "['finance']"),
    (_edited(row_filters=[{"roles": ["nobody"], "using": "true"}]),
     "tables.customers.row_filters[0].roles", "['nobody']"),
    (_edited(allow=["analyst", "support", "admin", "marketing", "auditor"]), "tables.customers.allow",
     "not declared in `roles`"),
    (_edited(allow=[]), "tables.customers.allow", "at least 1 item"),
    (_edited(row_filters=[{"roles": [], "using": "true"}]), "tables.customers.row_filters[0].roles", "at least 1"),
])
def test_load_errors_name_file_and_entry(tmp_path: Path, data: dict, entry: str, problem: str) -> None:
    with pytest.raises(PolicyLoadError) as raised:
        load_policies(_write(tmp_path, data))
    assert raised.value.message.startswith(f"policies.yaml: {entry}: "), raised.value.message
    assert problem in raised.value.message
    assert raised.value.fields["entry"] == entry and raised.value.hint
    assert isinstance(raised.value, GovernanceError)


@pytest.mark.parametrize(("text", "problem"), [
    ("tables: [a, b", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping"),
    ("tables:\n  Customers: {allow: [a]}\n  customers: {allow: [a]}\n", "differ only by case"),
])
def test_file_level_errors(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(PolicyLoadError, match=problem):
        load_policies(_write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match=r"nope\.yaml: cannot read"):
        load_policies(tmp_path / "nope.yaml")


def test_snippets_are_parsed_once_and_copied() -> None:
    first = parse_snippet("region = :region")
    first.set("this", None)
    assert parse_snippet("region = :region").sql() == "region = :region"


def test_allow_all_gives_local_mode_everything() -> None:
    policies = Policies.allow_all(["t", "u"])
    engine = Engine(policies)
    engine.register("t", pa.table({"a": [1, 2], "secret": ["x", "y"]}))
    local = Principal.local()
    assert engine.catalog(local) == {"t": {"a": "BIGINT", "secret": "VARCHAR"}}
    assert engine.query("SELECT * FROM t ORDER BY a", local).to_pylist() == [{"a": 1, "secret": "x"},
                                                                         {"a": 2, "secret": "y"}]
    assert engine.catalog(Principal(user="x", roles=["other"])) == {}
    assert set(Policies.allow_all(["t"], roles=["a", "b"]).tables["t"].allow) == {"a", "b"}


def test_policies_are_immutable() -> None:
    policies = load_policies(POLICY_FILE)
    with pytest.raises(ValidationError):
        policies.tables["customers"].allow = ["everyone"]  # type: ignore[misc]


def test_snippet_with_unknown_column_fails_closed_at_query_time() -> None:
    policies = Policies.model_validate({"tables": {"t": {"allow": ["r"], "row_filters": [
        {"roles": ["r"], "using": "regoin = 'EU'"}]}}})
    engine = Engine(policies)
    engine.register("t", pa.table({"region": ["EU"], "v": ["CANARY-T"]}))
    with pytest.raises(GovernanceError, match="unknown column 'regoin'") as raised:
        engine.query("SELECT v FROM t", Principal(user="u", roles=["r"]))
    assert "CANARY" not in str(raised.value)
