"""The bundled NATS's addresses, as the official NATS chart makes them, followed by our chart.

The workers' `--nats-url`, KEDA's monitoring endpoint and the NetworkPolicy's NATS port are
derived from the `nats:` values the NATS chart (1.3.x) renders with: its client Service
(`nats.service.name`, `.enabled`, `.ports.nats.port`), its headless Service
(`nats.headlessService.name`), the servers' ports (`nats.config.nats.port`,
`nats.config.monitor.port`) and namespace. Each case below renders the chart with one override
and checks both the URL we expect (written down from the real chart 1.3.2's output) and that
the rendered NATS chart's own Services and StatefulSet have that name and port.

The official chart cannot be fetched here, so `charts/nats` is a stand-in that renders, in the
NATS chart's context (its values coalesced with ours, as Helm does), the client Service, the
headless Service and the StatefulSet's ports under the naming rules of nats 1.3.2, from a
values.yaml with that chart's defaults for the values read. Point NATSBUS_NATS_CHART at the
real chart (a directory or the .tgz of `helm pull nats --repo https://nats-io.github.io/k8s/helm/charts/
--version 1.3.2`) to run the same tests against it.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_deploy_chart import CHART, Helm, Render, copy_chart, helm_binary, load_yaml, worker

RELEASE, NAMESPACE = "r", "ns"
REAL_CHART = os.environ.get("NATSBUS_NATS_CHART", "")
AUTOSCALED = [
    "workers[0].name=writer",
    "workers[0].module=m:W",
    "workers[0].autoscaling.enabled=true",
]
# The defaults of the official NATS chart 1.3.2 for the values the derivation reads.
STAND_IN_VALUES = """\
nameOverride:
fullnameOverride:
namespaceOverride:
config:
  nats:
    port: 4222
    tls:
      enabled: false
  monitor:
    enabled: true
    port: 8222
    tls:
      enabled: false
  jetstream:
    enabled: false
    fileStore:
      enabled: true
      pvc:
        enabled: true
        size: 10Gi
    memoryStore:
      enabled: false
      maxSize: 1Gi
service:
  enabled: true
  ports:
    nats:
      enabled: true
  name:
headlessService:
  name:
natsBox:
  enabled: true
  deployment:
    name:
"""
# The objects of nats 1.3.2 whose names and ports the workers and KEDA must agree with: the
# client Service (when enabled; the client port on it when service.ports.nats is), the headless
# Service (always, with the servers' own ports) and the servers' container ports.
STAND_IN_TEMPLATE = """\
{{- $name := .Values.nameOverride | default .Chart.Name }}
{{- $fullname := .Values.fullnameOverride }}
{{- if not $fullname }}
{{- $joined := printf "%s-%s" .Release.Name $name }}
{{- $fullname = ternary .Release.Name $joined (contains $name .Release.Name) }}
{{- end }}
{{- $fullname = $fullname | trunc 63 | trimSuffix "-" }}
{{- $namespace := .Values.namespaceOverride | default .Release.Namespace }}
{{- $labels := dict "app.kubernetes.io/name" $name "app.kubernetes.io/instance" .Release.Name }}
{{- $_ := set $labels "app.kubernetes.io/component" "nats" }}
{{- $headless := .Values.headlessService.name | default (printf "%s-headless" $fullname) }}
{{- $config := .Values.config }}
{{- if .Values.service.enabled }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Values.service.name | default $fullname }}
  namespace: {{ $namespace }}
  labels: {{- toYaml $labels | nindent 4 }}
spec:
  selector: {{- toYaml $labels | nindent 4 }}
  ports:
    {{- if .Values.service.ports.nats.enabled }}
    - name: nats
      port: {{ .Values.service.ports.nats.port | default $config.nats.port }}
      targetPort: nats
    {{- end }}
{{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $headless }}
  namespace: {{ $namespace }}
  labels: {{- toYaml $labels | nindent 4 }}
spec:
  selector: {{- toYaml $labels | nindent 4 }}
  clusterIP: None
  publishNotReadyAddresses: true
  ports:
    - name: nats
      port: {{ $config.nats.port }}
      targetPort: nats
    {{- if $config.monitor.enabled }}
    - name: monitor
      port: {{ $config.monitor.port }}
      targetPort: monitor
    {{- end }}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ $fullname }}
  namespace: {{ $namespace }}
  labels: {{- toYaml $labels | nindent 4 }}
spec:
  serviceName: {{ $headless }}
  selector:
    matchLabels: {{- toYaml $labels | nindent 6 }}
  template:
    metadata:
      labels: {{- toYaml $labels | nindent 8 }}
    spec:
      containers:
        - name: nats
          image: nats
          ports:
            - name: nats
              containerPort: {{ $config.nats.port }}
            {{- if $config.monitor.enabled }}
            - name: monitor
              containerPort: {{ $config.monitor.port }}
            {{- end }}
