"""How each message class travels over NATS: its lane, and core NATS or JetStream."""

from __future__ import annotations

import enum

from natsbus.messages import BusMessage, Lane

__all__ = ["Route", "route_of"]


class Route(enum.Enum):
    """How a message class travels."""

    CORE = "core"
    """Core NATS, at most once."""
    JOB = "job"
    """JetStream, through the job channel's request, control and reply subjects."""
    STORED = "stored"
    """JetStream, on a lifecycle subject every bus hosting the target reads."""


_ROUTES: dict[type[BusMessage], tuple[Lane, Route]] = {}


def route_of(cls: type[BusMessage]) -> tuple[Lane, Route]:
    """The lane and the way of a message class (worked out once per class)."""
    route = _ROUTES.get(cls)
    if route is None:
        if cls.job_role is not None:
            route = cls.lane, Route.JOB
        else:
            route = cls.lane, Route.STORED if cls.durable else Route.CORE
        _ROUTES[cls] = route
    return route
