"""The Helm chart in deploy/helm/natsbus, checked with the real helm binary.

`scripts/install_test_tools.py` (run by `make test`) puts helm next to the venv's Python. The
chart is copied to a temporary directory for every module run: its `files/` links are resolved,
and the official NATS chart, which cannot be fetched here, is stood in for by an empty chart of
the same name and version (it renders nothing; our templates only need it to exist). Every
rendered object goes through `kubernetes-validate --strict`; the custom resources (KEDA,
Prometheus Operator) have no schema there and are checked field by field below.
"""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from natsbus.bus.nats.layout import SubjectLayout
from natsbus.bus.nats.options import JetStreamOptions

from helpers.tools import ROOT, find_tool

CHART = ROOT / "deploy" / "helm" / "natsbus"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
ALL_OPTIONS = CHART / "ci" / "all-options-values.yaml"
# The ServiceMonitor instead of the PodMonitor of ALL_OPTIONS (the chart refuses both at once).
SERVICE_MONITOR = CHART / "ci" / "service-monitor-values.yaml"
NATS_REPOSITORY = "https://nats-io.github.io/k8s/helm/charts/"
# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest we can check.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
CUSTOM_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule", "ScaledObject"}
# Values of the official NATS chart (1.x) this chart sets: a misspelt key would be silently
# ignored by that chart, so the ones we pass must be among these.
KNOWN_NATS_CHART_VALUES = {
    "enabled",  # our condition; harmless to the NATS chart
    "fullnameOverride",
    "nameOverride",
    "namespaceOverride",
    "config.cluster.enabled",
    "config.cluster.replicas",
    "config.cluster.port",
    "config.jetstream.enabled",
    "config.jetstream.fileStore.enabled",
    "config.jetstream.fileStore.dir",
    "config.jetstream.fileStore.maxSize",
    "config.jetstream.fileStore.pvc.enabled",
    "config.jetstream.fileStore.pvc.size",
    "config.jetstream.fileStore.pvc.storageClassName",
    "config.jetstream.memoryStore.enabled",
    "config.jetstream.memoryStore.maxSize",
    "config.monitor.enabled",
    "config.monitor.port",
    "config.nats.port",
    "natsBox.enabled",
    "promExporter.enabled",
    "promExporter.podMonitor.enabled",
    # the auth.conf of natsAuth.type=provisioned (tests/deploy/test_deploy_chart_users.py)
    "config.merge.zz-natsbus-users$include",
    "container.patch",
    "podTemplate.patch",
}
FIXTURE_DASHBOARD = {"title": "natsbus test fixture", "uid": "natsbus-fixture", "panels": []}
FIXTURE_RULES = {
    "groups": [
        {
            "name": "natsbus-fixture",
            "rules": [{"alert": "NatsbusFixture", "expr": "vector(1) == 0", "for": "5m"}],
        }
    ]
}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@dataclass
class Render:
    """The objects of one `helm template` run."""

    text: str
    objects: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.objects = [doc for doc in yaml.safe_load_all(self.text) if doc]

    def kinds(self) -> Counter[str]:
        return Counter(obj["kind"] for obj in self.objects)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
        return found[0]


class Helm:
    """`helm` on a temporary copy of the chart."""

    def __init__(self, binary: str, chart: Path) -> None:
        self.binary = binary
        self.chart = chart

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args], capture_output=True, text=True, timeout=120, check=False
        )

    @staticmethod
    def _value_args(values: list[Path] | None, sets: list[str] | None) -> list[str]:
        args: list[str] = []
        for path in values or []:
            args += ["--values", str(path)]
        for item in sets or []:
            args += ["--set-string" if item.startswith("string:") else "--set", item]
        return [a.removeprefix("string:") for a in args]

    def template(
        self,
        values: list[Path] | None = None,
        sets: list[str] | None = None,
        release: str = "r",
        namespace: str = "ns",
        chart: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            "template",
            release,
            str(chart or self.chart),
            "--namespace",
            namespace,
            *self._value_args(values, sets),
        )

    def render(self, *args: Any, **kwargs: Any) -> Render:
        done = self.template(*args, **kwargs)
        assert done.returncode == 0, f"helm template failed:\n{done.stderr}"
        return Render(done.stdout)

    def notes(self, values: list[Path] | None = None, sets: list[str] | None = None) -> str:
        done = self.run(
            "install",
            "r",
            str(self.chart),
            "--namespace",
            "ns",
            "--dry-run=client",
            *self._value_args(values, sets),
        )
        assert done.returncode == 0, f"helm install --dry-run failed:\n{done.stderr}"
        return done.stdout.split("NOTES:", 1)[1]