"""


def case_id(value: object) -> str | None:
    """The --set items of a case as its test id (the other parameters get pytest's)."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return ",".join(value)
    return None


def with_nats_chart(destination: Path) -> Path:
    """A copy of the chart whose charts/nats is the stand-in, or NATSBUS_NATS_CHART."""
    chart = copy_chart(destination)
    nats = chart / "charts" / "nats"
    if REAL_CHART:
        shutil.rmtree(nats)
        source = Path(REAL_CHART)
        if source.is_dir():
            shutil.copytree(source, nats)
        else:
            with tarfile.open(source) as packed:
                packed.extractall(nats.parent, filter="data")
        (dependency,) = load_yaml(CHART / "Chart.yaml")["dependencies"]
        assert load_yaml(nats / "Chart.yaml")["version"] == dependency["version"], REAL_CHART
    else:
        (nats / "values.yaml").write_text(STAND_IN_VALUES, encoding="utf-8")
        (nats / "templates").mkdir()
        (nats / "templates" / "stand-in.yaml").write_text(STAND_IN_TEMPLATE, encoding="utf-8")
    return chart


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm_binary(), with_nats_chart(tmp_path_factory.mktemp("nats-chart")))


def nats_objects(render: Render, kind: str) -> Iterator[dict[str, Any]]:
    for obj in render.of(kind):
        if obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "nats":
            yield obj


def nats_service(render: Render, name: str, namespace: str) -> dict[str, Any]:
    """The Service the NATS chart rendered under that name and namespace."""
    found = [
        s
        for s in nats_objects(render, "Service")
        if s["metadata"]["name"] == name and s["metadata"].get("namespace", NAMESPACE) == namespace
    ]
    rendered = [
        (s["metadata"]["name"], s["metadata"].get("namespace")) for s in render.of("Service")
    ]
    assert len(found) == 1, f"the NATS chart made no Service {namespace}/{name}: {rendered}"
    return found[0]


def port_named(obj: dict[str, Any], name: str) -> int:
    ports = {p["name"]: p["port"] for p in obj["spec"].get("ports") or []}
    assert name in ports, f"{obj['metadata']['name']} has no port {name}: {ports}"
    return int(ports[name])


def server_ports(render: Render) -> dict[str, int]:
    """The container ports of the NATS servers, by name."""
    (statefulset,) = nats_objects(render, "StatefulSet")
    (nats,) = [
        c for c in statefulset["spec"]["template"]["spec"]["containers"] if c["name"] == "nats"
    ]
    return {p["name"]: int(p["containerPort"]) for p in nats["ports"]}


