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

__all__ = ["BusRole", "PermissionSet", "inbox_prefix", "permissions"]

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
    subscribe.append(f"{layout.inbox_prefix}.>")

    # What it sends, always under its own sender tokens.
    runs_jobs = role in (BusRole.WORKER, BusRole.RUNNER)
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