def copy_chart(destination: Path) -> Path:
    """Copy the chart with its links resolved, plus a stand-in for the NATS dependency.

    While deploy/grafana or deploy/prometheus do not exist yet (they come with the
    observability work), the copy gets a fixture dashboard and rule file in their place, so that
    the templates that pack them can still be exercised.
    """
    target = destination / "natsbus"
    shutil.copytree(CHART, target, symlinks=False, ignore_dangling_symlinks=True)
    for name, fixture, suffix in (
        ("grafana", json.dumps(FIXTURE_DASHBOARD), "json"),
        ("prometheus", yaml.safe_dump(FIXTURE_RULES), "yaml"),
    ):
        folder = target / "files" / name
        if not any(folder.glob(f"*.{suffix}")):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"test-fixture.{suffix}").write_text(fixture, encoding="utf-8")
    (dependency,) = load_yaml(CHART / "Chart.yaml")["dependencies"]
    stub = target / "charts" / "nats"
    stub.mkdir(parents=True)
    (stub / "Chart.yaml").write_text(
        f"apiVersion: v2\nname: nats\nversion: {dependency['version']}\n"
        "description: stand-in for the official NATS chart in tests\n",
        encoding="utf-8",
    )
    return target


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return deployment["spec"]["template"]["spec"]["containers"]


def worker(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in containers(deployment) if c["name"] == "worker"]
    return container


def flag(container: dict[str, Any], name: str) -> str | None:
    """The value of the last `--name VALUE` in the container's args (argparse: last wins)."""
    args = container["args"]
    values = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == name]
    return values[-1] if values else None


def flags(container: dict[str, Any], name: str) -> list[str]:
    args = container["args"]
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == name]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def expected_groups(values_path: Path | None) -> list[dict[str, Any]]:
    """The worker groups as the values describe them, merged over workerDefaults (in Python)."""
    defaults = load_yaml(CHART / "values.yaml")
    values = load_yaml(values_path) if values_path else {}

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in over.items()}}
        return over

    merged = merge(defaults, values)
    channel = merged["channel"]
    groups = []
    for group in merged["workers"]:
        settings = merge(merged["workerDefaults"], group)
        settings.setdefault("workerName", group["name"])
        settings.setdefault("channel", channel)
        groups.append(settings)
    return groups


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


def helm_binary() -> str:
    """The helm binary that `make test` installs, or the test fails saying how to get it."""
    binary = find_tool("helm")
    if binary is None:
        pytest.fail(
            "no helm binary: run `.venv/bin/python scripts/install_test_tools.py` "
            "(`make test` does it)"
        )
    return binary


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm_binary(), copy_chart(tmp_path_factory.mktemp("chart")))


@pytest.fixture(scope="module")
def default_render(helm: Helm) -> Render:
    """The chart's default values: the bundled NATS chart on (rendered by the stand-in)."""
    return helm.render()


@pytest.fixture(scope="module")
def external_render(helm: Helm) -> Render:
    """Default values with an external NATS, as the issue's offline render."""
    return helm.render(sets=["nats.enabled=false", "externalNats.urls[0]=nats://nats.mq:4222"])


@pytest.fixture(scope="module")
def all_render(helm: Helm) -> Render:
    return helm.render(values=[ALL_OPTIONS], release="prod", namespace="workers")


RENDERS = ("default_render", "external_render", "all_render")


# ---------------------------------------------------------------------------------------------
# the dependency on the official NATS chart
# ---------------------------------------------------------------------------------------------


def test_nats_dependency_is_declared_and_pinned() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    (dependency,) = chart["dependencies"]
    assert dependency["name"] == "nats"
    assert dependency["repository"] == NATS_REPOSITORY
    assert dependency["condition"] == "nats.enabled"
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(dependency["version"])), (
        f"pin an exact version, not {dependency['version']!r}"
    )
    assert str(dependency["version"]).startswith("1."), "the values below follow the 1.x chart"


def test_values_passed_to_the_nats_chart() -> None:
    nats = load_yaml(CHART / "values.yaml")["nats"]
    assert nats["enabled"] is True
    config = nats["config"]
    assert config["cluster"] == {"enabled": True, "replicas": 3}
    jetstream = config["jetstream"]
    assert jetstream["enabled"] is True
    assert jetstream["fileStore"]["enabled"] is True
    assert jetstream["fileStore"]["pvc"]["enabled"] is True
    assert jetstream["memoryStore"]["enabled"] is False
    assert config["monitor"]["enabled"] is True  # KEDA reads /jsz there

    def leaves(tree: dict[str, Any], prefix: str = "") -> list[str]:
        out: list[str] = []
        for key, value in tree.items():
            path = f"{prefix}{key}"
            out += leaves(value, f"{path}.") if isinstance(value, dict) else [path]
        return out

    unknown = sorted(set(leaves(nats)) - KNOWN_NATS_CHART_VALUES)
    assert not unknown, f"not values of the NATS chart 1.x: {unknown}"


def test_default_nats_url_and_stream_replicas(default_render: Render) -> None:
    container = worker(default_render.one("Deployment"))
    # the NATS chart names its client Service <release>-nats
    assert flags(container, "--nats-url") == ["nats://r-nats.ns.svc:4222"]
    assert flag(container, "--stream-replicas") == "3"
    assert "--stream-max-consumers" not in container["args"]


