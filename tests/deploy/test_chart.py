"""The Helm chart in deploy/helm/agentml, rendered by the real Helm engine and checked without a cluster.

helm-python-sdk wraps Helm's own Go engine (the same code path as `helm template` / `helm install`, including the
values.schema.json check); kubernetes-validate holds the OpenAPI schemas of the built-in kinds; the RayCluster is
checked against the openAPIV3Schema of the KubeRay CRD kept in ../shared/kuberay.
"""
from __future__ import annotations

import copy
import gzip
import os
import re
from pathlib import Path
from typing import Any, Iterator

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from governance import load_policies
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "deploy" / "helm" / "agentml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
# the team's copy of the KubeRay CRD; a gzipped copy of it (KubeRay, Apache-2.0) travels with the tests for clean clones
RAYCLUSTER_CRD = REPO.parent / "shared" / "kuberay" / "ray.io_rayclusters.yaml"
VENDORED_CRD = Path(__file__).parent / "kuberay" / "ray.io_rayclusters.yaml.gz"
KUBE_VERSION = "1.32.0"  # a version kubernetes-validate ships schemas for, inside the chart's kubeVersion range
RELEASE, NAMESPACE = "agentml", "ml"


def readme_example() -> dict[str, Any]:
    """The values file shown in deploy/README.md: the documentation must install as written."""
    block = re.search(r"```yaml\n(.*?)```", (REPO / "deploy" / "README.md").read_text(), re.DOTALL)
    assert block, "deploy/README.md lost its example values file"
    return yaml.safe_load(block.group(1))


VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "gpu_off": {"ray": {"gpuWorkers": {"enabled": False}}},
    "ingress_on": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "host": "agentml.example.com",
            "tls": {"enabled": True, "secretName": "agentml-tls"},
        }
    },
    "external_postgresql": {
        "api": {"replicas": 3},
        "runStore": {"type": "postgresql", "postgresql": {"existingSecret": "agentml-db"}},
        "artifacts": {"uri": "s3://ml-artifacts/agentml", "existingSecret": "agentml-s3"},
        "warehouse": {"existingClaim": "warehouse"},
        "llm": {"existingSecret": "agentml-llm"},
        "config": {"llmModel": "openai/gpt-4o-mini"},
    },
    "gpu_pool_and_no_auth": {
        "ray": {
            "auth": {"enabled": False},
            "cpuWorkers": {"enabled": False},
            "gpuWorkers": {"nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4"}, "gpusPerWorker": 2},
        },
        "imagePullSecrets": [{"name": "regcred"}],
    },
    "readme_example": readme_example(),
}


# ---------------------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART_DIR) as loaded:
        yield loaded


def render_files(chart: helm_python.Chart, values: dict[str, Any], name: str = RELEASE) -> dict[str, str]:
    """Template path -> rendered text, exactly as `helm template` would produce it."""
    return chart.render(copy.deepcopy(values), name=name, namespace=NAMESPACE)


