"""docs/operations.md and docs/grafana-dashboard.json name only metrics and settings that exist.

The metrics are read from the services' own registries (``lipstream.metrics``), the settings
from ``Settings``, so a renamed metric or setting fails here until the docs follow. Each check
is a function returning the problems it finds; the tests run it on the real files and on a
broken copy, so that each check is seen to fail when it should.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from lipstream.frames import lipsync_client
from lipstream.metrics import FrameMetrics, LipSyncMetrics, WebMetrics
from lipstream.settings import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs"
OPERATIONS = DOCS / "operations.md"
DASHBOARD = DOCS / "grafana-dashboard.json"

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
SETTING_NAMES = {name.upper() for name in Settings.model_fields}

# ALL_CAPS words the operations guide writes in backticks that are not settings, each checked to
# be what the guide says it is: gRPC status names (UNAVAILABLE, NOT_FOUND), the health service's
# statuses (SERVING, NOT_SERVING) and the frame generator's SERVICE_CONFIG constant.
NOT_SETTINGS = (
    {code.name for code in grpc.StatusCode}
    | set(health_pb2.HealthCheckResponse.ServingStatus.keys())
    | {name for name in ("SERVICE_CONFIG",) if hasattr(lipsync_client, name)}
)


def defined_metrics() -> dict[str, str]:
    """Every metric the three services define: its exposed name -> its type.

    prometheus-client names a counter's family without ``_total`` and gives a labelled metric
    no samples until a label is used, so the exposed name comes from the family's type; where a
    family has samples, the name is checked against them.
    """
    metrics: dict[str, str] = {}
    for service in (WebMetrics(), FrameMetrics(), LipSyncMetrics()):
        for family in service.registry.collect():
            name = f"{family.name}_total" if family.type == "counter" else family.name
            samples = {sample.name for sample in family.samples}
            if family.type == "histogram":
                exposed = {name + suffix for suffix in HISTOGRAM_SUFFIXES}
            else:
                exposed = {name}
            assert not samples or exposed <= samples, (family.name, samples)
            metrics[name] = family.type
    return metrics


def series_names(metrics: dict[str, str]) -> set[str]:
    """The series names Prometheus stores for the metrics (histograms: three each)."""
    names = set()
    for name, kind in metrics.items():
        if kind == "histogram":
            names |= {name + suffix for suffix in HISTOGRAM_SUFFIXES}
        else:
            names.add(name)
    return names


def expressions(node: Any) -> list[str]:
    """Every ``expr`` of a Grafana dashboard, at any depth."""
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for value in node for e in expressions(value)]
    return []


def dashboard_metric_problems(dashboard: dict, metrics: dict[str, str]) -> list[str]:
    """Metric names in the dashboard's expressions that no service exposes."""
    used = sorted({m for e in expressions(dashboard) for m in re.findall(r"lipstream_[a-z_]+", e)})
    series = series_names(metrics)
    problems = []
    for name in used:
        base = name
        for suffix in HISTOGRAM_SUFFIXES:
            base = base.removesuffix(suffix)
        if base not in metrics:
            problems.append(f"{name}: no metric {base} in lipstream.metrics")
        elif name not in series:
            problems.append(f"{name}: {base} is a {metrics[base]}, exposed as no such series")
    return problems


def undocumented_metrics(text: str, metrics: dict[str, str]) -> list[str]:
    """Metrics that the operations guide does not name."""
    return [
        name
        for name in sorted(metrics)
        if not re.search(rf"(?<![a-z_]){re.escape(name)}(?![a-z_])", text)
    ]


def unknown_setting_problems(text: str) -> list[str]:
    """ALL_CAPS words in backticks, and ``NAME=`` assignments, that are not settings."""
    spans = re.findall(r"`([^`\n]+)`", text)
    named = {s for s in spans if re.fullmatch(r"[A-Z][A-Z0-9_]{3,}", s)}
    named |= set(re.findall(r"\b([A-Z][A-Z0-9_]{3,})=", text))
    return [f"{name} is not a setting" for name in sorted(named - SETTING_NAMES - NOT_SETTINGS)]


# --- the real files --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def metrics() -> dict[str, str]:
    return defined_metrics()


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def operations() -> str:
    return OPERATIONS.read_text()


def test_the_dashboard_uses_only_metrics_the_services_expose(dashboard, metrics):
    assert len(expressions(dashboard)) >= 10
    assert dashboard_metric_problems(dashboard, metrics) == []


def test_the_dashboard_asks_for_a_prometheus_data_source(dashboard):
    assert dashboard["uid"] == "lipstream"
    assert dashboard["schemaVersion"] == 39
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert (variable["name"], variable["query"]) == ("datasource", "prometheus")
    for panel in dashboard["panels"]:
        sources = [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]
        assert all(s == {"type": "prometheus", "uid": "${datasource}"} for s in sources), panel


def test_the_operations_guide_names_every_metric(operations, metrics):
    assert len(metrics) >= 20
    assert undocumented_metrics(operations, metrics) == []


def test_every_variable_the_operations_guide_names_is_a_setting(operations):
    assert {"SESSION_SECRET", "TRUSTED_PROXIES", "GRPC_METRICS_PORT"} <= SETTING_NAMES
    assert unknown_setting_problems(operations) == []


def test_the_names_allowed_besides_settings_exist():
    assert {"UNAVAILABLE", "NOT_FOUND", "SERVING", "NOT_SERVING", "SERVICE_CONFIG"} <= NOT_SETTINGS


# --- each check fails when it should ---------------------------------------------------------


def test_a_dashboard_with_a_wrong_metric_name_is_caught(dashboard, metrics):
    broken = json.loads(json.dumps(dashboard))
    broken["panels"][0]["targets"] = [
        {"expr": "sum(rate(lipstream_frames_sent[1m]))"},  # the family name, without _total
        {"expr": "rate(lipstream_frame_latency_seconds[5m])"},  # a histogram without a suffix
        {"expr": "lipstream_sessions_active_count"},  # a gauge with a histogram's suffix
        {"expr": "sum(lipstream_sessions_open)"},  # no such metric
    ]
    assert dashboard_metric_problems(broken, metrics) == [
        "lipstream_frame_latency_seconds: lipstream_frame_latency_seconds is a histogram, "
        "exposed as no such series",
        "lipstream_frames_sent: no metric lipstream_frames_sent in lipstream.metrics",
        "lipstream_sessions_active_count: lipstream_sessions_active is a gauge, "
        "exposed as no such series",
        "lipstream_sessions_open: no metric lipstream_sessions_open in lipstream.metrics",
    ]


def test_a_guide_missing_a_metric_is_caught(operations, metrics):
    without = operations.replace("lipstream_frames_made_total", "lipstream_frames_made")
    assert undocumented_metrics(without, metrics) == ["lipstream_frames_made_total"]
    # a longer name that starts with a metric's name does not count as naming it
    assert "lipstream_errors_total" in undocumented_metrics("`lipstream_errors_total_x`", metrics)


def test_a_guide_naming_an_unknown_variable_is_caught(operations):
    broken = operations + "\nSet `MAX_SESION` and run with SESSION_SECRETS=abc lipstream serve.\n"
    assert unknown_setting_problems(broken) == [
        "MAX_SESION is not a setting",
        "SESSION_SECRETS is not a setting",
    ]
