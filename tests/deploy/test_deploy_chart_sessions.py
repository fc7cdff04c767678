"""The chart's session group kind (natsbus serve) and service workers (natsbus run --service)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_deploy_chart import (
    CHART,
    CUSTOM_KINDS,
    Helm,
    Render,
    copy_chart,
    flag,
    flags,
    helm_binary,
    kubernetes_validate,
    worker,
)

from natsbus.bus.nats.layout import SubjectLayout

SESSIONS = CHART / "ci" / "sessions-values.yaml"


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm_binary(), copy_chart(tmp_path_factory.mktemp("chart")))


@pytest.fixture(scope="module")
def render(helm: Helm) -> Render:
    return helm.render(values=[SESSIONS], release="calls", namespace="voice")


def test_a_session_group_runs_natsbus_serve_with_its_slots(render: Render) -> None:
    voice = worker(render.one("Deployment", "calls-natsbus-voice"))
    assert voice["command"] == ["natsbus", "serve"]
    assert voice["args"][0] == "app.sessions:make_session"
    assert flag(voice, "--group") == "voice"
    assert flag(voice, "--slots") == "30"
    assert flag(voice, "--services-channel") == "services"
    assert flag(voice, "--grace-period") == "900"
    assert "--name" not in voice["args"] and "--runner-name" not in voice["args"]


def test_the_serve_arguments_parse_with_the_real_cli(render: Render) -> None:
    from natsbus.cli import _parser

    voice = worker(render.one("Deployment", "calls-natsbus-voice"))
    parsed = _parser().parse_args(["serve", *voice["args"]])
    assert (parsed.group, parsed.slots, parsed.grace_period) == ("voice", 30, 900.0)
    assert parsed.nats_url == ["nats://nats.example.com:4222"]
    tts = worker(render.one("Deployment", "calls-natsbus-tts"))
    parsed = _parser().parse_args(["run", *tts["args"]])
    assert parsed.service and parsed.end_from == ["ops"] and parsed.channel == "services"


def test_a_session_pod_gets_the_grace_period_of_a_call(render: Render) -> None:
    spec = render.one("Deployment", "calls-natsbus-voice")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= 900


def test_keda_scales_a_session_group_on_waiting_requests_and_free_slots(render: Render) -> None:
    scaled = render.one("ScaledObject", "calls-natsbus-voice")
    jetstream, prometheus = scaled["spec"]["triggers"]
    assert jetstream["type"] == "nats-jetstream"
    # The group's session requests wait in the consumer its serving processes share.
    assert jetstream["metadata"]["consumer"] == SubjectLayout("default").job_consumer("voice")
    assert prometheus["type"] == "prometheus"
    query = prometheus["metadata"]["query"]
    assert 'natsbus_sessions_running{group="voice"}' in query
    assert 'natsbus_session_requests_waiting{group="voice"}' in query
    assert query.endswith("+ 10")
    assert prometheus["metadata"]["threshold"] == "30"


def test_a_service_group_is_never_ended_by_a_session(render: Render) -> None:
    tts = worker(render.one("Deployment", "calls-natsbus-tts"))
    assert "--service" in tts["args"]
    assert flags(tts, "--end-from") == ["ops"]


def test_the_session_render_passes_kubernetes_validate(render: Render, tmp_path: Path) -> None:
    output = kubernetes_validate(render, tmp_path)  # fails on any error
    for line in output.splitlines():  # only the custom resources may lack a schema
        if line.startswith("WARN"):
            assert any(f"for kind {kind}" in line for kind in CUSTOM_KINDS), line


def test_a_session_group_with_provisioned_users_fails_clearly(helm: Helm) -> None:
    done = helm.template(
        values=[SESSIONS],
        sets=["natsAuth.type=provisioned"],
    )
    assert done.returncode != 0
    assert "natsbus permissions --role serve" in done.stderr


def test_a_wrong_kind_is_refused_by_the_schema(helm: Helm) -> None:
    done = helm.template(values=[SESSIONS], sets=["workers[0].kind=session"])
    assert done.returncode != 0 and "kind" in done.stderr