def the_nats_url(render: Render) -> str:
    """The one --nats-url of the one worker Deployment (the NATS chart has nats-box's too)."""
    (deployment,) = [
        d
        for d in render.of("Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    ]
    args = worker(deployment)["args"]
    urls = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--nats-url"]
    assert len(urls) == 1, urls
    return urls[0]


def nats_egress_ports(render: Render) -> list[int]:
    """The ports of the NetworkPolicy's egress rule to NATS (the rule that is not DNS)."""
    rules = [
        rule
        for rule in render.one("NetworkPolicy")["spec"]["egress"]
        if {p["port"] for p in rule["ports"]} != {53}
    ]
    assert len(rules) == 1, rules
    return [p["port"] for p in rules[0]["ports"]]


# ---------------------------------------------------------------------------------------------
# the workers dial the Service the NATS chart makes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "release", "url", "headless"),
    [
        ([], RELEASE, "nats://r-nats.ns.svc:4222", False),
        (["nats.service.name=bus"], RELEASE, "nats://bus.ns.svc:4222", False),
        (["nats.service.ports.nats.port=4333"], RELEASE, "nats://r-nats.ns.svc:4333", False),
        (["nats.config.nats.port=4444"], RELEASE, "nats://r-nats.ns.svc:4444", False),
        (
            ["nats.service.name=bus", "nats.service.ports.nats.port=4333"],
            RELEASE,
            "nats://bus.ns.svc:4333",
            False,
        ),
        (["nats.service.enabled=false"], RELEASE, "nats://r-nats-headless.ns.svc:4222", True),
        (
            ["nats.service.enabled=false", "nats.headlessService.name=nats-peers"],
            RELEASE,
            "nats://nats-peers.ns.svc:4222",
            True,
        ),
        (
            ["nats.service.enabled=false", "nats.config.nats.port=4555"],
            RELEASE,
            "nats://r-nats-headless.ns.svc:4555",
            True,
        ),
        (
            ["nats.service.ports.nats.enabled=false"],
            RELEASE,
            "nats://r-nats-headless.ns.svc:4222",
            True,
        ),
        (
            ["nats.headlessService.name=nats-peers"],  # the client Service is still there
            RELEASE,
            "nats://r-nats.ns.svc:4222",
            False,
        ),
        (
            ["nats.fullnameOverride=mq", "nats.namespaceOverride=messaging"],
            RELEASE,
            "nats://mq.messaging.svc:4222",
            False,
        ),
        ([], "nats-eu", "nats://nats-eu.ns.svc:4222", False),  # a release name holding "nats"
        (
            ["nats.service.name=bus", "natsTls.enabled=true", "natsTls.existingSecret=t"],
            RELEASE,
            "tls://bus.ns.svc:4222",
            False,
        ),
    ],
    ids=case_id,
)
def test_workers_dial_the_service_the_nats_chart_makes(
    helm: Helm, sets: list[str], release: str, url: str, headless: bool
) -> None:
    render = helm.render(sets=sets, release=release, namespace=NAMESPACE)
    assert the_nats_url(render) == url
    match = re.fullmatch(r"(nats|tls)://([^.]+)\.([^.]+)\.svc:(\d+)", url)
    assert match
    service = nats_service(render, match.group(2), match.group(3))
    assert port_named(service, "nats") == int(match.group(4))
    assert (service["spec"].get("clusterIP") == "None") == headless
    # the Service's client port leads to the servers' client port
    assert {p["targetPort"] for p in service["spec"]["ports"] if p["name"] == "nats"} == {"nats"}
    assert "nats" in server_ports(render)


def test_notes_name_what_the_workers_dial(helm: Helm) -> None:
    notes = helm.notes(sets=["nats.service.enabled=false", "nats.headlessService.name=peers"])
    assert "NATS: nats://peers.ns.svc:4222" in notes
    assert "its headless Service peers" in notes
    notes = helm.notes(sets=["nats.service.name=bus", "nats.natsBox.deployment.name=box"])
    assert "its Service bus on port 4222" in notes
    assert "exec -it deployment/box -- nats stream info" in notes


# ---------------------------------------------------------------------------------------------
# KEDA reads the monitoring port of the headless Service
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "endpoint", "https"),
    [
        ([], "r-nats-headless.ns.svc.cluster.local:8222", "false"),
        (["nats.headlessService.name=peers"], "peers.ns.svc.cluster.local:8222", "false"),
        (["nats.config.monitor.port=9222"], "r-nats-headless.ns.svc.cluster.local:9222", "false"),
        (
            ["nats.service.enabled=false", "nats.service.name=bus"],
            "r-nats-headless.ns.svc.cluster.local:8222",
            "false",
        ),
        (
            ["nats.namespaceOverride=messaging", "clusterDomain=k8s.example"],
            "r-nats-headless.messaging.svc.k8s.example:8222",
            "false",
        ),
        (
            [
                "nats.config.nats.tls.enabled=true",
                "nats.config.nats.tls.secretName=nats-tls",
                "nats.config.monitor.tls.enabled=true",
            ],
            "r-nats-headless.ns.svc.cluster.local:8222",
            "true",
        ),
    ],
    ids=case_id,
)
def test_keda_reads_the_monitoring_port_the_nats_chart_serves(
    helm: Helm, sets: list[str], endpoint: str, https: str
) -> None:
    render = helm.render(sets=[*AUTOSCALED, *sets])
    (trigger,) = render.one("ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["natsServerMonitoringEndpoint"] == endpoint
    assert trigger["metadata"]["useHttps"] == https
    host, port = endpoint.rsplit(":", 1)
    name, namespace = host.split(".")[:2]
    headless = nats_service(render, name, namespace)
    assert headless["spec"]["clusterIP"] == "None"  # KEDA asks each server: pod names under it
    assert port_named(headless, "monitor") == int(port) == server_ports(render)["monitor"]
    (statefulset,) = nats_objects(render, "StatefulSet")
    assert statefulset["spec"]["serviceName"] == name


# ---------------------------------------------------------------------------------------------
# the NetworkPolicy lets the workers reach the servers' port
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "ports"),
    [
        ([], [4222]),
        (["nats.config.nats.port=4444"], [4444]),
        # a policy matches the pod's port, after the Service translated its own
        (["nats.service.ports.nats.port=4333"], [4222]),
        (["nats.service.enabled=false", "nats.config.nats.port=4555"], [4555]),
        (["nats.config.nats.port=4444", "networkPolicy.natsPort=4444"], [4444]),
    ],
    ids=case_id,
)
def test_network_policy_follows_the_nats_client_port(
    helm: Helm, sets: list[str], ports: list[int]
) -> None:
    render = helm.render(sets=["networkPolicy.enabled=true", *sets])
    assert nats_egress_ports(render) == ports == [server_ports(render)["nats"]]


