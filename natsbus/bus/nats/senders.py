"""Who may have sent what: the checks a NatsBus makes on every message that arrives.

Three rules, each dropping and counting what breaks it (``NetworkCounts``):

* **the sender is who the subject says** (``forged_source``): every subject ends with the
  token of the message's ``source`` (:mod:`natsbus.bus.nats.layout`), and the NATS server's
  permissions let a user publish only under the tokens of the names it hosts, so a message
  whose ``source`` is not its subject's token was forged by whoever published it;
* **job answers come from the worker asked** (``unexpected_answers``): an update, a stream
  chunk or a response is accepted only for a job this bus instance requested, and only from
  a worker the request was sent to;
* **job controls come from the requester** (``unexpected_controls``): a cancel or an update
  request for a job running here is accepted only from the worker that requested it.

The first rule needs the server's permissions to mean anything (without them anyone can
publish under any token); the other two hold whatever the permissions, given the first.

One message speaks for others: a runner's registry snapshot. Runners are named per process
(a pod's name), which no permission set written in advance can name, so a snapshot goes out
under the token of the first worker it lists (:func:`sender_name`), a name the runner's user
may speak as; its ``source`` and ``runner`` (the runner's name) only say where those workers
live.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from natsbus.bus.nats.layout import sent_by
from natsbus.bus.nats.subjects import encode_token
from natsbus.bus.statistics import NetworkCounts
from natsbus.messages import (
    BusJobMessage,
    BusJobRequestMessage,
    BusMessage,
    BusWorkerRegistryMessage,
    JobRole,
)

__all__ = ["AskedJobs", "SenderCheck", "sender_name"]

logger = logging.getLogger("natsbus.bus.nats")

_LOG_INTERVAL: Final = 10.0
"""Seconds between two log lines for the same rule."""
_SUFFIX_CACHE_SIZE: Final = 4096
_ANSWERING_ROLES: Final = frozenset({JobRole.UPDATE, JobRole.STREAM, JobRole.ANSWER})

Requester = Callable[[str, str], str | None]
"""``(worker, job_id)`` -> the source of the request of a job running here, or None."""


def sender_name(message: BusMessage) -> str:
    """The name whose sender token a message is published under: its ``source``.

    A runner's registry snapshot, which speaks for the workers it lists, goes out under the
    first one's (see the module's docstring).
    """
    if type(message) is BusWorkerRegistryMessage and message.workers:
        return message.workers[0].name
    return message.source


class AskedJobs:
    """The jobs one bus instance requested and the workers it asked, until they answer.

    A job leaves once every worker asked has sent its final answer; it is then remembered a
    little longer (``finished``), so that an update that an urgent answer overtook is still
    accepted. Both maps are bounded: past ``capacity`` the oldest job is forgotten (its later
    answers are then dropped as unexpected), which only a flood of requests that are never
    answered can cause.

    Args:
        capacity: Jobs waiting for an answer, at most.
        finished: Answered jobs remembered, at most.
    """

    def __init__(self, capacity: int = 100_000, finished: int = 10_000) -> None:
        self._capacity = capacity
        self._finished_capacity = finished
        self._waiting: OrderedDict[str, set[str]] = OrderedDict()
        self._finished: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._forgotten = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def asked(self, job_id: str, worker: str) -> None:
        """A request for job ``job_id`` was sent to ``worker``."""
        workers = self._waiting.get(job_id)
        if workers is None:
            workers = self._waiting[job_id] = set()
            if len(self._waiting) > self._capacity:
                self._waiting.popitem(last=False)
                self._forgotten += 1
                if self._forgotten == 1:
                    logger.warning(
                        "more than %d jobs requested and not answered: the oldest are forgotten"
                        " (their answers will be dropped)",
                        self._capacity,
                    )
        workers.add(worker)

    def admits(self, message: BusJobMessage) -> bool:
        """Whether ``message`` answers a job asked here, from a worker asked."""
        job_id, source = message.job_id, message.source
        workers = self._waiting.get(job_id)
        if workers is None or source not in workers:
            # Not waiting for it: admitted only if it answered already (a late update).
            return source in self._finished.get(job_id, ())
        if message.job_role is JobRole.ANSWER:
            workers.discard(source)
            if not workers:
                del self._waiting[job_id]
            done = self._finished.get(job_id, frozenset())
            self._finished[job_id] = done | {source}
            if len(self._finished) > self._finished_capacity:
                self._finished.popitem(last=False)
        return True


class SenderCheck:
    """Applies the three rules to what a bus receives (see the module's docstring).

    Args:
        counts: Where ``forged_source``, ``unexpected_answers`` and ``unexpected_controls`` are
            counted.
        requester: Who requested a job running here, if it is (the bus's job ledger).
        name: The bus's name, for logs.
    """

    def __init__(self, *, counts: NetworkCounts, requester: Requester, name: str) -> None:
        self._counts = counts
        self._requester = requester
        self._name = name
        self.asked = AskedJobs()
        """The jobs this bus instance requested, waiting for their answers."""
        self._last_logged: dict[str, float] = {}
        self._suffixes: dict[str, str] = {}

    def sending(self, message: BusJobRequestMessage) -> None:
        """A job request is being sent: its target's answers will be accepted."""
        if message.target is not None:
            self.asked.asked(message.job_id, message.target)

    def admits(self, message: BusMessage, subject: str) -> bool:
        """Whether a message that arrived on ``subject`` may be handed to the subscribers."""
        # On every message: one dict lookup and one endswith (the token with its dot).
        source = message.source
        suffix = self._suffixes.get(source)
        if suffix is None:
            suffix = self._suffix(source)
        if not subject.endswith(suffix) and not sent_by(subject, sender_name(message)):
            self._counts.forged_source += 1
            self._log("forged_source", message, subject)
            return False
        role = message.job_role
        if role is None or role is JobRole.REQUEST:
            return True
        return self._job_rules(message, role, subject)

    def _suffix(self, source: str) -> str:
        if len(self._suffixes) >= _SUFFIX_CACHE_SIZE:
            self._suffixes.clear()  # sources may be per session: keep the cache bounded
        suffix = self._suffixes[source] = f".{encode_token(source)}"
        return suffix

    def _job_rules(self, message: BusMessage, role: JobRole, subject: str) -> bool:
        assert isinstance(message, BusJobMessage)
        if role is JobRole.CONTROL:
            requester = (
                None if message.target is None else self._requester(message.target, message.job_id)
            )
            if requester is not None and requester != message.source:
                self._counts.unexpected_controls += 1
                self._log("unexpected_control", message, subject)
                return False
            return True
        if role in _ANSWERING_ROLES and not self.asked.admits(message):
            self._counts.unexpected_answers += 1
            self._log("unexpected_answer", message, subject)
            return False
        return True

    def _log(self, rule: str, message: BusMessage, subject: str) -> None:
        now = time.monotonic()
        if now - self._last_logged.get(rule, -_LOG_INTERVAL) < _LOG_INTERVAL:
            return
        self._last_logged[rule] = now
        logger.warning(
            "%s dropped a %s claiming source %r on %s (%s)",
            self._name,
            type(message).__name__,
            message.source,
            subject,
            rule,
        )