@pytest.mark.parametrize(
    ("sets", "release", "url", "replicas"),
    [
        (["nats.config.cluster.enabled=false"], "r", "nats://r-nats.ns.svc:4222", "1"),
        (["nats.config.cluster.replicas=2"], "r", "nats://r-nats.ns.svc:4222", "2"),
        ([], "my-nats", "nats://my-nats.ns.svc:4222", "3"),  # the NATS chart's naming rule
        (["nats.fullnameOverride=bus"], "r", "nats://bus.ns.svc:4222", "3"),
        (
            ["natsTls.enabled=true", "natsTls.existingSecret=t"],
            "r",
            "tls://r-nats.ns.svc:4222",
            "3",
        ),
        (
            ["nats.enabled=false", "externalNats.urls[0]=nats://a:4222"],
            "r",
            "nats://a:4222",
            None,
        ),
        (
            [
                "nats.enabled=false",
                "externalNats.urls[0]=nats://a:4222",
                "jetstream.streamReplicas=3",
            ],
            "r",
            "nats://a:4222",
            "3",
        ),
    ],
)
def test_nats_url_follows_the_values(
    helm: Helm, sets: list[str], release: str, url: str, replicas: str | None
) -> None:
    container = worker(helm.render(sets=sets, release=release).one("Deployment"))
    assert flags(container, "--nats-url") == [url]
    assert flag(container, "--stream-replicas") == replicas


# ---------------------------------------------------------------------------------------------
# lint, render, validate
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda p: p.name if p else "defaults")
def test_helm_lint_strict(helm: Helm, values: Path | None) -> None:
    args = ["lint", "--strict", str(helm.chart)]
    if values is not None:
        args += ["--values", str(values)]
    done = helm.run(*args)
    assert done.returncode == 0, done.stdout + done.stderr


