"""Chart values: validation (one `fail` listing every problem), values.schema.json, docs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

Values = dict[str, Any]


def _render_error(render: Callable[..., Any], values: Values) -> str:
    with pytest.raises(helm_python.HelmRenderError) as caught:
        render(values)
    message = str(caught.value)
    assert message.count("VALUES VALIDATION") == 1
    return message


def test_settings_names_are_derived_from_the_model(settings_env_names: set[str]) -> None:
    assert "RADGPT_KAFKA__TOPICS__HL7_IN" in settings_env_names
    assert "RADGPT_FHIR_SINK__URL" in settings_env_names
    assert "RADGPT_ENVIRONMENT" in settings_env_names
    assert "RADGPT_KAFKA__BOOTSTRAP_SERVER" not in settings_env_names
    assert "RADGPT_KAFKA" not in settings_env_names


def test_chart_defaults_alone_name_every_missing_value(render: Callable[..., Any]) -> None:
    message = _render_error(render, {})
    for needle in (
        "kafka.bootstrapServers",
        "database.url",
        "kafka.saslUsername",
        "kafka.saslPassword",
        "auth.issuer",
        "auth.jwksUrl",
        "modelServer.storage",
    ):
        assert needle in message


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        (
            {"autoscaling": {"keda": {"enabled": True, "maxReplicaCount": 7}}},
            "autoscaling.keda.maxReplicaCount (7) exceeds kafka.partitions (6)",
        ),
        (
            {"autoscaling": {"hpa": {"enabled": True, "maxReplicas": 9}}},
            "autoscaling.hpa.maxReplicas (9) exceeds kafka.partitions (6)",
        ),
        ({"service": {"replicaCount": 8}}, "service.replicaCount (8) exceeds kafka.partitions"),
        (
            {"autoscaling": {"keda": {"enabled": True}, "hpa": {"enabled": True}}},
            "not both",
        ),
        (
            {"inference": {"adapter": "radiology-v9"}},
            "inference.adapter (radiology-v9) is not loaded",
        ),
        (
            {"modelServer": {"engine": "vllm"}, "inference": {"backend": "tgi"}},
            "vLLM has no TGI /generate route",
        ),
        ({"auth": {"trustDevKey": True}}, "auth.trustDevKey: only allowed with environment=local"),
        (
            {"secrets": {"existingSecret": "radgpt-credentials"}},
            "database.url: a literal credential is ignored",
        ),
        (
            {"modelServer": {"terminationGracePeriodSeconds": 60}},
            "must exceed modelServer.tgi.gracefulTerminationTimeout (90)",
        ),
        ({"networkPolicy": {"enabled": True}}, "networkPolicy.egress.kafka.to"),
        (
            {
                "inference": {"adapter": "radiology-v2"},
                "modelServer": {"adapters": [{"name": "radiology-v2", "path": "adapters/v2"}]},
            },
            "the image ships only the radiology adapter's canary",
        ),
        (
            {"inference": {"adapter": "radiology-v2", "adapterMetadata": {"source": "volume"}}},
            "must be listed in modelServer.adapters",
        ),
        (
            {"inference": {"adapterMetadata": {"source": "configMap"}}},
            "inference.adapterMetadata.configMap",
        ),
        (
            {"pipeline": {"drainTimeoutS": 90}},
            "pipeline.drainTimeoutS (90) must be below service.terminationGracePeriodSeconds (60)",
        ),
        ({"modelServer": {"enabled": False}}, "inference.url: required"),
        ({"database": {"url": "postgresql://u:p@db/radgpt"}}, "postgresql+asyncpg://"),
        (
            {"modelServer": {"adapters": [{"name": "radiology", "path": "a"}] * 2}},
            "adapter names must be unique",
        ),
    ],
)
def test_invalid_combinations_fail_with_a_clear_message(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    merged: Callable[[Values, Values], Values],
    override: Values,
    needle: str,
) -> None:
    assert needle in _render_error(render, merged(ci_values("minimal"), override))


def test_all_problems_are_reported_at_once(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    merged: Callable[[Values, Values], Values],
) -> None:
    values = merged(
        ci_values("minimal"),
        {
            "autoscaling": {"keda": {"enabled": True, "maxReplicaCount": 12}},
            "inference": {"adapter": "other"},
            "auth": {"trustDevKey": True},
        },
    )
    message = _render_error(render, values)
    assert "maxReplicaCount (12)" in message
    assert "inference.adapter (other)" in message
    assert "auth.trustDevKey" in message


def test_replicas_equal_to_partitions_are_allowed(
    render: Callable[..., Any],
    ci_values: Callable[[str], Values],
    merged: Callable[[Values, Values], Values],
) -> None:
    values = merged(
        ci_values("minimal"),
        {
            "kafka": {"partitions": 3},
            "autoscaling": {"keda": {"enabled": True, "maxReplicaCount": 3}},
        },
    )
    assert render(values).one("ScaledObject")["spec"]["maxReplicaCount"] == 3


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"modelServer": {"engine": "triton"}}, "/modelServer/engine"),
        ({"inference": {"backend": "local"}}, "/inference/backend"),
        ({"database": {"url": {"secretName": "pg"}}}, "/database/url"),
        ({"kafka": {"saslPassword": 12345}}, "/kafka/saslPassword"),
        ({"kafka": {"securityProtocol": "TLS"}}, "/kafka/securityProtocol"),
        ({"kafka": {"partitions": 0}}, "/kafka/partitions"),
        ({"kafka": {"topics": {"hl7In": "bad topic!"}}}, "/kafka/topics/hl7In"),
        ({"modelServer": {"adapters": [{"name": "r", "path": "a=b"}]}}, "/modelServer/adapters"),
        ({"modelServer": {"tgi": {"image": {"tag": "latest"}}}}, "/modelServer/tgi/image/tag"),
        ({"image": {"tag": "latest"}}, "/image/tag"),
        ({"pipeline": {"outputFormats": ["pdf"]}}, "/pipeline/outputFormats"),
        ({"modelServr": {"engine": "tgi"}}, "modelServr"),
        ({"kafka": {"bootstrapServer": "x:9092"}}, "bootstrapServer"),
        ({"environment": "prod"}, "/environment"),
    ],
)
def test_schema_rejects_bad_values(
    chart: helm_python.Chart,
    ci_values: Callable[[str], Values],
    merged: Callable[[Values, Values], Values],
    override: Values,
    needle: str,
) -> None:
    with pytest.raises(helm_python.HelmValuesError) as caught:
        chart.validate_schema(merged(ci_values("minimal"), override))
    assert needle in str(caught.value)


@pytest.mark.parametrize(
    "credential",
    [
        "postgresql+asyncpg://radgpt:pw@db:5432/radgpt",
        {"secretName": "pg-app", "secretKey": "uri"},
        None,
    ],
)
def test_schema_accepts_a_literal_or_a_secret_reference(
    chart: helm_python.Chart,
    ci_values: Callable[[str], Values],
    merged: Callable[[Values, Values], Values],
    credential: Any,
) -> None:
    chart.validate_schema(merged(ci_values("minimal"), {"database": {"url": credential}}))


def test_schema_is_draft_07_and_defaults_validate(
    chart_dir: Path, chart: helm_python.Chart
) -> None:
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["properties"]["modelServer"]["properties"]["engine"]["enum"] == ["tgi", "vllm"]
    chart.validate_schema(chart.values)


# --- every value is documented -----------------------------------------------------------------


def _leaf_paths(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaf_paths(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix


def test_every_value_is_documented_with_param(chart_dir: Path) -> None:
    text = (chart_dir / "values.yaml").read_text()
    documented = set(re.findall(r"^\s*## @param (\S+) \S", text, flags=re.MULTILINE))
    values = yaml.safe_load(text)
    undocumented = [
        path
        for path in _leaf_paths(values)
        if not any(path == d or path.startswith(d + ".") for d in documented)
    ]
    assert undocumented == []
    # ...and every @param names a real key.
    leaves = set(_leaf_paths(values))
    stale = [d for d in documented if not any(p == d or p.startswith(d + ".") for p in leaves)]
    assert stale == []


def test_ci_value_sets_pass_the_schema(
    chart: helm_python.Chart, ci_values: Callable[[str], Values], value_set: str
) -> None:
    chart.validate_schema(ci_values(value_set))
