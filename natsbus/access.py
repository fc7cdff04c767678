"""The least NATS permissions a NatsBus needs, by role: what ``natsbus permissions`` prints.

A bus hosts one or more names (a worker, a runner and its workers) on one channel. The set
lets its NATS user:

* publish only under the **sender tokens** of those names (see
  :mod:`natsbus.bus.nats.layout`), so that the ``source`` of what it sends cannot be forged:
  core messages and lifecycle messages to anyone, job requests and controls to any worker,
  and, for the roles that run jobs, answers to any requester;
* subscribe only to the channel's broadcasts and to what is targeted at its names (an
  observer: to every core message of the channel), and to its own inboxes
  (:func:`inbox_prefix`), where the server answers its JetStream calls and delivers its pulls;
* use the JetStream API on the deployment's two streams only: read their info (the runner
  may create and update them), make, pull from and delete the consumers a bus makes, and for
  each worker it runs, make the job request consumer **pinned to that worker's requests**
  (the consumer-create subject carries the filter, so the server refuses any other), pull
  from it and acknowledge it.

What the set cannot pin: a bus instance's consumers are made under a random name and read
several subjects, so any user of a deployment (one prefix and its streams) may make a
consumer that reads the job stream of that deployment (replies, controls, lifecycle). Parties
that must not read each other's jobs belong in different accounts, or in different
deployments of one account (their own ``prefix`` and ``stream``): see ``docs/security.md``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from natsbus.bus.nats.layout import DEFAULT_PREFIX, SubjectLayout
from natsbus.bus.nats.subjects import encode_token

__all__ = [
    "BusRole",
    "PermissionSet",
    "inbox_prefix",
    "permissions",
    "serve_permissions",
    "session_requester_permissions",
]

JS_API: Final = "$JS.API"
_LANES: Final = ("sys", "data")


class BusRole(enum.Enum):
    """What a bus does on its channel, which decides what it may publish and read."""

    WORKER = "worker"
    """Hosts workers: sends and receives core and lifecycle messages, requests and runs jobs."""
    REQUESTER = "requester"
    """Sends core and lifecycle messages and requests jobs, but runs none (a client)."""
    RUNNER = "runner"
    """A worker that may also create and update the deployment's streams (``natsbus run``)."""
    OBSERVER = "observer"
    """Reads every core and lifecycle message of the channel and sends nothing."""
    SERVE = "serve"
    """A serving process (``natsbus serve``): see :func:`serve_permissions`."""


@dataclass(frozen=True)
class PermissionSet:
    """A NATS user's permissions: what it may publish and subscribe to.

    Attributes:
        publish: Subjects the user may publish to (everything else is denied).
        subscribe: Subjects the user may subscribe to (everything else is denied).
        inbox_prefix: The inbox prefix the bus must use (``NatsConnectOptions.inbox_prefix``);
            a bus of this channel uses it by default.
    """

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    inbox_prefix: str

    def as_dict(self) -> dict[str, dict[str, list[str]]]:
        """The NATS permissions object: ``{"publish": {"allow": [...]}, "subscribe": ...}``."""
        return {
            "publish": {"allow": list(self.publish)},
            "subscribe": {"allow": list(self.subscribe)},
        }

    def to_json(self) -> str:
        """:meth:`as_dict` as JSON (a user's ``permissions`` in a JWT or a server config)."""
        return json.dumps(self.as_dict(), indent=2)

    def to_server_config(self, indent: str = "") -> str:
        """A ``permissions { ... }`` block for a user in a nats-server configuration file."""
        lines = [f"{indent}permissions: {{"]
        for operation, subjects in (("publish", self.publish), ("subscribe", self.subscribe)):
            lines.append(f"{indent}  {operation}: {{")
            lines.append(f"{indent}    allow: [")
            lines.extend(f"{indent}      {json.dumps(subject)}," for subject in subjects)
            lines.append(f"{indent}    ]")
            lines.append(f"{indent}  }}")
        lines.append(f"{indent}}}")
        return "\n".join(lines)


