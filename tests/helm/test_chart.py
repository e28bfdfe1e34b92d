"""The Helm chart, rendered offline by Helm's Go SDK and checked against Kubernetes schemas."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from integration.app.settings import Settings

Values = dict[str, Any]
KUBE_VERSIONS = ["1.27.0", "1.30.0", "1.33.0"]
CRD_SCHEMAS = Path(__file__).parent / "schemas"
CRD_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


def _crd_schema(manifest: dict[str, Any]) -> dict[str, Any]:
    name = f"{manifest['kind'].lower()}-{manifest['apiVersion'].replace('/', '-')}.json"
    loaded: dict[str, Any] = json.loads((CRD_SCHEMAS / name).read_text())
    return loaded


def _validate_crd(manifest: dict[str, Any]) -> None:
    schema = _crd_schema(manifest)
    jsonschema.Draft7Validator(schema).validate(manifest)
    if manifest["kind"] == "ScaledObject":
        kafka = schema["definitions"]["kafkaMetadata"]
        for trigger in manifest["spec"]["triggers"]:
            assert trigger["type"] == "kafka"
            jsonschema.Draft7Validator(kafka).validate(trigger["metadata"])


# --- lint and schema validation of every example value set ---------------------------------


def test_lint_is_clean(chart_dir: Path, ci_values: Callable[[str], Values], value_set: str) -> None:
    report = helm_python.lint(chart_dir, ci_values(value_set), strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_manifests_match_kubernetes_schemas(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    value_set: str,
    kube_version: str,
) -> None:
    rendered = render(ci_values(value_set))
    assert rendered.manifests
    for manifest in rendered.manifests:
        if (manifest["apiVersion"], manifest["kind"]) in CRD_KINDS:
            _validate_crd(manifest)
        else:
            kubernetes_validate.validate(manifest, kube_version, strict=True)


def test_crd_check_catches_a_non_string_trigger_value(
    render: Callable[..., Any], ci_values: Callable[[str], Values]
) -> None:
    scaled = render(ci_values("hospital")).one("ScaledObject")
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 50
    with pytest.raises(jsonschema.ValidationError):
        _validate_crd(scaled)


def test_kubernetes_schema_check_catches_a_typo(
    render: Callable[..., Any], ci_values: Callable[[str], Values]
) -> None:
    deployment = render(ci_values("minimal")).one("Deployment", "service")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.30.0", strict=True)


def test_every_value_set_covers_the_expected_kinds(
    render: Callable[..., Any], ci_values: Callable[[str], Values]
) -> None:
    kinds = {name: render(ci_values(name)).kinds() for name in ("hospital", "vllm")}
    assert {"ScaledObject", "TriggerAuthentication", "Ingress"} <= kinds["hospital"]
    assert "NetworkPolicy" in kinds["hospital"]
    assert {"ServiceMonitor", "Job", "PodDisruptionBudget"} <= kinds["hospital"]
    assert "PrometheusRule" in kinds["hospital"]
    assert {"PersistentVolumeClaim", "Secret"} <= kinds["vllm"]
    external = render(ci_values("external-model")).kinds()
    assert "HorizontalPodAutoscaler" in external


def test_template_files_are_named_kind_component(
    render: Callable[..., Any], ci_values: Callable[[str], Values]
) -> None:
    short = {
        "PodDisruptionBudget": "pdb",
        "HorizontalPodAutoscaler": "hpa",
        "PersistentVolumeClaim": "pvc",
    }
    seen: set[str] = set()
    for name in ("hospital", "vllm", "external-model", "minimal"):
        for path, docs in render(ci_values(name)).files.items():
            seen.add(path)
            kind = docs[0]["kind"]
            prefix = short.get(kind, kind.lower())
            assert re.fullmatch(rf"{prefix}-[a-z-]+\.yaml", path), path
    assert len(seen) >= 20


# --- service workload ------------------------------------------------------------------------


def test_service_deployment_probes_security_and_tmp(
    render: Callable[..., Any], ci_values: Callable[[str], Values]
) -> None:
    rendered = render(ci_values("minimal"))
    deployment = rendered.one("Deployment", "service")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000}
    assert container["args"] == ["serve"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["image"] == "registry.hospital.example/radgpt/radgpt-service:0.1.0"

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False

    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["tmp"] == "/tmp"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]

    service = rendered.one("Service", "service")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    pdb = rendered.one("PodDisruptionBudget", "service")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_config_and_secrets_reach_the_container(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    container_env: Callable[[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    rendered = render(ci_values("minimal"))
    deployment = rendered.one("Deployment", "service")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    config = rendered.one("ConfigMap")
    secret = rendered.one("Secret", "service")
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    env = container_env(deployment)
    for name in ("RADGPT_DATABASE__URL", "RADGPT_KAFKA__SASL_PASSWORD"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["data"]
    # No credential is in the ConfigMap.
    assert not any("change-me" in value for value in config["data"].values())


def test_checksum_annotations_roll_pods_on_config_change(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    merged: Callable[[Values, Values], Values],
) -> None:
    def annotations(values: Values) -> dict[str, str]:
        deployment = render(values).one("Deployment", "service")
        found: dict[str, str] = deployment["spec"]["template"]["metadata"]["annotations"]
        return found

    base = ci_values("minimal")
    before = annotations(base)
    after_config = annotations(merged(base, {"inference": {"maxConcurrency": 8}}))
    after_secret = annotations(merged(base, {"kafka": {"saslPassword": "rotated"}}))
    assert before["checksum/config"] != after_config["checksum/config"]
    assert before["checksum/secret"] == after_config["checksum/secret"]
    assert before["checksum/secret"] != after_secret["checksum/secret"]


def test_rendered_env_names_are_settings_fields(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    container_env: Callable[[dict[str, Any]], dict[str, dict[str, Any]]],
    settings_env_names: set[str],
    value_set: str,
) -> None:
    rendered = render(ci_values(value_set))
    names = set(rendered.one("ConfigMap")["data"])
    for kind in ("Deployment", "Job"):
        for workload in rendered.all(kind):
            names |= set(container_env(workload))
    radgpt = {n for n in names if n.startswith("RADGPT_")}
    assert len(radgpt) > 30
    assert radgpt - settings_env_names == set()
    assert "RADGPT_KAFKA__BOOTSTRAP_SERVERS" in radgpt and "RADGPT_DATABASE__URL" in radgpt


def test_settings_accept_the_rendered_configuration(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    monkeypatch: pytest.MonkeyPatch,
    value_set: str,
) -> None:
    """The real settings model parses the ConfigMap plus the secrets the pod would get."""
    rendered = render(ci_values(value_set))
    for name, value in rendered.one("ConfigMap")["data"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RADGPT_DATABASE__URL", "postgresql+asyncpg://u:p@db:5432/radgpt")
    settings = Settings()
    values = rendered.values
    assert settings.environment == "production"
    assert settings.api.host == "0.0.0.0"
    assert settings.kafka.bootstrap_servers == values["kafka"]["bootstrapServers"]
    assert settings.kafka.group_id == values["kafka"]["groupId"]
    assert settings.kafka.topics.hl7_in == values["kafka"]["topics"]["hl7In"]
    assert settings.inference.adapter == values["inference"]["adapter"]
    assert settings.pipeline.output_formats == values["pipeline"]["outputFormats"]
    assert settings.auth.algorithms == values["auth"]["algorithms"]
    assert settings.auth.trust_dev_key is False
    # Topics are provisioned by the Kafka team; the service's own default would create them.
    assert settings.kafka.topics.create_missing is False
    assert settings.kafka.topics.partitions == values["kafka"]["partitions"]
    assert settings.pipeline.drain_timeout_s < values["service"]["terminationGracePeriodSeconds"]
    if values["modelServer"]["enabled"]:
        service = rendered.one("Service", "model-server")
        url = f"http://{service['metadata']['name']}.radiology-ai.svc:{service['spec']['ports'][0]['port']}"
        assert settings.inference.url == url
        expected = {"tgi": "tgi", "vllm": "openai"}[values["modelServer"]["engine"]]
        assert settings.inference.backend == expected
    else:
        assert settings.inference.url == values["inference"]["url"]


@pytest.mark.parametrize(
    ("name", "volume", "adapter_path"),
    [
        (
            "hospital",
            {"persistentVolumeClaim": {"claimName": "radgpt-models", "readOnly": True}},
            "/models/adapters/radiology",
        ),
        ("vllm", {"configMap": {"name": "radgpt-adapter-radiology-v1"}}, "/etc/radgpt/adapter"),
        ("minimal", None, None),
    ],
)
def test_service_reads_the_adapter_canary_metadata(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    name: str,
    volume: dict[str, Any] | None,
    adapter_path: str | None,
) -> None:
    rendered = render(ci_values(name))
    pod = rendered.one("Deployment", "service")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: {k: x for k, x in v.items() if k != "name"} for v in pod["volumes"]}
    config = rendered.one("ConfigMap")["data"]
    if adapter_path is None:  # the adapter shipped in the image
        assert "RADGPT_INFERENCE__ADAPTER_PATH" not in config
        assert set(volumes) == {"tmp"}
        return
    assert config["RADGPT_INFERENCE__ADAPTER_PATH"] == adapter_path
    (mount_path,) = [p for p in mounts if adapter_path.startswith(p + "/") or p == adapter_path]
    assert volumes[mounts[mount_path]] == volume


# --- model server ----------------------------------------------------------------------------


def _model_container(rendered: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = rendered.one("Deployment", "model-server")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def test_tgi_model_server(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    container_env: Callable[[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    rendered = render(ci_values("hospital"))
    pod, container = _model_container(rendered)
    assert container["image"] == "ghcr.io/huggingface/text-generation-inference:3.3.6"
    args = container["args"]
    assert args[args.index("--model-id") + 1] == "/models/base"
    assert args[args.index("--port") + 1] == "8080"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 15 * 60

    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])

    model_env = container_env(rendered.one("Deployment", "model-server"))
    env = {name: entry.get("value") for name, entry in model_env.items()}
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["USAGE_STATS"] == "off"
    assert env["LORA_ADAPTERS"] == "radiology=/models/adapters/radiology"
    assert pod["terminationGracePeriodSeconds"] > int(env["GRACEFUL_TERMINATION_TIMEOUT"])

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert mounts["dshm"]["mountPath"] == "/dev/shm"
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "radgpt-models"
    assert mounts["models"] == {"name": "models", "mountPath": "/models", "readOnly": True}

    service = rendered.one("Service", "model-server")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_vllm_model_server(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    container_env: Callable[[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    rendered = render(ci_values("vllm"))
    deployment = rendered.one("Deployment", "model-server")
    pod, container = _model_container(rendered)
    assert container["image"] == "docker.io/vllm/vllm-openai:v0.11.0"
    args = container["args"]
    assert args[args.index("--model") + 1] == "/models/base"
    assert args[args.index("--served-model-name") + 1] == "base"
    assert args[args.index("--port") + 1] == "8000"
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert "--enable-lora" in args
    start = args.index("--lora-modules") + 1
    assert args[start : start + 2] == [
        "radiology=/models/adapters/radiology-v1",
        "radiology-v2=/models/adapters/radiology-v2",
    ]
    assert container["ports"][0]["containerPort"] == 8000
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert deployment["spec"]["replicas"] == 2

    env = container_env(deployment)
    assert env["HF_HUB_OFFLINE"]["value"] == "1"
    assert env["VLLM_NO_USAGE_STATS"]["value"] == "1"
    assert "LORA_ADAPTERS" not in env
    secret = rendered.one("Secret", "service")
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]

    pvc = rendered.one("PersistentVolumeClaim", "model-server")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
    claim = {v["name"]: v for v in pod["volumes"]}["models"]["persistentVolumeClaim"]
    assert claim["claimName"] == pvc["metadata"]["name"]

    config = rendered.one("ConfigMap")["data"]
    assert config["RADGPT_INFERENCE__BACKEND"] == "openai"
    service_env = container_env(rendered.one("Deployment", "service"))
    assert "RADGPT_INFERENCE__API_KEY" in service_env


def test_changing_adapters_restarts_the_model_server(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    merged: Callable[[Values, Values], Values],
) -> None:
    base = ci_values("minimal")
    extra = {"modelServer": {"adapters": [{"name": "radiology", "path": "adapters/r2"}]}}

    def checksum(values: Values) -> str:
        deployment = render(values).one("Deployment", "model-server")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/adapters"])

    assert checksum(base) != checksum(merged(base, extra))


# --- migrations hook ---------------------------------------------------------------------------


def test_migration_job_is_a_pre_install_hook(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    container_env: Callable[[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    rendered = render(ci_values("minimal"))
    job = rendered.one("Job", "migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["db", "upgrade"]
    assert pod["restartPolicy"] == "Never"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The hook runs before the release's Secret exists: a hook Secret, created first, holds the URL.
    hook_secret = rendered.one("Secret", "migrate")
    assert hook_secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        annotations["helm.sh/hook-weight"]
    )
    ref = container_env(job)["RADGPT_DATABASE__URL"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == hook_secret["metadata"]["name"]
    assert ref["key"] in hook_secret["data"]


def test_migration_job_reads_an_existing_secret_directly(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    container_env: Callable[[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    rendered = render(ci_values("hospital"))
    assert rendered.all("Secret") == []
    ref = container_env(rendered.one("Job", "migrate"))["RADGPT_DATABASE__URL"]
    assert ref["valueFrom"]["secretKeyRef"] == {"name": "radgpt-credentials", "key": "database-url"}


# --- credentials -------------------------------------------------------------------------------


def test_existing_secret_for_every_credential(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    container_env: Callable[[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    rendered = render(ci_values("hospital"))
    env = container_env(rendered.one("Deployment", "service"))
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in env.items() if "valueFrom" in e}
    assert refs["RADGPT_DATABASE__URL"] == {"name": "radgpt-credentials", "key": "database-url"}
    assert refs["RADGPT_KAFKA__SASL_PASSWORD"] == {
        "name": "radgpt-credentials",
        "key": "kafka-sasl-password",
    }
    assert refs["RADGPT_INFERENCE__API_KEY"]["optional"] is True


def test_credential_references_to_several_secrets(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    container_env: Callable[[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    rendered = render(ci_values("external-model"))
    assert rendered.all("Secret") == []
    env = container_env(rendered.one("Deployment", "service"))
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in env.items() if "valueFrom" in e}
    assert refs == {
        "RADGPT_DATABASE__URL": {"name": "pg-app", "key": "asyncpg-url"},
        "RADGPT_KAFKA__SASL_PASSWORD": {"name": "kafka-user-radgpt", "key": "password"},
        "RADGPT_INFERENCE__API_KEY": {"name": "llm-gateway", "key": "token"},
        "RADGPT_FHIR_SINK__TOKEN": {"name": "fhir-sink", "key": "token"},
    }
    assert "Deployment" in rendered.kinds()
    assert all(
        d["metadata"]["labels"]["app.kubernetes.io/component"] != "model-server"
        for d in rendered.manifests
    )


# --- autoscaling -------------------------------------------------------------------------------


def test_keda_scales_on_lag_of_both_inbound_topics(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    container_env: Callable[[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    rendered = render(ci_values("hospital"))
    config = rendered.one("ConfigMap")["data"]
    deployment = rendered.one("Deployment", "service")
    scaled = rendered.one("ScaledObject")
    assert "replicas" not in deployment["spec"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["spec"]["maxReplicaCount"] <= rendered.values["kafka"]["partitions"]
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"kafka"}
    assert {t["metadata"]["topic"] for t in triggers} == {
        config["RADGPT_KAFKA__TOPICS__HL7_IN"],
        config["RADGPT_KAFKA__TOPICS__FHIR_IN"],
    }
    for trigger in triggers:
        assert trigger["metadata"]["consumerGroup"] == config["RADGPT_KAFKA__GROUP_ID"]
        assert trigger["metadata"]["bootstrapServers"] == config["RADGPT_KAFKA__BOOTSTRAP_SERVERS"]
        assert trigger["metadata"]["sasl"] == "scram_sha512"
        assert trigger["metadata"]["tls"] == "enable"
    auth = rendered.one("TriggerAuthentication")
    assert triggers[0]["authenticationRef"]["name"] == auth["metadata"]["name"]
    # KEDA resolves these from the service container: they must exist there.
    available = set(config) | set(container_env(deployment))
    for entry in auth["spec"]["env"]:
        assert entry["containerName"] == "radgpt"
        assert entry["name"] in available
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "ca", "name": "kafka-cluster-ca", "key": "ca.crt"}
    ]


def test_hpa_on_cpu(render: Callable[..., Any], ci_values: Callable[[str], Values]) -> None:
    rendered = render(ci_values("external-model"))
    hpa = rendered.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] == 4
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in rendered.one("Deployment", "service")["spec"]
    assert rendered.all("ScaledObject") == []


# --- network policy ----------------------------------------------------------------------------


def _ports(rule: dict[str, Any]) -> set[tuple[int, str]]:
    return {(p["port"], p.get("protocol", "TCP")) for p in rule.get("ports", [])}


def test_network_policy_limits_the_service_and_isolates_the_model(
    render: Callable[..., Any], ci_values: Callable[[str], Values]
) -> None:
    rendered = render(ci_values("hospital"))
    policy = rendered.one("NetworkPolicy", "service")
    service = rendered.one("Deployment", "service")
    selector = service["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["podSelector"]["matchLabels"] == selector
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    (ingress,) = policy["spec"]["ingress"]
    assert _ports(ingress) == {(8000, "TCP")}
    egress_ports = [_ports(rule) for rule in policy["spec"]["egress"]]
    model_port = rendered.one("Deployment", "model-server")["spec"]["template"]["spec"][
        "containers"
    ][0]["ports"][0]["containerPort"]
    assert egress_ports == [
        {(9093, "TCP")},
        {(5432, "TCP")},
        {(model_port, "TCP")},
        {(53, "UDP"), (53, "TCP")},
        {(443, "TCP")},
    ]
    assert all(rule.get("to") for rule in policy["spec"]["egress"])

    model = rendered.one("NetworkPolicy", "model-server")
    assert model["spec"]["egress"] == []
    assert "Egress" in model["spec"]["policyTypes"]
    sources = model["spec"]["ingress"][0]["from"]
    allowed = sources[0]["podSelector"]["matchLabels"]
    assert allowed.items() <= selector.items()
    assert allowed["app.kubernetes.io/component"] == "service"

    migrate = rendered.one("NetworkPolicy", "migrate")
    assert [_ports(rule) for rule in migrate["spec"]["egress"]] == [
        {(5432, "TCP")},
        {(53, "UDP"), (53, "TCP")},
    ]


def test_ingress_and_service_monitor(
    render: Callable[..., Any], ci_values: Callable[[str], Values]
) -> None:
    rendered = render(ci_values("hospital"))
    ingress = rendered.one("Ingress")
    assert ingress["spec"]["tls"] == [
        {"secretName": "radgpt-tls", "hosts": ["radgpt.hospital.example"]}
    ]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "radgpt", "port": {"name": "http"}}
    monitors = {
        m["metadata"]["labels"]["app.kubernetes.io/component"]: m
        for m in rendered.all("ServiceMonitor")
    }
    assert set(monitors) == {"service", "model-server"}
    assert monitors["service"]["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitors["service"]["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_prometheus_rule_alerts_on_a_stall_and_on_faults(
    render: Callable[..., Any], ci_values: Callable[[str], Values]
) -> None:
    from integration.pipeline.metrics import PipelineMetrics

    rendered = render(ci_values("hospital"))
    (rule,) = rendered.all("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {"RadgptPipelineStalled", "RadgptPausedOnFault", "RadgptDeadLetters"}
    stalled = alerts["RadgptPipelineStalled"]["expr"]
    # lag > 0 and no progress for stallSeconds (600 in the hospital values)
    assert "radgpt_consumer_lag" in stalled and "> 0" in stalled
    assert "time() - max by (namespace, pod) (radgpt_last_progress_timestamp_seconds" in stalled
    assert stalled.rstrip().endswith(") > 600)")
    assert 'service="radgpt"' in stalled and 'namespace="' in stalled
    assert alerts["RadgptPausedOnFault"]["for"] == "2m"
    # every metric an alert names is one the service exports
    exported = {
        metric.name + suffix
        for metric in PipelineMetrics().registry.collect()
        for suffix in ("", "_total")
    }
    for alert in alerts.values():
        for name in re.findall(r"\b(radgpt_[a-z_]+)\{", alert["expr"]):
            assert name in exported, name
    assert render(ci_values("minimal")).all("PrometheusRule") == []


# --- names and notes ---------------------------------------------------------------------------


def test_names_are_truncated_to_63_characters(
    render: Callable[..., Any], ci_values: Callable[[str], Values]
) -> None:
    release = "radiology-impression-drafting-production-blue-green-cluster-one"
    assert len(release) == 63
    rendered = render(ci_values("hospital"), release=release)
    names = [m["metadata"]["name"] for m in rendered.manifests]
    assert len(names) == len({(m["kind"], m["metadata"]["name"]) for m in rendered.manifests})
    for manifest in rendered.manifests:
        assert len(manifest["metadata"]["name"]) <= 63
        assert not manifest["metadata"]["name"].endswith("-")
        for value in manifest["metadata"]["labels"].values():
            assert len(value) <= 63
    assert any(n.endswith("-model-server") for n in names)


def test_notes_give_dns_names_and_commands(
    render: Callable[..., Any], ci_values: Callable[[str], Values]
) -> None:
    notes = render(ci_values("hospital")).notes
    assert "http://radgpt.radiology-ai.svc:8000" in notes
    assert "http://radgpt-model-server.radiology-ai.svc:80" in notes
    assert "kubectl -n radiology-ai rollout status deployment/radgpt" in notes
    assert "https://radgpt.hospital.example/" in notes
    assert "WARNING" not in notes


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"kafka": {"securityProtocol": "PLAINTEXT"}}, "Kafka traffic is not encrypted"),
        ({"environment": "local", "auth": {"trustDevKey": True}}, "auth.trustDevKey=true"),
        ({"ingress": {"tls": []}}, "The Ingress has no TLS"),
        ({"networkPolicy": {"enabled": False}}, "networkPolicy.enabled=false"),
        ({"inference": {"maxConcurrency": 64}}, "expect 429s"),
    ],
)
def test_notes_warn_loudly_about_insecure_settings(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    merged: Callable[[Values, Values], Values],
    override: Values,
    needle: str,
) -> None:
    notes = render(merged(ci_values("hospital"), override)).notes
    assert "WARNING" in notes
    assert needle in notes


# --- adapter rollout: both adapters loaded, then a review-only shadow release ------------------


def test_shadow_release_for_a_new_adapter(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    merged: Callable[[Values, Values], Values],
    chart_dir: Path,
    container_env: Callable[[dict[str, Any]], dict[str, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    both = [
        {"name": "radiology", "path": "adapters/radiology"},
        {"name": "radiology-v2", "path": "adapters/radiology-v2"},
    ]
    production_values = merged(ci_values("hospital"), {"modelServer": {"adapters": both}})
    production = render(production_values)
    model_env = container_env(production.one("Deployment", "model-server"))
    assert model_env["LORA_ADAPTERS"]["value"] == (
        "radiology=/models/adapters/radiology,radiology-v2=/models/adapters/radiology-v2"
    )
    assert production.one("ConfigMap")["data"]["RADGPT_INFERENCE__ADAPTER"] == "radiology"

    overlay = yaml.safe_load((chart_dir / "ci" / "overlay-shadow.yaml").read_text())
    shadow = render(merged(production_values, overlay), release="radgpt-shadow")
    components = {m["metadata"]["labels"]["app.kubernetes.io/component"] for m in shadow.manifests}
    assert components == {"service"}  # no model server, no migration hook
    assert "ScaledObject" not in shadow.kinds() and "Ingress" not in shadow.kinds()
    config = shadow.one("ConfigMap")["data"]
    assert config["RADGPT_KAFKA__GROUP_ID"] == "radgpt-shadow"
    assert config["RADGPT_INFERENCE__ADAPTER"] == "radiology-v2"
    assert (
        config["RADGPT_INFERENCE__URL"]
        == production.one("ConfigMap")["data"]["RADGPT_INFERENCE__URL"]
    )
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    assert Settings().pipeline.output_formats == []

    # The network policies of both releases let the shadow pods reach the production model.
    shadow_pod_labels = shadow.one("Deployment", "service")["spec"]["template"]["metadata"][
        "labels"
    ]
    model_policy = production.one("NetworkPolicy", "model-server")
    allowed = model_policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert allowed.items() <= shadow_pod_labels.items()
    model_pod = production.one("Deployment", "model-server")["spec"]["template"]
    model_port = model_pod["spec"]["containers"][0]["ports"][0]["containerPort"]
    egress = shadow.one("NetworkPolicy", "service")["spec"]["egress"][2]
    assert _ports(egress) == {(model_port, "TCP")}
    selector = egress["to"][0]["podSelector"]["matchLabels"]
    assert selector.items() <= model_pod["metadata"]["labels"].items()
