"""NATS users per worker group (`natsAuth.type: provisioned`), checked with the real helm binary.

The chart makes one NATS user per worker group (and per `natsAuth.provisioned.clients` entry)
whose permissions are exactly what `natsbus.permissions(...)` generates, keeps each password in
a chart-made Secret the group's pods read, and writes the server's side (bcrypt hashes and
permissions) to `auth.conf` in a Secret of its own. The checks: the rendered permissions equal
the Python function's item for item; each group's pods get their own user; bad names fail the
render; an upgrade keeps the passwords and hashes (against a fake Kubernetes API, so that
Helm's `lookup` sees the Secret); and, on a real nats-server that includes the rendered
`auth.conf`, each group's pod (the bus `natsbus run` makes from its rendered arguments and
Secret) answers a job of a requester logged in as a rendered client user.

The official NATS chart cannot be fetched here: the stand-in of `copy_chart` gets one template
that renders, in the NATS chart's context, the Secret name the `$tplYaml` of our `nats:` values
gives, so that the wiring (include, mount, volume) is checked as far as it can be.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import posixpath
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import nats
import pytest
import yaml
from test_deploy_chart import (
    CHART,
    Helm,
    Render,
    copy_chart,
    env_of,
    helm_binary,
    kubernetes_validate,
    load_yaml,
    worker,
)

from natsbus import permissions
from natsbus.bus import WorkerBus
from natsbus.bus.nats import NatsBus, NatsConnectOptions
from natsbus.testing import NatsServer

from helpers.workers import Requester, Tool, running, within

RELEASE, NAMESPACE = "r", "ns"
CREDENTIALS = "r-natsbus-nats-auth"  # natsbus.authSecretName
SERVER_AUTH = "r-natsbus-nats-server-auth"  # natsbus.serverAuthSecretName
EXTERNAL = ["nats.enabled=false", "externalNats.urls[0]=nats://nats.example:4222"]
# Two groups, one on a channel of its own with a worker name that is not the group name, and
# two requesters outside the chart, one per channel.
VALUES_FILE = CHART / "ci" / "provisioned-users-values.yaml"
VALUES: dict[str, Any] = load_yaml(VALUES_FILE)
# (user suffix, channel, names, role) of each user VALUES makes.
EXPECTED = [
    ("writer", "shop", ["writer"], "runner"),
    ("translator", "eu_2", ["translator_v2"], "runner"),
    ("api", "shop", ["api"], "requester"),
    ("api-eu", "eu_2", ["api-eu"], "requester"),
]
# Renders the Secret name our `nats:` values give the NATS chart ($tplYaml), in its context.
WIRING_PROBE = """\
{{- $volume := (index .Values.podTemplate.patch 0).value }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: nats-wiring-probe
data:
  secretName: {{ tpl (get $volume.secret.secretName "$tplYaml") $ | quote }}
"""


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def write_values(tmp_path: Path, values: dict[str, Any], name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def secret_data(render: Render, name: str) -> dict[str, str]:
    secret = render.one("Secret", name)
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def auth_conf(render: Render) -> str:
    return secret_data(render, SERVER_AUTH)["auth.conf"]


def parse_auth_conf(text: str) -> dict[str, Any]:
    """auth.conf is comment lines and one JSON object (NATS configuration accepts JSON)."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def server_users(render: Render) -> dict[str, dict[str, Any]]:
    users = parse_auth_conf(auth_conf(render))["authorization"]["users"]
    by_name = {user["user"]: user for user in users}
    assert len(by_name) == len(users), "a user name is there twice"
    return by_name


def bcrypt_check(hash_: str, password: str) -> str:
    return hashlib.sha256(f"{hash_}\0{password}".encode()).hexdigest()


class FakeKubernetes:
    """Just enough of a Kubernetes API for `helm template --dry-run=server`: discovery, and GET
    of the objects the chart renders (404 unless put in `objects`), so that `lookup` works."""

    RESOURCES: ClassVar[dict[str, list[tuple[str, str]]]] = {
        "v1": [("secrets", "Secret"), ("serviceaccounts", "ServiceAccount")],
        "apps/v1": [("deployments", "Deployment")],
        "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget")],
    }

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.lookups: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                code, body = fake.answer(self.path.split("?", 1)[0])
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def put(self, obj: dict[str, Any]) -> None:
        """Store an object as `helm install` left it (Helm checks that it owns what exists)."""
        obj = json.loads(json.dumps(obj))
        metadata = obj["metadata"]
        metadata.setdefault("annotations", {}).update(
            {"meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": NAMESPACE}
        )
        self.objects[(obj["kind"], metadata["namespace"], metadata["name"])] = obj

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        if path == "/version":
            return 200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/apis":
            groups = [gv.split("/")[0] for gv in self.RESOURCES if "/" in gv]
            return 200, {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": group,
                        "versions": [{"groupVersion": f"{group}/v1", "version": "v1"}],
                        "preferredVersion": {"groupVersion": f"{group}/v1", "version": "v1"},
                    }
                    for group in groups
                ],
            }
        for group_version, resources in self.RESOURCES.items():
            base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
            if path == base:
                return 200, {
                    "kind": "APIResourceList",
                    "groupVersion": group_version,
                    "resources": [
                        {"name": plural, "namespaced": True, "kind": kind, "verbs": ["get"]}
                        for plural, kind in resources
                    ],
                }
            for plural, kind in resources:
                prefix = f"{base}/namespaces/"
                if path.startswith(prefix) and f"/{plural}/" in path:
                    namespace, _, name = path.removeprefix(prefix).split("/", 2)
                    if kind == "Secret":
                        self.lookups.append(name)
                    found = self.objects.get((kind, namespace, name))
                    if found is not None:
                        return 200, found
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def render_against(
    helm: Helm, kube: FakeKubernetes, tmp_path: Path, values: Path, sets: list[str] | None = None
) -> Render:
    """`helm template --dry-run=server` against the fake API (Helm's `lookup` reads it)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": kube.url}}],
                "users": [{"name": "fake", "user": {}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        ),
        encoding="utf-8",
    )
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),  # kubectl's discovery cache goes to ~/.kube
        "KUBECONFIG": str(kubeconfig),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    command = [helm.binary, "template", RELEASE, str(helm.chart), "--namespace", NAMESPACE]
    command += [*Helm._value_args([values], sets), "--dry-run=server"]
    command += ["--disable-openapi-validation"]  # the fake API serves no OpenAPI documents
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environment,
    )
    assert done.returncode == 0, f"helm template --dry-run=server failed:\n{done.stderr}"
    return Render(done.stdout)


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = helm_binary()
    chart = copy_chart(tmp_path_factory.mktemp("chart"))
    templates = chart / "charts" / "nats" / "templates"
    templates.mkdir()
    (templates / "wiring-probe.yaml").write_text(WIRING_PROBE, encoding="utf-8")
    return Helm(binary, chart)


@pytest.fixture(scope="module")
def values_file() -> Path:
    return VALUES_FILE


@pytest.fixture(scope="module")
def external(helm: Helm, values_file: Path) -> Render:
    """VALUES with a NATS you already run."""
    return helm.render(values=[values_file], sets=EXTERNAL, release=RELEASE, namespace=NAMESPACE)


@pytest.fixture(scope="module")
def bundled(helm: Helm, values_file: Path) -> Render:
    """VALUES with the bundled NATS (rendered by the stand-in and its probe)."""
    return helm.render(values=[values_file], release=RELEASE, namespace=NAMESPACE)


@pytest.fixture
def kube() -> Iterator[FakeKubernetes]:
    fake = FakeKubernetes()
    try:
        yield fake
    finally:
        fake.close()


# ---------------------------------------------------------------------------------------------
# the users and their permissions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("render_name", ["external", "bundled"])
def test_each_user_has_exactly_the_generated_permissions(
    request: pytest.FixtureRequest, render_name: str
) -> None:
    render: Render = request.getfixturevalue(render_name)
    users = server_users(render)
    assert set(users) == {f"r-natsbus-{name}" for name, *_ in EXPECTED}
    for name, channel, names, role in EXPECTED:
        user = users[f"r-natsbus-{name}"]
        assert set(user) == {"user", "password", "permissions"}
        generated = permissions(channel=channel, names=names, role=role)
        # item for item, in the same order (the job consumers' sha256 included)
        assert user["permissions"] == generated.as_dict(), name
        assert user["password"].startswith("$2a$"), "only a bcrypt hash is in the server's config"


def test_the_permission_template_matches_python_for_every_role(helm: Helm, tmp_path: Path) -> None:
    clients = [
        {"name": "req", "role": "requester"},
        {"name": "multi", "role": "worker", "names": ["zeta", "alpha", "zeta", "m-1"]},
        {"name": "ops", "role": "runner", "names": ["a_b", "A-b", "9"], "channel": "C-1"},
        {"name": "watch", "role": "observer"},
        {"name": "watch-named", "role": "observer", "names": ["ignored"], "channel": "x_y"},
    ]
    values = {**VALUES, "natsAuth": {"type": "provisioned", "provisioned": {"clients": clients}}}
    render = helm.render(values=[write_values(tmp_path, values)], sets=EXTERNAL)
    users = server_users(render)
    for client in clients:
        role = client["role"]
        names = client.get("names", [] if role == "observer" else [client["name"]])
        generated = permissions(
            channel=client.get("channel", "shop"), names=names, role=role
        ).as_dict()
        assert users[f"r-natsbus-{client['name']}"]["permissions"] == generated, client


def test_each_group_pods_get_their_own_user_from_the_secret(external: Render) -> None:
    credentials = secret_data(external, CREDENTIALS)
    users = server_users(external)
    passwords = set()
    for name, *_ in EXPECTED:
        user, password = credentials[f"{name}.user"], credentials[f"{name}.password"]
        assert user == f"r-natsbus-{name}" and user in users
        assert len(password) == 32 and password.isalnum()  # randAlphaNum 32
        passwords.add(password)
        hash_ = credentials[f"{name}.bcrypt"]
        assert users[user]["password"] == hash_
        assert credentials[f"{name}.bcrypt-check"] == bcrypt_check(hash_, password)
    assert len(passwords) == len(EXPECTED), "every user has a password of its own"
    checksums = set()
    for group in VALUES["workers"]:
        deployment = external.one("Deployment", f"r-natsbus-{group['name']}")
        environment = env_of(worker(deployment))
        for variable, key in (("NATSBUS_NATS_USER", "user"), ("NATSBUS_NATS_PASSWORD", "password")):
            reference = environment[variable]["valueFrom"]["secretKeyRef"]
            assert reference == {"name": CREDENTIALS, "key": f"{group['name']}.{key}"}
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        checksums.add(annotations["checksum/nats-user"])
        assert "checksum/nats-auth" not in annotations
        text = json.dumps(deployment)
        assert not any(password in text for password in passwords)
        assert credentials[f"{group['name']}.bcrypt"] not in text
    assert len(checksums) == 2, "a group's pods roll only when its own user changes"


def test_passwords_given_in_values_are_used(helm: Helm, tmp_path: Path) -> None:
    values = json.loads(json.dumps(VALUES))
    values["natsAuth"]["provisioned"]["passwords"] = {"writer": "given-pw", "api-eu": "eu-pw"}
    render = helm.render(values=[write_values(tmp_path, values)], sets=EXTERNAL)
    credentials = secret_data(render, CREDENTIALS)
    assert credentials["writer.password"] == "given-pw"
    assert credentials["api-eu.password"] == "eu-pw"
    assert len(credentials["translator.password"]) == 32


def test_the_credentials_secret_only_holds_the_users(external: Render) -> None:
    keys = set(secret_data(external, CREDENTIALS))
    assert keys == {
        f"{name}.{key}"
        for name, *_ in EXPECTED
        for key in ("user", "password", "bcrypt", "bcrypt-check")
    }
    assert {obj["kind"] for obj in external.objects} == {
        "Deployment",
        "PodDisruptionBudget",
        "Secret",
        "ServiceAccount",
    }
    assert sorted(s["metadata"]["name"] for s in external.of("Secret")) == [
        CREDENTIALS,
        SERVER_AUTH,
    ]


@pytest.mark.parametrize("render_name", ["external", "bundled"])
def test_the_render_passes_kubernetes_validate_strict(
    request: pytest.FixtureRequest, render_name: str, tmp_path: Path
) -> None:
    render: Render = request.getfixturevalue(render_name)
    chart_made = [o for o in render.objects if o["metadata"]["name"] != "nats-wiring-probe"]
    kubernetes_validate(Render(yaml.safe_dump_all(chart_made)), tmp_path)


def test_tls_stays_available_with_provisioned_users(helm: Helm, values_file: Path) -> None:
    render = helm.render(
        values=[values_file],
        sets=[
            *EXTERNAL,
            "natsTls.enabled=true",
            "natsTls.existingSecret=client-tls",
            "natsTls.clientCert=true",
        ],
    )
    for deployment in render.of("Deployment"):
        container = worker(deployment)
        assert "--tls-ca" in container["args"] and "--tls-cert" in container["args"]
        assert {"NATSBUS_NATS_USER", "NATSBUS_NATS_PASSWORD"} <= set(env_of(container))
        volumes = {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert "nats-tls" in volumes and "nats-auth" not in volumes


def test_notes_name_the_users_and_the_server_secret(helm: Helm, values_file: Path) -> None:
    notes = helm.notes(values=[values_file], sets=EXTERNAL)
    for name, *_ in EXPECTED:
        assert f"r-natsbus-{name}:" in notes
    assert SERVER_AUTH in notes and "include it in your NATS server" in notes


# ---------------------------------------------------------------------------------------------
# the bundled NATS and a NATS you already run
# ---------------------------------------------------------------------------------------------


def test_the_bundled_nats_mounts_and_includes_the_users_file(bundled: Render) -> None:
    nats_values = load_yaml(CHART / "values.yaml")["nats"]
    includes = {k: v for k, v in nats_values["config"]["merge"].items() if k.endswith("$include")}
    assert list(includes) == ["zz-natsbus-users$include"]
    # the NATS chart resolves includes against /etc/nats-config (its reloader does the same)
    included = posixpath.normpath(posixpath.join("/etc/nats-config", includes.popitem()[1]))
    (mount_op,) = nats_values["container"]["patch"]
    assert mount_op["op"] == "add" and mount_op["path"] == "/volumeMounts/-"
    mount = mount_op["value"]
    assert mount["readOnly"] is True
    assert included == posixpath.join(mount["mountPath"], "auth.conf")
    assert mount["mountPath"].startswith("/etc/")  # reloader.natsVolumeMountPrefixes
    (volume_op,) = nats_values["podTemplate"]["patch"]
    assert volume_op["op"] == "add" and volume_op["path"] == "/spec/volumes/-"
    assert volume_op["value"]["name"] == mount["name"]
    # the $tplYaml, rendered in the NATS chart's context, names the Secret the chart renders
    probe = bundled.one("ConfigMap", "nats-wiring-probe")
    assert probe["data"]["secretName"] == SERVER_AUTH
    assert "auth.conf" in bundled.one("Secret", SERVER_AUTH)["data"]


@pytest.mark.parametrize(
    ("release", "secret"),
    [("prod", "prod-natsbus-nats-server-auth"), ("natsbus", "natsbus-nats-server-auth")],
)
def test_the_server_secret_is_named_after_the_release(
    helm: Helm, release: str, secret: str
) -> None:
    render = helm.render(release=release, sets=["fullnameOverride=other"])
    assert [s["metadata"]["name"] for s in render.of("Secret")] == [secret]
    assert render.one("ConfigMap", "nats-wiring-probe")["data"]["secretName"] == secret


def test_without_provisioning_the_bundled_nats_includes_a_file_without_users(helm: Helm) -> None:
    render = helm.render()
    assert [s["metadata"]["name"] for s in render.of("Secret")] == [SERVER_AUTH]
    assert parse_auth_conf(auth_conf(render)) == {}
    environment = env_of(worker(render.one("Deployment")))
    assert "NATSBUS_NATS_USER" not in environment


def test_a_nats_you_run_gets_the_file_only_with_provisioning(helm: Helm, external: Render) -> None:
    assert not helm.render(sets=EXTERNAL).of("Secret")
    assert "authorization" in parse_auth_conf(auth_conf(external))


def test_an_empty_users_file_and_the_rendered_one_are_valid_server_configuration(
    external: Render, tmp_path: Path, helm: Helm
) -> None:
    from natsbus.testing.nats_server import find_nats_server_binary

    for index, text in enumerate([auth_conf(external), auth_conf(helm.render())]):
        folder = tmp_path / str(index)
        (folder / "etc" / "nats-config").mkdir(parents=True)
        (folder / "etc" / "natsbus-users").mkdir()
        (folder / "etc" / "natsbus-users" / "auth.conf").write_text(text, encoding="utf-8")
        config = folder / "etc" / "nats-config" / "nats.conf"
        config.write_text('{\n  "port": 4222,\n  include ../natsbus-users/auth.conf;\n}\n')
        done = subprocess.run(
            [str(find_nats_server_binary()), "-c", str(config), "-t"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------------------------------------
# lint, and bad values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sets", [[], EXTERNAL], ids=["bundled", "external"])
def test_helm_lint_strict_with_provisioned_users(
    helm: Helm, values_file: Path, sets: list[str]
) -> None:
    args = ["lint", "--strict", str(helm.chart), "--values", str(values_file)]
    for item in sets:
        args += ["--set", item]
    done = helm.run(*args)
    assert done.returncode == 0, done.stdout + done.stderr


PROVISIONED = ["natsAuth.type=provisioned"]
GROUP = ["workers[0].name=writer", "workers[0].module=m:W"]
CLIENT = ["natsAuth.provisioned.clients[0].name=api"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            [*PROVISIONED, *GROUP, "workers[0].workerName=writer.v2"],
            'workers[0] (group "writer"): natsAuth.type=provisioned needs a plain worker name',
        ),
        (
            [*PROVISIONED, *GROUP, "workers[0].workerName=résumé"],
            'got workerName "résumé"',
        ),
        (
            [*PROVISIONED, *GROUP, "workers[0].channel=session 42"],
            'needs a plain channel (letters, digits, "-" and "_"), got "session 42"',
        ),
        ([*PROVISIONED, "channel=a.b"], "needs a plain channel"),
        (
            [*PROVISIONED, *CLIENT, "natsAuth.provisioned.clients[0].names[0]=a*b"],
            "/natsAuth/provisioned/clients/0/names/0",
        ),
        (
            [*PROVISIONED, "natsAuth.provisioned.clients[0].name=writer"],
            'the name "writer" is taken by a worker group or another client',
        ),
        (
            [*PROVISIONED, "natsAuth.provisioned.passwords.writr=x"],
            "natsAuth.provisioned.passwords.writr: no worker group or client",
        ),
        ([*PROVISIONED, "natsAuth.existingSecret=mine"], "natsAuth.existingSecret: not used"),
        (
            [*PROVISIONED, "nats.config.merge.authorization.token=t"],
            "nats.config.merge.authorization: natsAuth.type=provisioned writes",
        ),
        (
            [*PROVISIONED, "nats.config.resolver.enabled=true"],
            "operator mode (nats.config.resolver)",
        ),
        (
            [*PROVISIONED, "nats.config.merge.zz-natsbus-users$include=null"],
            'keep "zz-natsbus-users$include"',
        ),
        (["nats.container.patch=null"], "keep the natsbus-users volume"),
        (["nats.podTemplate.patch[0].op=add"], "keep the natsbus-users volume"),
        (["natsAuth.type=provisoned"], "/natsAuth/type"),
    ],
)
def test_bad_values_fail_with_a_clear_message(helm: Helm, sets: list[str], message: str) -> None:
    done = helm.template(sets=sets)
    assert done.returncode != 0, f"{sets} rendered:\n{done.stdout[:2000]}"
    assert message in done.stderr, done.stderr


@pytest.mark.parametrize("role", ["requester", "worker", "runner"])
def test_a_client_that_sends_needs_a_name(helm: Helm, tmp_path: Path, role: str) -> None:
    client = {"name": "api", "role": role, "names": []}
    values = {"natsAuth": {"type": "provisioned", "provisioned": {"clients": [client]}}}
    done = helm.template(values=[write_values(tmp_path, values)])
    assert done.returncode != 0
    assert f"a {role} sends as at least one name: give names" in done.stderr, done.stderr


def test_schema_covers_the_new_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    auth = schema["properties"]["natsAuth"]
    assert "provisioned" in auth["properties"]["type"]["enum"]
    provisioned = auth["properties"]["provisioned"]
    assert provisioned["additionalProperties"] is False
    defaults = load_yaml(CHART / "values.yaml")["natsAuth"]["provisioned"]
    assert set(defaults) == set(provisioned["properties"])


# ---------------------------------------------------------------------------------------------
# upgrades: Helm's lookup keeps the passwords and their hashes
# ---------------------------------------------------------------------------------------------


async def test_an_upgrade_keeps_passwords_and_hashes_and_a_changed_password_is_hashed_anew(
    helm: Helm, kube: FakeKubernetes, values_file: Path, tmp_path: Path
) -> None:
    first = render_against(helm, kube, tmp_path, values_file, EXTERNAL)
    assert CREDENTIALS in kube.lookups
    stored = first.one("Secret", CREDENTIALS)
    kube.put(stored)

    # An upgrade that changes nothing: same passwords, same hashes, same pods.
    second = render_against(helm, kube, tmp_path, values_file, EXTERNAL)
    assert second.one("Secret", CREDENTIALS)["data"] == stored["data"]
    assert auth_conf(second) == auth_conf(first)
    for group in VALUES["workers"]:
        name = f"r-natsbus-{group['name']}"
        assert (
            second.one("Deployment", name)["spec"]["template"]["metadata"]["annotations"]
            == first.one("Deployment", name)["spec"]["template"]["metadata"]["annotations"]
        )

    # A password changed in the Secret by hand: kept, and hashed anew (the check says so).
    edited = json.loads(json.dumps(stored))
    edited["data"]["writer.password"] = base64.b64encode(b"edited-by-hand").decode()
    kube.put(edited)
    third = render_against(helm, kube, tmp_path, values_file, EXTERNAL)
    credentials = secret_data(third, CREDENTIALS)
    before = secret_data(first, CREDENTIALS)
    assert credentials["writer.password"] == "edited-by-hand"
    assert credentials["writer.bcrypt"] != before["writer.bcrypt"]
    assert credentials["writer.bcrypt-check"] == bcrypt_check(
        credentials["writer.bcrypt"], "edited-by-hand"
    )
    assert credentials["translator.bcrypt"] == before["translator.bcrypt"]

    def checksum(render: Render, group: str) -> str:
        deployment = render.one("Deployment", f"r-natsbus-{group}")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/nats-user"])

    assert checksum(third, "writer") != checksum(first, "writer")
    assert checksum(third, "translator") == checksum(first, "translator")

    # A password given in values wins over the stored one.
    fourth = render_against(
        helm, kube, tmp_path, values_file, [*EXTERNAL, "natsAuth.provisioned.passwords.writer=new"]
    )
    assert secret_data(fourth, CREDENTIALS)["writer.password"] == "new"

    # The new hash verifies on a real server: the edited password logs in, the old one not.
    await check_logins(tmp_path, third, "writer", "edited-by-hand", before["writer.password"])


async def refused(server: NatsServer, user: str, password: str) -> None:
    async def quiet(error: Exception) -> None:
        pass

    client = nats.NATS()
    try:
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await client.connect(
                server.url, user=user, password=password, allow_reconnect=False, error_cb=quiet
            )
    finally:
        await client.close()  # a refused connect leaves its socket open otherwise


def lay_out(tmp_path: Path, render: Render) -> Path:
    """A server configuration that includes the chart-rendered auth.conf, laid out as the bundled
    NATS has it (the include path of values.yaml, relative to /etc/nats-config)."""
    path = load_yaml(CHART / "values.yaml")["nats"]["config"]["merge"]["zz-natsbus-users$include"]
    config = tmp_path / "etc" / "nats-config" / "nats.conf"
    users = Path(posixpath.normpath(posixpath.join(str(config.parent), path)))
    users.parent.mkdir(parents=True)
    users.write_text(auth_conf(render), encoding="utf-8")
    config.parent.mkdir(parents=True)
    config.write_text(f"include {path}\n", encoding="utf-8")
    return config


async def check_logins(tmp_path: Path, render: Render, name: str, good: str, bad: str) -> None:
    config = lay_out(tmp_path / "login", render)
    user = f"r-natsbus-{name}"
    async with NatsServer(jetstream=False, args=["-c", str(config)]) as server:
        client = await nats.connect(server.url, user=user, password=good, allow_reconnect=False)
        await client.close()
        await refused(server, user, bad)


# ---------------------------------------------------------------------------------------------
# end to end: a real nats-server with the rendered users
# ---------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def server_with(tmp_path: Path, render: Render) -> AsyncIterator[NatsServer]:
    """A JetStream nats-server whose configuration includes the chart-rendered auth.conf."""
    config = lay_out(tmp_path, render)
    async with NatsServer(store_dir=tmp_path / "store", args=["-c", str(config)]) as server:
        yield server


def options(server: NatsServer, credentials: dict[str, str], name: str) -> NatsConnectOptions:
    """A bus outside the chart, logged in as one of the rendered users."""
    return NatsConnectOptions(
        servers=(server.url,),
        user=credentials[f"{name}.user"],
        password=credentials[f"{name}.password"],
        connect_attempts=1,
    )


def pod_bus(
    deployment: dict[str, Any],
    credentials: dict[str, str],
    server: NatsServer,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[WorkerBus, argparse.Namespace]:
    """The bus `natsbus run` makes from the pod's rendered arguments and environment (its
    secretKeyRefs resolved from the chart-made Secret), connected to ``server``."""
    from natsbus.cli import _make_bus, _parser

    container = worker(deployment)
    for item in container["env"]:
        reference = item.get("valueFrom", {}).get("secretKeyRef")
        if reference is not None:
            assert reference["name"] == CREDENTIALS
            monkeypatch.setenv(item["name"], credentials[reference["key"]])
    args = _parser().parse_args(["run", *container["args"]])
    args.nats_url = [server.url]  # instead of the Service the pod would reach
    return _make_bus(args, None), args


async def test_the_rendered_users_run_jobs_on_a_real_nats_server(
    external: Render, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each group's pod, as rendered (arguments, and its user and password from the Secret),
    hosts its worker on a server that includes the rendered auth.conf; a requester outside the
    chart, logged in as its rendered client user, gets its job answered."""
    credentials = secret_data(external, CREDENTIALS)
    async with server_with(tmp_path, external) as server:
        for group, worker_name, channel, client in (
            ("writer", "writer", "shop", "api"),
            ("translator", "translator_v2", "eu_2", "api-eu"),
        ):
            deployment = external.one("Deployment", f"r-natsbus-{group}")
            tool_bus, args = pod_bus(deployment, credentials, server, monkeypatch)
            assert (args.name, args.channel) == (worker_name, channel)
            tool, requester = Tool(args.name), Requester(client)
            asker_bus = NatsBus(
                connect_options=options(server, credentials, client), channel=channel
            )
            async with (
                running(tool, bus=tool_bus, name=f"r-natsbus-{group}-pod-0"),
                running(requester, bus=asker_bus) as runner,
            ):
                await within(runner.registry.wait_ready([worker_name]), 10)
                async with requester.job(worker_name, name="echo", payload={"n": 1}) as job:
                    pass
                assert job.response == {"echo": {"n": 1}}
            for bus in (tool_bus, asker_bus):
                network = bus.statistics().network
                assert network is not None
                assert network.counts.permission_denials == 0


async def test_a_group_user_is_refused_outside_its_channel(
    external: Render, tmp_path: Path
) -> None:
    """The translator's user may not read the shop channel, nor log in with another password."""
    credentials = secret_data(external, CREDENTIALS)
    errors: list[Exception] = []

    async def on_error(error: Exception) -> None:
        errors.append(error)

    async with server_with(tmp_path, external) as server:
        client = await nats.connect(
            server.url,
            user=credentials["translator.user"],
            password=credentials["translator.password"],
            error_cb=on_error,
            allow_reconnect=False,
        )
        try:
            await client.subscribe("natsbus.shop.sys.all.*")
            await client.flush()
            await asyncio.sleep(0.2)
        finally:
            await client.close()
        assert any("permissions violation for subscription" in str(e).lower() for e in errors)
        await refused(server, credentials["translator.user"], credentials["writer.password"])