def manifests(files: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in the rendered templates (NOTES.txt is text, not a manifest)."""
    docs: list[dict[str, Any]] = []
    for path, text in files.items():
        if path.endswith(".yaml"):
            docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod template the chart defines: the API Deployment, the Ray head and each Ray worker group."""
    ray = only(docs, "RayCluster")["spec"]
    specs = {"api": only(docs, "Deployment")["spec"]["template"]["spec"]}
    specs["ray-head"] = ray["headGroupSpec"]["template"]["spec"]
    for group in ray.get("workerGroupSpecs") or []:
        specs[f"ray-{group['groupName']}"] = group["template"]["spec"]
    return specs


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def worker_group(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    groups = only(docs, "RayCluster")["spec"]["workerGroupSpecs"]
    return next(group for group in groups if group["groupName"] == name)


def strict_crd_schema(schema: Any) -> Any:
    """The CRD schema with unknown fields forbidden: the API server would silently prune a misspelled field."""
    if isinstance(schema, list):
        return [strict_crd_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: strict_crd_schema(value) for key, value in schema.items() if key != "properties"}
    if "properties" in schema:  # a map of field name -> schema, not a schema itself
        strict["properties"] = {field: strict_crd_schema(sub) for field, sub in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            strict["additionalProperties"] = False
    return strict


@pytest.fixture(scope="module")
def raycluster_validator() -> jsonschema.Draft7Validator:
    if RAYCLUSTER_CRD.is_file():
        text = RAYCLUSTER_CRD.read_text()
    elif VENDORED_CRD.is_file():
        text = gzip.decompress(VENDORED_CRD.read_bytes()).decode()
    else:
        pytest.skip(f"KubeRay RayCluster CRD not found at {RAYCLUSTER_CRD} or {VENDORED_CRD}: cannot check the "
                    "RayCluster's schema")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRD is 17k lines: libyaml reads it 10x faster
    crd = next(doc for doc in yaml.load_all(text, Loader=loader) if doc)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft7Validator(strict_crd_schema(version["schema"]["openAPIV3Schema"]))


@pytest.fixture(scope="module")
def defaults(chart: helm_python.Chart) -> list[dict[str, Any]]:
    return manifests(render_files(chart, {}))


# ---------------------------------------------------------------------------------------------------- every value set
@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_lint_reports_no_errors_or_warnings(values: dict[str, Any]) -> None:
    report = helm_python.lint(CHART_DIR, copy.deepcopy(values), namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_builtin_kinds_validate_against_kubernetes_schemas(chart: helm_python.Chart, values: dict[str, Any]) -> None:
    docs = [doc for doc in manifests(render_files(chart, values)) if not doc["apiVersion"].startswith("ray.io/")]
    assert {"Deployment", "Service", "ServiceAccount", "ConfigMap"} <= {doc["kind"] for doc in docs}
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_raycluster_validates_against_the_kuberay_crd(
    chart: helm_python.Chart, raycluster_validator: jsonschema.Draft7Validator, values: dict[str, Any]
) -> None:
    cluster = only(manifests(render_files(chart, values)), "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in raycluster_validator.iter_errors(cluster)]
    assert errors == []


def test_crd_check_catches_a_misspelled_field(raycluster_validator: jsonschema.Draft7Validator, defaults: list) -> None:
    cluster = copy.deepcopy(only(defaults, "RayCluster"))
    cluster["spec"]["autoscalerOptions"]["versoin"] = "v2"
    assert not raycluster_validator.is_valid(cluster)


def test_each_value_set_renders_what_it_asks_for(chart: helm_python.Chart) -> None:
    kinds = {name: sorted(doc["kind"] for doc in manifests(render_files(chart, v))) for name, v in VALUE_SETS.items()}
    assert kinds["defaults"] == sorted(
        ["ConfigMap", "Deployment", "NetworkPolicy", "NetworkPolicy", "PersistentVolumeClaim",
         "PersistentVolumeClaim", "RayCluster", "Service", "ServiceAccount"]
    )
    assert "Ingress" in kinds["ingress_on"] and "Ingress" not in kinds["defaults"]
    assert "PersistentVolumeClaim" not in kinds["external_postgresql"]  # object store + PostgreSQL: no volumes


# ---------------------------------------------------------------------------------------------------- bad values
BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    ("sqlite_with_replicas", {"api": {"replicas": 2}}, "/runStore/type"),
    ("postgresql_without_secret", {"runStore": {"type": "postgresql"}}, "/runStore/postgresql/existingSecret"),
    ("unknown_key", {"api": {"replica": 2}}, "'replica' not allowed"),
    ("unknown_run_store", {"runStore": {"type": "mysql"}}, "/runStore/type"),
    ("negative_max_replicas", {"ray": {"gpuWorkers": {"maxReplicas": -1}}}, "/ray/gpuWorkers/maxReplicas"),
    ("string_replicas", {"ray": {"cpuWorkers": {"replicas": "two"}}}, "/ray/cpuWorkers/replicas"),
    ("ingress_without_host", {"ingress": {"enabled": True, "host": ""}}, "/ingress/host"),
    ("tls_without_secret", {"ingress": {"enabled": True, "tls": {"enabled": True}}}, "secretName"),
    ("artifacts_not_a_uri", {"artifacts": {"uri": "bucket/agentml"}}, "/artifacts/uri"),
    ("privileged_port", {"api": {"port": 80}}, "/api/port"),
    ("bad_pull_policy", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ("policies_not_a_map", {"policies": {"tables": ["customers"]}}, "/policies/tables"),
    ("policy_typo", {"policies": {"tables": {"customers": {"allow": ["analyst"], "row_filter": []}}}}, "row_filter"),
    ("policy_without_roles", {"policies": {"tables": {"t": {"allow": []}}}}, "/policies/tables/t/allow"),
    ("bad_quantity", {"api": {"resources": {"limits": {"memory": "lots"}}}}, "/api/resources/limits/memory"),
]


@pytest.mark.parametrize(("values", "where"), [b[1:] for b in BAD_VALUES], ids=[b[0] for b in BAD_VALUES])
def test_values_that_break_the_schema_are_rejected(chart: helm_python.Chart, values: dict, where: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(where)):
        chart.validate_schema(copy.deepcopy(values))
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(where)):
        render_files(chart, values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ray": {"cpuWorkers": {"minReplicas": 5}}}, "ray.cpuWorkers.minReplicas (5) is larger than"),
        ({"ray": {"gpuWorkers": {"replicas": 3}}}, "ray.gpuWorkers.replicas (3) must lie between"),
        ({"ray": {"cpuWorkers": {"enabled": False}, "gpuWorkers": {"enabled": False}}}, "enable at least one"),
    ],
    ids=["min_over_max", "replicas_over_max", "no_worker_group"],
)
def test_cross_field_mistakes_fail_with_a_fix(chart: helm_python.Chart, values: dict, message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        render_files(chart, values)


# ---------------------------------------------------------------------------------------------------- security defaults
def test_every_pod_runs_non_root_with_seccomp(defaults: list[dict[str, Any]]) -> None:
    specs = pod_specs(defaults)
    assert set(specs) == {"api", "ray-head", "ray-cpu", "ray-gpu"}
    for name, spec in specs.items():
        ctx = spec["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0, name
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, name


def test_every_container_is_locked_down(defaults: list[dict[str, Any]]) -> None:
    for name, spec in pod_specs(defaults).items():
        emptydirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["capabilities"]["drop"] == ["ALL"] and "add" not in ctx["capabilities"], name
            assert container["resources"]["limits"] and container["resources"]["requests"], name
            tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
            assert tmp["name"] in emptydirs, f"{name}: /tmp must be a writable emptyDir"


def test_autoscaler_sidecar_is_locked_down_too(defaults: list[dict[str, Any]]) -> None:
    options = only(defaults, "RayCluster")["spec"]["autoscalerOptions"]
    assert options["securityContext"]["readOnlyRootFilesystem"] is True
    assert options["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"name": "tmp", "mountPath": "/tmp"} in options["volumeMounts"]


def test_service_account_tokens_are_mounted_only_where_needed(defaults: list[dict[str, Any]]) -> None:
    specs = pod_specs(defaults)
    assert only(defaults, "ServiceAccount")["automountServiceAccountToken"] is False
    assert all(specs[name]["automountServiceAccountToken"] is False for name in ("api", "ray-cpu", "ray-gpu"))
    # The autoscaler sidecar patches the RayCluster through the Kubernetes API, with KubeRay's own account.
    assert specs["ray-head"]["automountServiceAccountToken"] is True
    assert "serviceAccountName" not in specs["ray-head"]


SENSITIVE_ENV = re.compile(r"TOKEN$|_KEY$|PASSWORD|SECRET")


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_no_secret_values_are_rendered(chart: helm_python.Chart, values: dict[str, Any]) -> None:
    files = render_files(chart, values)
    docs = manifests(files)
    assert "Secret" not in {doc["kind"] for doc in docs}
    assert not re.search(r"postgres(ql)?(\+\w+)?://|stringData:", "".join(files.values()))
    containers = [c for spec in pod_specs(docs).values() for c in spec["containers"]]
    autoscaler_env = only(docs, "RayCluster")["spec"]["autoscalerOptions"]["env"]
    for item in [e for c in containers for e in c["env"]] + autoscaler_env:
        if SENSITIVE_ENV.search(item["name"]):
            assert "value" not in item and "secretKeyRef" in item["valueFrom"], item["name"]


# ---------------------------------------------------------------------------------------------------- the Ray cluster
def test_head_runs_no_work_and_autoscaler_is_v2(defaults: list[dict[str, Any]]) -> None:
    spec = only(defaults, "RayCluster")["spec"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["version"] == "v2"


def test_gpu_group_scales_from_zero_on_gpu_nodes(defaults: list[dict[str, Any]]) -> None:
    group = worker_group(defaults, "gpu")
    assert group["minReplicas"] == 0 and group["replicas"] == 0 and group["maxReplicas"] >= 1
    pod = group["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith("-cuda")
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert worker_group(defaults, "cpu")["template"]["spec"]["containers"][0]["image"].endswith(":0.1.0")


def test_gpu_group_follows_its_values(chart: helm_python.Chart) -> None:
    docs = manifests(render_files(chart, VALUE_SETS["gpu_pool_and_no_auth"]))
    pod = worker_group(docs, "gpu")["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert [g["groupName"] for g in only(docs, "RayCluster")["spec"]["workerGroupSpecs"]] == ["gpu"]
    assert "gpu" not in {g["groupName"] for g in only(manifests(render_files(chart, VALUE_SETS["gpu_off"])),
                                                      "RayCluster")["spec"]["workerGroupSpecs"]}


def test_ray_token_auth_reaches_head_workers_autoscaler_and_api(defaults: list[dict[str, Any]]) -> None:
    cluster = only(defaults, "RayCluster")
    secret = cluster["spec"]["authOptions"]["secretName"]
    assert cluster["spec"]["authOptions"]["mode"] == "token"
    envs = [env_of(c) for spec in pod_specs(defaults).values() for c in spec["containers"]]
    envs.append(env_of(cluster["spec"]["autoscalerOptions"]))
    for env in envs:
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "auth_token"}


def test_ray_auth_can_be_turned_off(chart: helm_python.Chart) -> None:
    docs = manifests(render_files(chart, VALUE_SETS["gpu_pool_and_no_auth"]))
    assert only(docs, "RayCluster")["spec"]["authOptions"] == {"mode": "disabled"}
    for spec in pod_specs(docs).values():  # said explicitly: Ray >= 2.61 would otherwise turn it on
        env = env_of(spec["containers"][0])
        assert env["RAY_AUTH_MODE"]["value"] == "disabled" and "RAY_AUTH_TOKEN" not in env


# ---------------------------------------------------------------------------------------------------- the API
def test_api_points_at_the_head_dashboard_and_has_its_settings(defaults: list[dict[str, Any]]) -> None:
    (api,) = pod_specs(defaults)["api"]["containers"]
    env = env_of(api)
    cluster_name = only(defaults, "RayCluster")["metadata"]["name"]
    assert env["RAY_ADDRESS"]["value"] == f"http://{cluster_name}-head-svc.{NAMESPACE}.svc:8265"
    for name in ("AGENTML_WAREHOUSE", "AGENTML_POLICIES", "AGENTML_RUN_STORE_URL", "AGENTML_ARTIFACTS",
                 "AGENTML_TOKENS_FILE"):
        assert name in env
    assert env["AGENTML_RUN_STORE_URL"]["value"] == "sqlite:////var/lib/agentml/state/runs.db"
    assert api["command"] == ["agentml", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_files_the_api_reads_are_mounted_where_its_env_says(defaults: list[dict[str, Any]]) -> None:
    spec = pod_specs(defaults)["api"]
    (api,) = spec["containers"]
    env, mounts = env_of(api), {m["mountPath"]: m["name"] for m in api["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    policies_dir, tokens_dir = (str(Path(env[n]["value"]).parent) for n in ("AGENTML_POLICIES", "AGENTML_TOKENS_FILE"))
    assert volumes[mounts[policies_dir]]["configMap"]["name"] == only(defaults, "ConfigMap")["metadata"]["name"]
    assert "secretName" in volumes[mounts[tokens_dir]]["secret"]
    assert mounts[env["AGENTML_ARTIFACTS"]["value"]] == "artifacts"
    assert only(defaults, "Deployment")["spec"]["strategy"]["type"] == "Recreate"  # RWO SQLite volume


def test_external_postgresql_and_object_store(chart: helm_python.Chart) -> None:
    docs = manifests(render_files(chart, VALUE_SETS["external_postgresql"]))
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3 and "strategy" not in deployment["spec"]
    for name, spec in pod_specs(docs).items():  # Ray job drivers (on the head) see the same run store
        env = env_of(spec["containers"][0])
        assert env["AGENTML_RUN_STORE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "agentml-db", "key": "url"}, name
        assert env["AGENTML_ARTIFACTS"]["value"] == "s3://ml-artifacts/agentml", name
        assert {"secretRef": {"name": "agentml-s3"}} in spec["containers"][0]["envFrom"], name
    api_env_from = pod_specs(docs)["api"]["containers"][0]["envFrom"]
    assert {"secretRef": {"name": "agentml-llm"}} in api_env_from
    assert env_of(pod_specs(docs)["api"]["containers"][0])["AGENTML_LLM_MODEL"]["value"] == "openai/gpt-4o-mini"


def test_every_pod_reads_one_bucket_with_credentials_from_the_secret(chart: helm_python.Chart) -> None:
    """Train checkpoints (workers), Tune state and job drivers (head) and results (API) meet in one bucket."""
    values = {"artifacts": {"uri": "s3://ml-artifacts/agentml", "existingSecret": "agentml-s3"}}
    specs = pod_specs(manifests(render_files(chart, values)))
    assert set(specs) == {"api", "ray-head", "ray-cpu", "ray-gpu"}
    for name, spec in specs.items():
        (container,) = spec["containers"]
        env = env_of(container)
        assert env["AGENTML_ARTIFACTS"]["value"] == "s3://ml-artifacts/agentml", name
        assert "AGENTML_ARTIFACTS_SHARED" not in env and not any(e.startswith("AWS_") for e in env), name
        assert {"secretRef": {"name": "agentml-s3"}} in container["envFrom"], name
        assert "artifacts" not in {v["name"] for v in spec["volumes"]}, name
    assert "AWS_" not in yaml.safe_dump(yaml.safe_load((CHART_DIR / "values.yaml").read_text()))  # comments only


def test_without_a_uri_every_pod_mounts_the_shared_volume_and_says_so(
    chart: helm_python.Chart, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A folder on a multi-node cluster is refused unless AGENTML_ARTIFACTS_SHARED: the chart's ReadWriteMany
    volume is mounted at the same path in every pod, so the chart sets it (and no credentials)."""
    docs = manifests(render_files(chart, {}))
    claims = set()
    for name, spec in pod_specs(docs).items():
        (container,) = spec["containers"]
        env, mounts = env_of(container), {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts[env["AGENTML_ARTIFACTS"]["value"]] == "artifacts", name
        assert env["AGENTML_ARTIFACTS_SHARED"]["value"] == "true" and "envFrom" not in container, name
        claims.add({v["name"]: v for v in spec["volumes"]}["artifacts"]["persistentVolumeClaim"]["claimName"])
    (claim,) = claims
    pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for variable in [n for n in os.environ if n.startswith("AGENTML_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("AGENTML_ARTIFACTS_SHARED", env["AGENTML_ARTIFACTS_SHARED"]["value"])
    monkeypatch.chdir(tmp_path)  # no stray .env file
    assert Settings().artifacts_shared is True


@pytest.mark.parametrize("values", [{}, VALUE_SETS["readme_example"]], ids=["deny_all_default", "readme_example"])
def test_policies_configmap_loads_with_the_governance_layer(
    chart: helm_python.Chart, values: dict[str, Any], tmp_path: Path
) -> None:
    text = only(manifests(render_files(chart, values)), "ConfigMap")["data"]["policies.yaml"]
    (tmp_path / "policies.yaml").write_text(text)
    policies = load_policies(tmp_path / "policies.yaml")
    assert sorted(policies.tables) == sorted(values.get("policies", {}).get("tables", {}))
    assert yaml.safe_load(text) == chart.merge_values(copy.deepcopy(values))["policies"]


def test_api_env_is_what_the_app_settings_read(
    chart: helm_python.Chart, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    docs = manifests(render_files(chart, VALUE_SETS["readme_example"]))
    env = env_of(pod_specs(docs)["api"]["containers"][0])
    settings_vars = {f"AGENTML_{field.upper()}" for field in Settings.model_fields}
    assert {name for name in env if name.startswith("AGENTML_")} <= settings_vars
    for name in [n for n in os.environ if n.startswith("AGENTML_") or n == "RAY_ADDRESS"]:
        monkeypatch.delenv(name)
    for name, item in env.items():
        if "value" in item:
            monkeypatch.setenv(name, item["value"])
    monkeypatch.chdir(tmp_path)  # no stray .env file
    settings = Settings()
    assert settings.ray_address == env["RAY_ADDRESS"]["value"]
    assert str(settings.policies) == env["AGENTML_POLICIES"]["value"]
    assert settings.artifacts == "s3://ml-artifacts/agentml" and settings.llm_model == "openai/gpt-4o-mini"


def test_ingress_routes_to_the_api_service(chart: helm_python.Chart) -> None:
    docs = manifests(render_files(chart, VALUE_SETS["ingress_on"]))
    rule = only(docs, "Ingress")["spec"]["rules"][0]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert rule["host"] == "agentml.example.com"
    assert backend == {"name": only(docs, "Service")["metadata"]["name"], "port": {"name": "http"}}


def test_long_release_names_keep_kuberay_names_valid(chart: helm_python.Chart) -> None:
    docs = manifests(render_files(chart, {}, name="a-really-long-release-name-for-a-team-namespace"))
    cluster_name = only(docs, "RayCluster")["metadata"]["name"]
    assert len(f"{cluster_name}-head-svc") <= 63 and not cluster_name.endswith("-")
    ray_address = env_of(pod_specs(docs)["api"]["containers"][0])["RAY_ADDRESS"]["value"]
    assert ray_address.startswith(f"http://{cluster_name}-head-svc.")


def test_notes_tell_how_to_reach_api_and_both_dashboards(chart: helm_python.Chart, defaults: list) -> None:
    notes = render_files(chart, {})["agentml/templates/NOTES.txt"]
    assert f"port-forward svc/{only(defaults, 'Service')['metadata']['name']} " in notes
    assert f"port-forward svc/{only(defaults, 'RayCluster')['metadata']['name']}-head-svc 8265:8265" in notes
    assert "http://localhost:8000/" in notes and "http://localhost:8265/" in notes


# ---------------------------------------------------------------------------------------------------- image vs chart
def dockerfile_arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, f"deploy/Dockerfile has no ARG {name}=..."
    return match.group(1)


def test_image_and_chart_agree(chart: helm_python.Chart) -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert version and chart.metadata["appVersion"] == version.group(1)
    assert dockerfile_arg("RAY_VERSION") == chart.values["ray"]["version"]
    assert dockerfile_arg("PYTHON_VERSION") == "3.11"


def test_image_runs_as_the_uid_the_chart_expects(chart: helm_python.Chart) -> None:
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    uid = chart.values["podSecurityContext"]["runAsUser"]
    assert users and users[-1] == f"{uid}:{chart.values['podSecurityContext']['runAsGroup']}"
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-slim AS cpu-base$", text, re.MULTILINE)
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:\S+-runtime-\S+$", text, re.MULTILINE)
    assert "wget" in text  # KubeRay's default probes call wget inside the Ray containers


def test_network_policies_fence_the_ray_pods_and_the_api(chart: helm_python.Chart, defaults: list) -> None:
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in defaults if doc["kind"] == "NetworkPolicy"}
    ray, api = policies["agentml-ray"], policies["agentml-api"]
    release = {"app.kubernetes.io/name": "agentml", "app.kubernetes.io/instance": RELEASE}
    # the Ray pods (every group) are selected, and only this release's pods may reach them
    assert ray["podSelector"]["matchLabels"] == release
    assert ray["podSelector"]["matchExpressions"] == [
        {"key": "app.kubernetes.io/component", "operator": "In", "values": ["ray-head", "ray-worker"]}]
    assert ray["ingress"] == [{"from": [{"podSelector": {"matchLabels": release}}]}]
    cluster = only(defaults, "RayCluster")["spec"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:  # every Ray pod is fenced
        pod = group["template"]["metadata"]["labels"]
        assert release.items() <= pod.items() and pod["app.kubernetes.io/component"] in ("ray-head", "ray-worker")
    api_pod = only(defaults, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert release.items() <= api_pod.items()  # so the API may submit jobs to the head
    # the API: its HTTP port, from anywhere unless narrowed
    assert api["podSelector"]["matchLabels"] == {**release, "app.kubernetes.io/component": "api"}
    assert api["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    narrowed = manifests(render_files(chart, {"networkPolicy": {
        "apiFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]}}))
    api = next(d for d in narrowed if d["metadata"]["name"] == "agentml-api")["spec"]
    assert api["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"}
    off = manifests(render_files(chart, {"networkPolicy": {"enabled": False}}))
    assert not [d for d in off if d["kind"] == "NetworkPolicy"]


def test_compute_settings_and_gpu_autoscaling_reach_every_pod(chart: helm_python.Chart,
                                                              defaults: list[dict[str, Any]]) -> None:
    for name, spec in pod_specs(defaults).items():  # the API records a run's compute; Ray job drivers read it back
        env = env_of(spec["containers"][0])
        assert env["AGENTML_GPU_AUTOSCALING"]["value"] == "true", name  # the GPU group scales from zero
        assert (env["AGENTML_NUM_WORKERS"]["value"], env["AGENTML_USE_GPU"]["value"]) == ("1", "auto"), name
    for spec in pod_specs(manifests(render_files(chart, VALUE_SETS["gpu_off"]))).values():
        assert "AGENTML_GPU_AUTOSCALING" not in env_of(spec["containers"][0])  # use_gpu=true is refused there


def test_compute_env_is_what_the_settings_read(chart: helm_python.Chart, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    values = {"config": {"compute": {"numWorkers": 2, "cpusPerWorker": 4, "useGpu": "true", "maxWorkers": 6,
                                     "maxCpusPerWorker": 8}}}
    env = env_of(pod_specs(manifests(render_files(chart, values)))["api"]["containers"][0])
    for name in [n for n in os.environ if n.startswith("AGENTML_")]:
        monkeypatch.delenv(name)
    for name in [n for n in env if n.startswith("AGENTML_")]:
        if "value" in env[name]:
            monkeypatch.setenv(name, env[name]["value"])
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert (settings.num_workers, settings.cpus_per_worker, settings.use_gpu, settings.max_workers,
            settings.max_cpus_per_worker, settings.gpu_autoscaling) == (2, 4, True, 6, 8, True)
