"""What a session requester and a serving process say to each other, in one place.

A session request is a job: ``<group>`` is the name of the worker every serving process of
that group hosts on the deployment's channel, and ``session`` its job. So a request is stored
in the request stream (a work queue), taken by exactly one serving process, and flow-
controlled by its free slots (a process takes at most ``slots`` such jobs at once). The job
runs as long as the session: its updates report it taken, ready, and alive (a heartbeat), and
its response its outcome::

    request  {"session_id": id, "args": {...}}
    update   {"event": "taken", "host": H, "heartbeat": seconds}
    update   {"event": "ready", "host": H, "channel": C, "workers": [...],
              "heartbeat": seconds, "restart": bool}
    update   {"event": "alive"}                      every ``heartbeat`` seconds
    response {"outcome": "ended" | "cancelled", "reason": text or None}

A factory that raises, or workers that are not ready in time, answer the job ``error``.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "SESSION_JOB",
    "Event",
    "Outcome",
    "session_channel",
]

SESSION_JOB: Final = "session"
"""The job name of a session request (the worker is named after the group)."""

DEFAULT_HEARTBEAT: Final = 1.0
"""Seconds between a running session's heartbeats."""

MISSED_HEARTBEATS: Final = 5
"""Heartbeats a requester misses before it reports the session failed."""

RESTART_WAIT: Final = 90.0
"""Seconds a requester of a group that restarts sessions waits for another process to take a
session whose process was lost (its request comes back after the process's ``ack_wait``)."""


class Event(enum.StrEnum):
    """The ``event`` of a session job's update."""

    TAKEN = "taken"
    READY = "ready"
    ALIVE = "alive"


class Outcome(enum.StrEnum):
    """How a session ended (a closed set: the label of ``natsbus_sessions_ended_total``)."""

    ENDED = "ended"
    """Gracefully: an ``end()`` in it or from its requester, or all its workers ended."""
    CANCELLED = "cancelled"
    """A ``cancel()`` in it or from its requester, or a drain past its grace period."""
    FAILED = "failed"
    """It did not start (a factory that raised, workers not ready in time)."""


def session_channel(group: str, session_id: str) -> str:
    """The channel of one session: ``<group>~<session id>`` (one subject token, escaped).

    Args:
        group: The session group.
        session_id: The session's id.
    """
    return f"{group}~{session_id}"