def inbox_prefix(channel: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The inbox prefix of a bus on ``channel`` (see ``SubjectLayout.inbox_prefix``)."""
    return SubjectLayout(channel, prefix).inbox_prefix


def permissions(
    *,
    channel: str,
    names: Iterable[str],
    role: BusRole | str,
    prefix: str = DEFAULT_PREFIX,
    stream: str = "NATSBUS_JOBS",
) -> PermissionSet:
    """The least permissions of a bus hosting ``names`` on ``channel`` in ``role``.

    Args:
        channel: The bus's channel.
        names: Every name the bus sends as: the workers it hosts (a runner's registry goes
            out under its first worker's name, so a runner's own name is not needed). An
            observer needs none.
        role: A :class:`BusRole` or its value (``"worker"``, ``"requester"``, ``"runner"``,
            ``"observer"``).
        prefix: The deployment's subject prefix (``NatsBus(prefix=...)``).
        stream: The deployment's job stream (``JetStreamOptions.stream``); its request stream
            is ``<stream>_REQUESTS``.

    Returns:
        The set, in a stable order.

    Raises:
        ValueError: No name for a role that sends, or an unknown role.
    """
    role = BusRole(role)
    if role is BusRole.SERVE:
        raise ValueError("the serve role's set is serve_permissions(group=..., names=...)")
    hosted = sorted(set(names))
    if role is not BusRole.OBSERVER and not hosted:
        raise ValueError(f"a {role.value} sends as at least one name: give --name")
    layout = SubjectLayout(channel, prefix, stream)
    root, jobs, requests = layout.root, layout.stream, layout.request_stream
    publish: list[str] = []
    subscribe: list[str] = []

    # What it reads: core messages, and its inboxes.
    if role is BusRole.OBSERVER:
        subscribe.extend(f"{root}.{lane}.>" for lane in _LANES)
    else:
        subscribe.extend(f"{root}.{lane}.all.*" for lane in _LANES)
        for name in hosted:
            subscribe.extend(f"{root}.{lane}.to.{encode_token(name)}.*" for lane in _LANES)
    # The fast copies of replies (natsbus.bus.nats.copies), for any instance: instance ids are
    # random, and whoever may read the job stream reads the stored replies anyway.
    subscribe.append(f"{root}.rsp.>")
    runs_jobs = role in (BusRole.WORKER, BusRole.RUNNER)
    # On a shared pair, a worker's requests are listened for (a doorbell) until the first one
    # makes its consumer: see natsbus/bus/nats/doorbell.py.
    subscribe.extend(layout.job_requests(name) for name in hosted if runs_jobs)
    subscribe.append(f"{layout.inbox_prefix}.>")

    # What it sends, always under its own sender tokens.
    for name in hosted if role is not BusRole.OBSERVER else ():
        sender = encode_token(name)
        for lane in _LANES:
            publish.extend(
                [
                    f"{root}.{lane}.all.{sender}",
                    f"{root}.{lane}.to.*.{sender}",
                    f"{root}.life.{lane}.all.{sender}",
                    f"{root}.life.{lane}.to.*.{sender}",
                ]
            )
        publish.extend([f"{root}.job.req.*.{sender}", f"{root}.job.ctl.*.{sender}"])
        if runs_jobs:
            publish.append(f"{root}.job.rsp.*.*.{sender}")  # answers and claims
            publish.append(f"{root}.rsp.*.*.{sender}")  # their fast copies
            publish.append(f"{root}.dlq.{sender}")  # its requests given up

    # JetStream: the streams, the instance consumers, and each worker's request consumer.
    publish.extend(f"{JS_API}.STREAM.INFO.{name}" for name in (jobs, requests))
    if role is BusRole.RUNNER:
        for name in (jobs, requests):
            publish.extend([f"{JS_API}.STREAM.CREATE.{name}", f"{JS_API}.STREAM.UPDATE.{name}"])
    publish.extend(
        [
            f"{JS_API}.CONSUMER.CREATE.{jobs}.*",  # several subjects: no filter in the subject
            f"{JS_API}.CONSUMER.MSG.NEXT.{jobs}.*",
            f"{JS_API}.CONSUMER.INFO.{jobs}.*",
            f"{JS_API}.CONSUMER.DELETE.{jobs}.*",
            f"$JS.ACK.{jobs}.>",
        ]
    )
    if runs_jobs:
        publish.append(f"{JS_API}.STREAM.MSG.GET.{jobs}")  # is a redelivered job answered?
        for name in hosted:
            consumer = layout.job_consumer(name)
            publish.extend(
                [
                    f"{JS_API}.CONSUMER.CREATE.{requests}.{consumer}.{layout.job_requests(name)}",
                    f"{JS_API}.CONSUMER.MSG.NEXT.{requests}.{consumer}",
                    f"{JS_API}.CONSUMER.INFO.{requests}.{consumer}",
                    f"$JS.ACK.{requests}.{consumer}.>",
                ]
            )
    return PermissionSet(tuple(publish), tuple(subscribe), layout.inbox_prefix)


_SESSION_PLACEHOLDER: Final = "natsbus-session-channel"


def _on_any_channel(
    names: list[str], role: BusRole, prefix: str, stream: str
) -> tuple[list[str], list[str]]:
    """A role's publish and subscribe subjects on every channel, inboxes left out.

    Session channels are made per session, and a NATS wildcard cannot pin a token's prefix.
    """
    placeholder = permissions(
        channel=_SESSION_PLACEHOLDER, names=names, role=role, prefix=prefix, stream=stream
    )
    layout = SubjectLayout(_SESSION_PLACEHOLDER, prefix, stream)
    replaced = {f"{layout.root}.": f"{prefix}.*."}
    replaced |= {layout.job_consumer(name): "*" for name in names}

    def anywhere(subject: str) -> str:
        for old, new in replaced.items():
            subject = subject.replace(old, new)
        return subject

    return (
        [anywhere(s) for s in placeholder.publish],
        [anywhere(s) for s in placeholder.subscribe if not s.startswith("_INBOX.")],
    )


def _union(base: PermissionSet, *parts: tuple[list[str], list[str]]) -> PermissionSet:
    publish, subscribe = list(base.publish), list(base.subscribe)
    for more_publish, more_subscribe in parts:
        publish += more_publish
        subscribe += more_subscribe
    # In order, each once.
    return PermissionSet(
        tuple(dict.fromkeys(publish)), tuple(dict.fromkeys(subscribe)), base.inbox_prefix
    )


def serve_permissions(
    *,
    channel: str,
    group: str,
    names: Iterable[str],
    services_channel: str | None = "services",
    prefix: str = DEFAULT_PREFIX,
    stream: str = "NATSBUS_JOBS",
) -> PermissionSet:
    """The least permissions of a serving process of ``group`` (``natsbus serve``).

    The union of: a runner hosting ``group`` on the deployment's ``channel`` (it takes the
    session requests); a worker hosting ``names`` (the session factory's workers) on **any**
    channel, since session channels are made per session; deleting its sessions' request
    consumers at their end; and a requester ``sessions-<group>``
    on ``services_channel``. The sessions' buses share the process's connections, whose
    inboxes are those of ``channel``.

    What it cannot pin: which session channel a process writes to. Groups that must not
    reach each other's sessions belong in different accounts or deployments (their own
    ``prefix``).

    Raises:
        ValueError: No session worker name.
    """
    hosted = sorted(set(names))
    if not hosted:
        raise ValueError("a serving process hosts at least one session worker: give --name")
    deployment = permissions(
        channel=channel, names=[group], role=BusRole.RUNNER, prefix=prefix, stream=stream
    )
    layout = SubjectLayout(channel, prefix, stream)
    cleanup = [f"{JS_API}.CONSUMER.DELETE.{layout.request_stream}.*"]
    parts = [_on_any_channel(hosted, BusRole.WORKER, prefix, stream), (cleanup, [])]
    if services_channel is not None:
        services = permissions(
            channel=services_channel,
            names=[f"sessions-{group}"],
            role=BusRole.REQUESTER,
            prefix=prefix,
            stream=stream,
        )
        subscribe = [s for s in services.subscribe if not s.startswith("_INBOX.")]
        parts.append((list(services.publish), subscribe))
    return _union(deployment, *parts)


def session_requester_permissions(
    *,
    channel: str,
    names: Iterable[str],
    prefix: str = DEFAULT_PREFIX,
    stream: str = "NATSBUS_JOBS",
) -> PermissionSet:
    """A requester of ``channel`` that also starts sessions and talks in them (a client).

    Its own channel's requester set, plus a requester's on any channel (where its sessions
    are); the sessions' pulls come to its own channel's inboxes.
    """
    hosted = sorted(set(names))
    base = permissions(
        channel=channel, names=hosted, role=BusRole.REQUESTER, prefix=prefix, stream=stream
    )
    return _union(base, _on_any_channel(hosted, BusRole.REQUESTER, prefix, stream))