def kubernetes_validate(render: Render, tmp_path: Path) -> str:
    """Run kubernetes-validate --strict on a render; returns its output (warnings included)."""
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(render.text, encoding="utf-8")
    validate = find_tool("kubernetes-validate")
    assert validate, "kubernetes-validate is missing: it is in the dev extra"
    versions = [arg for version in KUBERNETES_VERSIONS for arg in ("-k", version)]
    done = subprocess.run(
        [validate, "--strict", "--quiet", *versions, str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "ERROR" not in output, output
    return output


@pytest.mark.parametrize("render_name", RENDERS)
def test_every_object_passes_kubernetes_validate_strict(
    request: pytest.FixtureRequest, tmp_path: Path, render_name: str
) -> None:
    render: Render = request.getfixturevalue(render_name)
    output = kubernetes_validate(render, tmp_path)
    # "no schema" is only a warning: accept it for the custom resources alone, so that a core
    # object with a misspelt apiVersion cannot slip through as a warning.
    for line in output.splitlines():
        if line.startswith("WARN"):
            kind = re.search(r"for kind (\w+)", line)
            assert kind and kind.group(1) in CUSTOM_KINDS, line
    validated = {obj["kind"] for obj in render.objects} - CUSTOM_KINDS
    assert validated, "nothing was validated"


def test_default_render_summary(default_render: Render, external_render: Render) -> None:
    expected = {"Deployment": 1, "PodDisruptionBudget": 1, "ServiceAccount": 1}
    # the bundled NATS always includes the (here empty) auth.conf of natsAuth.type=provisioned
    assert dict(default_render.kinds()) == {**expected, "Secret": 1}
    assert dict(external_render.kinds()) == expected


def test_all_options_render_summary(helm: Helm, all_render: Render) -> None:
    assert dict(all_render.kinds()) == {
        "ConfigMap": len(list((helm.chart / "files" / "grafana").glob("*.json"))),
        "Deployment": 3,
        "NetworkPolicy": 1,
        "PodDisruptionBudget": 3,
        "PodMonitor": 1,
        "PrometheusRule": 1,
        "ScaledObject": 2,
        "Secret": 1,
        "ServiceAccount": 1,
    }


def test_every_object_is_in_the_release_namespace(all_render: Render) -> None:
    for obj in all_render.objects:
        expected = "monitoring" if obj["kind"] == "ConfigMap" else "workers"
        assert obj["metadata"]["namespace"] == expected, obj["metadata"]


# ---------------------------------------------------------------------------------------------
# the worker Deployments
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("render_name", RENDERS)
def test_probes_point_at_the_port_the_process_serves(
    request: pytest.FixtureRequest, render_name: str
) -> None:
    render: Render = request.getfixturevalue(render_name)
    for deployment in render.of("Deployment"):
        container = worker(deployment)
        served = int(flag(container, "--http-port") or 0)  # what natsbus run listens on
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": served}
        for probe, path in (
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ):
            get = container[probe]["httpGet"]
            assert get["path"] == path, probe
            port = get["port"]
            assert (ports[port] if isinstance(port, str) else port) == served, probe
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        if "prometheus.io/port" in annotations:
            assert int(annotations["prometheus.io/port"]) == served
            assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("values", [None, ALL_OPTIONS], ids=["defaults", "all-options"])
def test_termination_grace_period_covers_the_drain(helm: Helm, values: Path | None) -> None:
    render = helm.render(values=[values] if values else None)
    groups = {g["name"]: g for g in expected_groups(values)}
    for deployment in render.of("Deployment"):
        group = groups[deployment["metadata"]["labels"]["natsbus.io/worker-group"]]
        spec = deployment["spec"]["template"]["spec"]
        container = worker(deployment)
        assert float(flag(container, "--grace-period") or -1) == group["gracePeriodSeconds"]
        pre_stop = group["preStopSleepSeconds"]
        assert spec["terminationGracePeriodSeconds"] == (
            pre_stop + math.ceil(group["gracePeriodSeconds"]) + group["shutdownMarginSeconds"]
        )
        assert spec["terminationGracePeriodSeconds"] > group["gracePeriodSeconds"]
        if pre_stop:
            assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": pre_stop}}
        else:
            assert "lifecycle" not in container


def test_all_options_grace_period(all_render: Render) -> None:
    spec = all_render.one("Deployment", "bus-translator")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 5 + 120 + 20


@pytest.mark.parametrize("render_name", RENDERS)
def test_pods_are_locked_down(request: pytest.FixtureRequest, render_name: str) -> None:
    render: Render = request.getfixturevalue(render_name)
    for deployment in render.of("Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] != 0
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in containers(deployment):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["privileged"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert "add" not in context["capabilities"]
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(requests), "the scheduler needs requests"
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts, "a read-only root needs a writable /tmp"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes["tmp"]


@pytest.mark.parametrize("render_name", RENDERS)
def test_each_group_has_its_deployment_and_disruption_budget(
    request: pytest.FixtureRequest, render_name: str
) -> None:
    render: Render = request.getfixturevalue(render_name)
    budgets = render.of("PodDisruptionBudget")
    for deployment in render.of("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector_matches(deployment["spec"]["selector"]["matchLabels"], labels)
        matching = [
            b for b in budgets if selector_matches(b["spec"]["selector"]["matchLabels"], labels)
        ]
        assert len(matching) == 1, deployment["metadata"]["name"]
        # a budget must not reach into another group's pods
        assert matching[0]["spec"]["selector"] == deployment["spec"]["selector"]
    assert len(budgets) == len(render.of("Deployment"))


def test_worker_arguments(all_render: Render) -> None:
    groups = {g["name"]: g for g in expected_groups(ALL_OPTIONS)}
    for deployment in all_render.of("Deployment"):
        group = groups[deployment["metadata"]["labels"]["natsbus.io/worker-group"]]
        container = worker(deployment)
        assert container["args"][0] == group["module"]
        assert flag(container, "--name") == group["workerName"]
        assert flag(container, "--channel") == group["channel"]
        assert flags(container, "--nats-url") == load_yaml(ALL_OPTIONS)["externalNats"]["urls"]
        assert flag(container, "--runner-name") == "$(POD_NAME)"
        assert "POD_NAME" in env_of(container)
        assert flag(container, "--stream-replicas") == "3"
        assert flag(container, "--stream-max-consumers") == "5000"
    embedder = worker(all_render.one("Deployment", "bus-embedder"))
    assert embedder["image"] == (
        "registry.example.com/acme/embedder@sha256:"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )
    assert embedder["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert embedder["resources"]["requests"]["cpu"] == "250m"  # merged from workerDefaults
    assert flag(embedder, "--log-level") == "INFO"  # extraArgs come last and win
    translator = worker(all_render.one("Deployment", "bus-translator"))
    assert translator["image"] == "registry.example.com/acme/natsbus-workers:2024.06.1"
    assert {"APP_MODE", "APP_API_KEY"} <= set(env_of(translator))


# Options of `natsbus run` the chart passes that the CLI does not have yet (see docs/deploy.md);
# empty this set when natsbus/cli.py gains them.
PENDING_CLI_OPTIONS: set[str] = set()


@pytest.mark.parametrize("render_name", RENDERS)
def test_natsbus_run_accepts_the_arguments(
    request: pytest.FixtureRequest, render_name: str
) -> None:
    from natsbus.cli import _parser  # the parser `natsbus run` uses

    parser = _parser()
    known = {
        option
        for action in parser._subparsers._group_actions[0].choices["run"]._actions  # type: ignore[union-attr]
        for option in action.option_strings
    }
    render: Render = request.getfixturevalue(render_name)
    for deployment in render.of("Deployment"):
        args = list(worker(deployment)["args"])
        used = {arg for arg in args if arg.startswith("--")}
        assert used - known <= PENDING_CLI_OPTIONS, used - known
        # drop the pending options (and their values) and let argparse read the rest
        kept: list[str] = []
        skip = False
        for arg in args:
            if skip:
                skip = False
            elif arg in PENDING_CLI_OPTIONS:
                skip = True
            else:
                kept.append(arg)
        parsed = parser.parse_args(["run", *kept])
        assert parsed.target == args[0]
        assert parsed.http_port == int(flag(worker(deployment), "--http-port") or 0)


def test_pending_cli_options_are_still_pending() -> None:
    from natsbus.cli import _parser

    run = _parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    known = {option for action in run._actions for option in action.option_strings}
    assert not PENDING_CLI_OPTIONS & known, "natsbus run has them now: update PENDING_CLI_OPTIONS"


def test_tracing_exports_to_the_collector(all_render: Render) -> None:
    for deployment in all_render.of("Deployment"):
        container = worker(deployment)
        assert flag(container, "--otel") == "otlp"
        endpoint = env_of(container)["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"]
        assert endpoint == "http://otel-collector.observability:4318"


def test_replicas_are_left_to_keda_when_autoscaling(all_render: Render) -> None:
    assert all_render.one("Deployment", "bus-embedder")["spec"]["replicas"] == 4
    for name in ("bus-translator", "bus-summarizer"):
        assert "replicas" not in all_render.one("Deployment", name)["spec"]


# ---------------------------------------------------------------------------------------------
# credentials and TLS
# ---------------------------------------------------------------------------------------------


def test_creds_secret_is_made_and_mounted(all_render: Render) -> None:
    values = load_yaml(ALL_OPTIONS)
    secret = all_render.one("Secret")
    assert secret["metadata"]["name"] == "bus-nats-auth"
    stored = base64.b64decode(secret["data"]["nats.creds"]).decode()
    assert stored == values["natsAuth"]["creds"]
    for deployment in all_render.of("Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        container = worker(deployment)
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["nats-auth"]["secret"]["secretName"] == "bus-nats-auth"
        (item,) = volumes["nats-auth"]["secret"]["items"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "nats-auth")
        assert mount["readOnly"] is True
        assert flag(container, "--nats-creds") == f"{mount['mountPath']}/{item['path']}"
        assert item["key"] == "nats.creds"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/nats-auth"])
        # nothing secret travels in the pod spec itself
        assert values["natsAuth"]["creds"].splitlines()[1] not in json.dumps(deployment)


def test_tls_secret_is_mounted(all_render: Render) -> None:
    for deployment in all_render.of("Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        container = worker(deployment)
        volume = next(v for v in spec["volumes"] if v["name"] == "nats-tls")
        assert volume["secret"]["secretName"] == "natsbus-client-tls"
        keys = {item["key"] for item in volume["secret"]["items"]}
        assert keys == {"ca.crt", "tls.crt", "tls.key"}
        mount = next(m for m in container["volumeMounts"] if m["name"] == "nats-tls")
        for option, key in (
            ("--tls-ca", "ca.crt"),
            ("--tls-cert", "tls.crt"),
            ("--tls-key", "tls.key"),
        ):
            assert flag(container, option) == f"{mount['mountPath']}/{key}"
        assert flag(container, "--tls-hostname") == "nats.messaging.svc"


def test_tls_without_client_certificate_mounts_only_the_ca(helm: Helm) -> None:
    render = helm.render(sets=["natsTls.enabled=true", "natsTls.existingSecret=ca-only"])
    container = worker(render.one("Deployment"))
    assert flag(container, "--tls-ca") == "/etc/natsbus/nats-tls/ca.crt"
    assert flag(container, "--tls-cert") is None
    volume = next(
        v
        for v in render.one("Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "nats-tls"
    )
    assert [item["key"] for item in volume["secret"]["items"]] == ["ca.crt"]


@pytest.mark.parametrize(
    ("sets", "variables"),
    [
        (
            ["natsAuth.type=userPassword", "natsAuth.user=alice", "natsAuth.password=s3cret"],
            {
                "NATSBUS_NATS_USER": ("user", "alice"),
                "NATSBUS_NATS_PASSWORD": ("password", "s3cret"),
            },
        ),
        (
            ["natsAuth.type=token", "natsAuth.token=t0ken"],
            {"NATSBUS_NATS_TOKEN": ("token", "t0ken")},
        ),
    ],
    ids=["userPassword", "token"],
)
def test_secret_values_reach_the_environment_by_reference(
    helm: Helm, sets: list[str], variables: dict[str, tuple[str, str]]
) -> None:
    render = helm.render(sets=sets)
    secret = render.one("Secret", "r-natsbus-nats-auth")
    environment = env_of(worker(render.one("Deployment")))
    for variable, (key, value) in variables.items():
        reference = environment[variable]["valueFrom"]["secretKeyRef"]
        assert reference == {"name": secret["metadata"]["name"], "key": key}
        assert base64.b64decode(secret["data"][key]).decode() == value
        assert value not in json.dumps(render.one("Deployment"))


def test_existing_secret_is_used_as_is(helm: Helm) -> None:
    render = helm.render(
        sets=[
            "natsAuth.type=nkey",
            "natsAuth.existingSecret=ops-nats",
            "natsAuth.secretKeys.nkeySeed=seed.nk",
        ]
    )
    # only the bundled NATS's auth.conf (tests/deploy/test_deploy_chart_users.py)
    assert [s["metadata"]["name"] for s in render.of("Secret")] == ["r-natsbus-nats-server-auth"]
    deployment = render.one("Deployment")
    volume = next(
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "nats-auth"
    )
    assert volume["secret"]["secretName"] == "ops-nats"
    assert flag(worker(deployment), "--nats-nkey-seed") == "/etc/natsbus/nats-auth/seed.nk"
    assert "checksum/nats-auth" not in deployment["spec"]["template"]["metadata"]["annotations"]


def test_changing_credentials_rolls_the_pods(helm: Helm) -> None:
    def checksum(token: str) -> str:
        render = helm.render(sets=["natsAuth.type=token", f"natsAuth.token={token}"])
        return render.one("Deployment")["spec"]["template"]["metadata"]["annotations"][
            "checksum/nats-auth"
        ]

    assert checksum("one") != checksum("two")


# ---------------------------------------------------------------------------------------------
# KEDA: the consumer the bus really creates
# ---------------------------------------------------------------------------------------------


def test_scaled_objects_name_the_stream_and_consumer_the_bus_creates(all_render: Render) -> None:
    groups = {g["name"]: g for g in expected_groups(ALL_OPTIONS)}
    deployments = {d["metadata"]["name"] for d in all_render.of("Deployment")}
    scaled = all_render.of("ScaledObject")
    assert {s["metadata"]["labels"]["natsbus.io/worker-group"] for s in scaled} == {
        name for name, g in groups.items() if g["autoscaling"]["enabled"]
    }
    for scaled_object in scaled:
        assert scaled_object["apiVersion"] == "keda.sh/v1alpha1"
        group = groups[scaled_object["metadata"]["labels"]["natsbus.io/worker-group"]]
        spec = scaled_object["spec"]
        assert spec["scaleTargetRef"]["kind"] == "Deployment"
        assert spec["scaleTargetRef"]["name"] in deployments
        assert spec["minReplicaCount"] == group["autoscaling"]["minReplicas"]
        assert spec["maxReplicaCount"] == group["autoscaling"]["maxReplicas"]
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "nats-jetstream"
        metadata = trigger["metadata"]
        assert all(isinstance(value, str) for value in metadata.values()), metadata
        layout = SubjectLayout(group["channel"])
        assert metadata["stream"] == layout.request_stream
        assert layout.request_stream == f"{JetStreamOptions().stream}_REQUESTS"
        assert metadata["consumer"] == layout.job_consumer(group["workerName"])
        assert metadata["natsServerMonitoringEndpoint"] == (
            "nats-headless.messaging.svc.cluster.local:8222"
        )
        assert metadata["lagThreshold"] == str(group["autoscaling"]["lagThreshold"])
        assert metadata["useHttps"] == "true"
        assert metadata["account"] == "ACCOUNTPUBLICKEYPLACEHOLDER"


def test_keda_with_the_bundled_nats_reads_its_headless_service(helm: Helm) -> None:
    render = helm.render(
        sets=[
            "workers[0].name=writer",
            "workers[0].module=m:W",
            "workers[0].autoscaling.enabled=true",
        ]
    )
    (trigger,) = render.one("ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["natsServerMonitoringEndpoint"] == (
        "r-nats-headless.ns.svc.cluster.local:8222"
    )
    assert trigger["metadata"]["account"] == "$G"


TRICKY_NAMES = [
    ("default", "writer"),
    ("session 42/eu", "translator.v2 (fr)"),
    ("a.b", "c*d>e"),
    ("tenant", "%41%zz"),
    ("ünïcödé", "名前のワーカー"),
    ("x", "e\u0301-combining"),
    ("numbers", "½ⅷ٣"),
    ("emoji", "🚀 worker"),
    ("long", "w" * 100),
    ("é" * 30, "ü" * 30),  # two-byte characters across the 48-character cut
    ("under_score-dash", "-_-"),
]


def test_chart_job_consumer_matches_subject_layout(helm: Helm, tmp_path: Path) -> None:
    values = {
        "workers": [
            {"name": f"g{i}", "module": "m:W", "channel": channel, "workerName": name}
            for i, (channel, name) in enumerate(TRICKY_NAMES)
        ]
    }
    path = tmp_path / "tricky-values.yaml"
    path.write_text(yaml.safe_dump(values, allow_unicode=True), encoding="utf-8")
    render = helm.render(values=[path])
    for i, (channel, name) in enumerate(TRICKY_NAMES):
        deployment = render.one("Deployment", f"r-natsbus-g{i}")
        annotations = deployment["metadata"]["annotations"]
        assert annotations["natsbus.io/job-consumer"] == SubjectLayout(channel).job_consumer(
            name
        ), (
            channel,
            name,
        )
        assert annotations["natsbus.io/job-stream"] == SubjectLayout(channel).request_stream
        assert flag(worker(deployment), "--name") == name
        assert flag(worker(deployment), "--channel") == channel


# ---------------------------------------------------------------------------------------------
# Prometheus Operator, Grafana, NetworkPolicy
# ---------------------------------------------------------------------------------------------


def test_pod_monitor_scrapes_the_worker_pods(all_render: Render) -> None:
    monitor = all_render.one("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]["matchLabels"]
    for deployment in all_render.of("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector_matches(selector, labels)
        ports = {p["name"] for p in worker(deployment)["ports"]}
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] in ports
        assert endpoint["path"] == "/metrics"
        assert re.fullmatch(r"\d+(ms|s|m|h)", endpoint["interval"])
    assert set(monitor["spec"]) <= {"selector", "podMetricsEndpoints", "podTargetLabels"}


def test_service_monitor_finds_the_worker_pods(helm: Helm, tmp_path: Path) -> None:
    render = helm.render(values=[SERVICE_MONITOR])
    kubernetes_validate(render, tmp_path)
    assert "PodMonitor" not in render.kinds()
    monitor = render.one("ServiceMonitor")
    service = render.one("Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert selector_matches(
        monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert service["spec"]["clusterIP"] == "None"
    assert len(render.of("Deployment")) == 2
    for deployment in render.of("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector_matches(service["spec"]["selector"], labels)
        port = next(p for p in service["spec"]["ports"] if p["name"] == "http")
        assert port["targetPort"] in {p["name"] for p in worker(deployment)["ports"]}


def test_prometheus_rule_carries_every_alert_rule_file(helm: Helm, all_render: Render) -> None:
    rule = all_render.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    expected = []
    for path in sorted((helm.chart / "files" / "prometheus").glob("*.yaml")):
        expected += load_yaml(path)["groups"]
    assert rule["spec"]["groups"] == expected
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for item in group["rules"]:
            assert ("alert" in item) != ("record" in item), item
            assert isinstance(item["expr"], str) and item["expr"].strip()


def test_dashboards_are_config_maps_for_the_grafana_sidecar(helm: Helm, all_render: Render) -> None:
    files = sorted((helm.chart / "files" / "grafana").glob("*.json"))
    maps = all_render.of("ConfigMap")
    assert len(maps) == len(files) >= 1
    packed = {}
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"]["grafana_folder"] == "natsbus"
        assert config_map["metadata"]["namespace"] == "monitoring"
        packed.update(config_map["data"])
    assert set(packed) == {path.name for path in files}
    for path in files:
        assert json.loads(packed[path.name]) == json.loads(path.read_text(encoding="utf-8"))


def test_network_policy(all_render: Render) -> None:
    policy = all_render.one("NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    for deployment in all_render.of("Deployment"):
        assert selector_matches(
            spec["podSelector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"]
        )
    (ingress,) = spec["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    egress_ports = [(p["port"], p["protocol"]) for rule in spec["egress"] for p in rule["ports"]]
    assert (53, "UDP") in egress_ports and (53, "TCP") in egress_ports
    assert (4222, "TCP") in egress_ports
    assert (443, "TCP") in egress_ports  # extraEgress


def test_network_policy_with_bundled_nats_targets_its_pods(helm: Helm) -> None:
    policy = helm.render(sets=["networkPolicy.enabled=true"]).one("NetworkPolicy")
    nats_rule = next(r for r in policy["spec"]["egress"] if r["ports"][0]["port"] == 4222)
    assert nats_rule["to"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/instance": "r",
                    "app.kubernetes.io/component": "nats",
                }
            }
        }
    ]


# ---------------------------------------------------------------------------------------------
# NOTES.txt
# ---------------------------------------------------------------------------------------------


def test_notes_tell_the_operator_what_was_installed(helm: Helm) -> None:
    notes = helm.notes()
    assert "nats://r-nats.ns.svc:4222" in notes
    assert "r-natsbus-writer" in notes
    assert SubjectLayout("default").job_consumer("writer") in notes
    assert "kubectl -n ns rollout status deployment/r-natsbus-writer" in notes
    assert "terminationGracePeriodSeconds 45" in notes


def test_notes_with_every_option(helm: Helm) -> None:
    notes = helm.notes(values=[ALL_OPTIONS])
    for text in (
        "creds",
        "natsbus-client-tls",
        "PodMonitor",
        "PrometheusRule",
        "grafana_dashboard=1",
        "KEDA",
    ):
        assert text in notes, text


# ---------------------------------------------------------------------------------------------
# bad values fail at install, with a message that says what is wrong
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ["workers[0].name=writer", "workers[0].module=m:W", "workers[0].replicas=two"],
            "/workers/0/replicas",
        ),
        (["workerDefaults.gracePeriodSeconds=-1"], "/workerDefaults/gracePeriodSeconds"),
        (["string:httpPort=8080"], "/httpPort"),
        (["workerz[0].name=a"], "'workerz' not allowed"),
        (
            ["workers[0].name=writer", "workers[0].module=m:W", "workers[0].replica=3"],
            "'replica' not allowed",
        ),
        (["workers[0].name=writer", "workers[0].module=app.translate"], "/workers/0/module"),
        (["workers[0].name=Bad_Name", "workers[0].module=m:W"], "/workers/0/name"),
        (["natsAuth.type=password"], "/natsAuth/type"),
        (["nats.enabled=false"], "externalNats"),
        (["nats.enabled=false", "externalNats.urls[0]=http://x:4222"], "/externalNats/urls/0"),
        (["jetstream.streamReplicas=0"], "/jetstream/streamReplicas"),
        (["jetstream.maxConsumers=0"], "/jetstream/maxConsumers"),
        (["workerDefaults.autoscaling.enabled=yes"], "/workerDefaults/autoscaling/enabled"),
        (["image.digest=sha256:abc"], "/image/digest"),
        (
            ["workers[0].name=writer", "workers[0].module=m:W", "workers[0].channel=a\tb"],
            "/workers/0/channel",
        ),
        (["workers=null"], "workers"),
        (
            [
                "workers[0].name=writer",
                "workers[0].module=m:W",
                "workers[1].name=writer",
                "workers[1].module=m:W",
            ],
            'the worker group name "writer" is used twice',
        ),
        (["natsAuth.type=creds"], "natsAuth.creds: give the .creds file"),
        (["natsAuth.type=userPassword", "natsAuth.user=a"], "natsAuth.password"),
        (["natsTls.enabled=true"], "natsTls.existingSecret"),
        (["tracing.exporter=otlp"], "tracing.otlpEndpoint"),
        (["tracing.exporter=jaeger"], "/tracing/exporter"),
        (
            [
                "workerDefaults.autoscaling.enabled=true",
                "workerDefaults.autoscaling.minReplicas=5",
                "workerDefaults.autoscaling.maxReplicas=2",
            ],
            "minReplicas (5) is above autoscaling.maxReplicas (2)",
        ),
        (
            [
                "nats.enabled=false",
                "externalNats.urls[0]=nats://a:4222",
                "workerDefaults.autoscaling.enabled=true",
            ],
            "externalNats.monitoringEndpoint",
        ),
        (
            [
                "fullnameOverride=a-very-long-release-name-that-goes-on-and-on",
                "workers[0].name=and-a-long-group-name-too",
                "workers[0].module=m:W",
            ],
            "longer than 63",
        ),
    ],
)
def test_bad_values_fail_with_a_clear_message(helm: Helm, sets: list[str], message: str) -> None:
    done = helm.template(sets=sets)
    assert done.returncode != 0, f"{sets} rendered:\n{done.stdout[:2000]}"
    assert message in done.stderr, done.stderr


def test_schema_of_a_group_accepts_every_default() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    defaults = schema["properties"]["workerDefaults"]
    group = schema["properties"]["workers"]["items"]
    assert defaults["additionalProperties"] is False and group["additionalProperties"] is False
    assert set(group["properties"]) == set(defaults["properties"]) | {
        "name",
        "module",
        "workerName",
        "channel",
    }
    for key, rule in defaults["properties"].items():
        assert group["properties"][key] == rule, key
    values = load_yaml(CHART / "values.yaml")
    assert set(values["workerDefaults"]) == set(defaults["properties"])
    assert set(values) == set(schema["properties"]) - {"global"}


def test_a_broken_values_file_fails_lint(helm: Helm, tmp_path: Path) -> None:
    broken = tmp_path / "broken-values.yaml"
    broken.write_text(
        "workers:\n  - name: writer\n    module: m:W\n    replicas: '3'\n", encoding="utf-8"
    )
    done = helm.run("lint", "--strict", str(helm.chart), "--values", str(broken))
    assert done.returncode != 0
    assert "/workers/0/replicas" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("template", "old", "new"),
    [
        # a template that does not parse
        ("deployment.yaml", "{{- end }}\n", "{{- end }\n"),
        # a misspelt field: only strict schema validation notices
        ("deployment.yaml", "containerPort:", "containerport:"),
        # a misspelt value: renders an empty port
        (
            "deployment.yaml",
            "containerPort: {{ $root.Values.httpPort }}",
            "containerPort: {{ $root.Values.httpPrt }}",
        ),
    ],
    ids=["syntax", "field-name", "value-name"],
)
def test_a_broken_template_is_caught(
    helm: Helm, tmp_path: Path, template: str, old: str, new: str
) -> None:
    """The checks above do catch a broken chart: break a copy and run them."""
    broken = copy_chart(tmp_path)
    path = broken / "templates" / template
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    done = helm.template(chart=broken)
    if done.returncode != 0:
        return  # helm itself refused it
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(done.stdout, encoding="utf-8")
    validate = find_tool("kubernetes-validate")
    assert validate
    checked = subprocess.run(
        [validate, "--strict", "--quiet", str(manifest)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode != 0, checked.stdout
