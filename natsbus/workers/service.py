"""Service workers: long-lived, shared by many sessions, ended only by their deployment.

``natsbus run module:Worker --service`` hosts a worker in a :class:`ServiceRunner`. It takes
jobs from any session (``self.job("tts", ..., channel="services")``) and its answers go back
to the bus instance that asked; an end or cancel sent on its channel by a session, a client
or anyone but the names its deployment authorises (``--end-from``) is ignored and counted.
SIGTERM (and the operator, through an authorised name) still ends it.

The check is sound because the ``source`` of a message is enforced by the NATS server's
permissions (each user publishes only under its own sender tokens: ``natsbus.access``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from natsbus.messages import BusLocalMessage, BusMessage
from natsbus.workers.runner import WorkerRunner

__all__ = ["ServiceRunner"]

logger = logging.getLogger(__name__)


class ServiceRunner(WorkerRunner):
    """A runner whose workers only their own deployment may end or cancel.

    Messages made in this process (SIGTERM, :meth:`end`, :meth:`cancel`) always act; from the
    network, only those sent by a name in ``end_from``.

    Args:
        end_from: The names whose ``BusEndMessage``, ``BusCancelMessage`` (and the targeted
            worker variants) act on this runner's workers; none by default.
        log_refused: Log each end or cancel ignored (a client's runner does not: ends it
            sees in a session's channel are the session's, not meant for it).
        **kwargs: As :class:`~natsbus.workers.WorkerRunner`.
    """

    def __init__(
        self, *, end_from: Iterable[str] = (), log_refused: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._end_from = frozenset(end_from)
        self._log_refused = log_refused
        self._refused = 0

    @property
    def refused_ends(self) -> int:
        """How many end and cancel messages from the network were ignored."""
        return self._refused

    def admits_end(self, message: BusMessage) -> bool:
        """Whether ``message`` (an end or cancel) may act: local, or from an authorised name."""
        if isinstance(message, BusLocalMessage) or message.source in self._end_from:
            return True
        self._refused += 1
        if not self._log_refused:
            return False
        logger.warning(
            "%s: ignored %s from %r (a service ends only by SIGTERM or --end-from)",
            self,
            type(message).__name__,
            message.source,
        )
        return False