@pytest.mark.parametrize(
    ("urls", "ports"),
    [
        (["nats://a:4222"], [4222]),
        (["nats://a:4222", "tls://b:7422", "nats://user:pw@c:7422"], [4222, 7422]),
        (["nats://a", "tls://[fd00::1]:4333", "wss://d", "ws://e"], [4222, 4333, 443, 80]),
    ],
)
def test_network_policy_follows_external_nats_urls(
    helm: Helm, urls: list[str], ports: list[int]
) -> None:
    sets = ["networkPolicy.enabled=true", "nats.enabled=false"]
    sets += [f"externalNats.urls[{i}]={url}" for i, url in enumerate(urls)]
    assert nats_egress_ports(helm.render(sets=sets)) == ports
    given = helm.render(sets=[*sets, "networkPolicy.natsPort=5222"])
    assert nats_egress_ports(given) == [5222]  # e.g. behind a proxy that maps the port


# ---------------------------------------------------------------------------------------------
# NOTES say what JetStream is
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "says"),
    [
        ([], "JetStream: on file storage, a 10Gi volume per server\n"),
        (
            ["nats.config.jetstream.fileStore.pvc.size=50Gi"],
            "JetStream: on file storage, a 50Gi volume per server\n",
        ),
        (
            ["nats.config.jetstream.enabled=false"],
            "JetStream: off (nats.config.jetstream.enabled is false)",
        ),
        (
            ["nats.config.jetstream.fileStore.enabled=false"],
            "JetStream: on, with neither file nor memory storage",
        ),
        (
            [
                "nats.config.jetstream.fileStore.enabled=false",
                "nats.config.jetstream.memoryStore.enabled=true",
            ],
            "JetStream: in memory only (up to 1Gi per server;",
        ),
        (
            ["nats.config.jetstream.memoryStore.enabled=true"],
            "JetStream: on file storage, a 10Gi volume per server, and memory storage (up to 1Gi",
        ),
        (
            ["nats.config.jetstream.fileStore.pvc.enabled=false"],
            "JetStream: on file storage without a volume",
        ),
    ],
    ids=case_id,
)
def test_notes_say_what_jetstream_is(helm: Helm, sets: list[str], says: str) -> None:
    notes = helm.notes(sets=sets)
    assert says in notes, notes
    assert notes.count("JetStream: ") == 1
    if "enabled=false" in " ".join(sets) and "pvc" not in " ".join(sets):
        assert "on file storage" not in notes
    if sets[:1] == ["nats.config.jetstream.enabled=false"]:
        assert "the workers will not start until it is on" in notes


def test_notes_of_an_external_nats_say_nothing_of_its_jetstream(helm: Helm) -> None:
    notes = helm.notes(sets=["nats.enabled=false", "externalNats.urls[0]=nats://a:4222"])
    assert "JetStream: " not in notes


# ---------------------------------------------------------------------------------------------
# what cannot work is refused, saying why
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ["metrics.podMonitor.enabled=true", "metrics.serviceMonitor.enabled=true"],
            "metrics.podMonitor and metrics.serviceMonitor are both enabled: Prometheus would "
            "scrape every worker twice",
        ),
        (
            ["networkPolicy.enabled=true", "networkPolicy.natsPort=4333"],
            "networkPolicy.natsPort (4333) is not the port the bundled NATS servers listen on "
            "(nats.config.nats.port: 4222)",
        ),
        (
            [*AUTOSCALED, "workers[0].autoscaling.useHttps=true"],
            'workers "writer": autoscaling.useHttps is true, but the bundled NATS serves its '
            "monitoring port over HTTP",
        ),
        (
            [*AUTOSCALED, "nats.config.monitor.enabled=false"],
            "KEDA autoscaling reads the NATS monitoring port: keep nats.config.monitor.enabled",
        ),
        (["string:nats.config.nats.port=4222x"], "/nats/config/nats/port"),
        (["nats.service.ports.nats.port=0"], "/nats/service/ports/nats/port"),
        (["string:nats.service.enabled=no"], "/nats/service/enabled"),
        (["string:networkPolicy.natsPort=4222"], "/networkPolicy/natsPort"),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else None,
)
def test_what_cannot_work_is_refused(helm: Helm, sets: list[str], message: str) -> None:
    done = helm.template(sets=sets)
    assert done.returncode != 0, f"{sets} rendered"
    assert message in done.stderr, done.stderr


def test_a_templated_service_name_is_refused(helm: Helm, tmp_path: Path) -> None:
    """The NATS chart can template a name ($tplYaml); the workers' address cannot follow it."""
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump({"nats": {"service": {"name": {"$tplYaml": "{{ .Release.Name }}-bus"}}}}),
        encoding="utf-8",
    )
    done = helm.template(values=[values])
    assert done.returncode != 0
    assert "nats.service.name: give a plain Service name" in done.stderr, done.stderr
