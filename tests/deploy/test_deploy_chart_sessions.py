"""The chart's session group kind (natsbus serve) and service workers (natsbus run --service)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
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
from test_deploy_chart_users import server_users

from natsbus.access import permissions, serve_permissions
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


def test_a_session_group_user_has_exactly_the_serve_permissions(helm: Helm) -> None:
    render = helm.render(values=[SESSIONS], sets=["natsAuth.type=provisioned"])
    users = server_users(render)
    serve = serve_permissions(
        channel="default", group="voice", names=["agent", "line"], services_channel="services"
    )
    # item for item, in the same order (the job consumers' sha256 included)
    assert users["r-natsbus-voice"]["permissions"] == serve.as_dict()
    tts = permissions(channel="services", names=["tts"], role="runner")
    assert users["r-natsbus-tts"]["permissions"] == tts.as_dict()


def test_the_serve_template_matches_python_for_other_names_and_no_services(helm: Helm) -> None:
    sets = [
        "natsAuth.type=provisioned",
        "workers[0].sessions.workerNames={zeta,alpha,zeta,m-1}",
        "workers[0].sessions.servicesChannel=",
        "workers[0].channel=C-1",
    ]
    users = server_users(helm.render(values=[SESSIONS], sets=sets))
    serve = serve_permissions(
        channel="C-1", group="voice", names=["zeta", "alpha", "m-1"], services_channel=None
    )
    assert users["r-natsbus-voice"]["permissions"] == serve.as_dict()


def test_a_provisioned_session_group_needs_its_worker_names(helm: Helm, tmp_path: Path) -> None:
    values = yaml.safe_load(SESSIONS.read_text())
    values["workers"][0]["sessions"]["workerNames"] = []
    values["natsAuth"] = {"type": "provisioned"}
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    done = helm.template(values=[path])
    assert done.returncode != 0
    assert "sessions.workerNames" in done.stderr


def test_a_wrong_kind_is_refused_by_the_schema(helm: Helm) -> None:
    done = helm.template(values=[SESSIONS], sets=["workers[0].kind=session"])
    assert done.returncode != 0 and "kind" in done.stderr
