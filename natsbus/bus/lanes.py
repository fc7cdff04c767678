"""One priority lane of a subscriber, and what a full one does.

A lane is a deque and the waiter its task parks on. It holds up to its limit
(:class:`~natsbus.bus.limits.QueueLimits`); what a full lane does depends on what it carries:

* **data**: the oldest queued message that may go is dropped to make room, and counted
  (reason ``lane_full``): a real-time subscriber wants the newest frames, and the process's
  memory stays bounded. Job messages (updates, stream chunks, answers) and lifecycle messages
  (an end) never go: every job must get its answer; if nothing else is queued, a new frame is
  the one dropped, and a new job or lifecycle message is kept over the limit;
* **system**: nothing is dropped (a cancel or an end must never be lost) and nothing blocks:
  the lane goes on growing past its limit, and the subscriber is reported slow. System
  messages are few; a lane that grows past its limit means a stuck handler.

Either way the subscriber is *slow* from the first message over the limit until its lane has
drained: counted once per episode, logged once when it starts and once when it ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from natsbus._message_base import BusMessage, Lane
from natsbus.bus.tally import BusTally

__all__ = ["LaneQueue", "LaneStatistics"]

logger = logging.getLogger("natsbus.bus.dispatch")


@dataclass(frozen=True, slots=True)
class LaneStatistics:
    """A snapshot of one lane.

    Attributes:
        queued: Messages waiting in the lane (its depth).
        handled: Handler calls that finished, whether they succeeded or raised.
        failed: Handler calls that raised (a subset of ``handled``).
        limit: Messages the lane holds before it is full.
        dropped: Messages dropped because the lane was full (data lanes only).
        slow_episodes: Times the lane went over its limit (each counted until it drained).
        slow: Whether the lane is over its limit now, or has not drained since it was.
    """

    queued: int
    handled: int
    failed: int
    limit: int = 0
    dropped: int = 0
    slow_episodes: int = 0
    slow: bool = False


class LaneQueue:
    """One lane: a deque, the waiter its task parks on when empty, and counters.

    To queue a message: if ``len(queue) >= limit``, call :meth:`overflow`, and append the
    message to ``queue`` only if it says so; then call :meth:`wake` if ``waiter`` is set (the
    bus's fan-out inlines this).

    Args:
        kind: The lane.
        limit: Messages it holds before it is full.
        subscriber: The subscriber's name, for the log.
        tally: Where drops and slow episodes are counted for metrics, if anywhere.
    """

    __slots__ = (
        "dropped",
        "failed",
        "handled",
        "kind",
        "limit",
        "queue",
        "slow",
        "slow_episodes",
        "subscriber",
        "tally",
        "waiter",
    )

    def __init__(
        self, kind: Lane, limit: int, *, subscriber: str = "", tally: BusTally | None = None
    ) -> None:
        self.kind = kind
        self.limit = limit
        self.subscriber = subscriber
        self.tally = tally
        self.queue: deque[BusMessage] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.handled = 0
        self.failed = 0
        self.dropped = 0
        self.slow = False
        self.slow_episodes = 0

    def wake(self) -> None:
        """Release the task parked on an empty lane (the caller saw ``waiter`` set)."""
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():  # done: cancelled with its task
            waiter.set_result(None)

    def put(self, message: BusMessage) -> None:
        """Queue a message, applying the lane's policy if it is full, and wake its task."""
        if len(self.queue) >= self.limit and not self.overflow(message):
            return
        self.queue.append(message)
        if self.waiter is not None:
            self.wake()

    def overflow(self, message: BusMessage) -> bool:
        """Make room in a full lane for ``message`` (see the module's policy).

        Returns:
            Whether to queue ``message`` (False: it was the one dropped).
        """
        keep = True
        if self.kind is Lane.DATA:
            keep = self._drop_one(message)
        if not self.slow:
            self._slow_began()
        return keep

    def _drop_one(self, incoming: BusMessage) -> bool:
        """Drop the oldest message that may go, or else ``incoming`` if it may; False then."""
        queue = self.queue
        for index, queued in enumerate(queue):  # the head, almost always
            if not _kept(queued):
                del queue[index]
                self._count_drop()
                return True
        if _kept(incoming):
            return True  # nothing may go: over the limit, rather than lose a job's answer
        self._count_drop()
        return False

    def _count_drop(self) -> None:
        self.dropped += 1
        if self.tally is not None:
            self.tally.count_drop("lane_full")

    def _slow_began(self) -> None:
        self.slow = True
        self.slow_episodes += 1
        if self.tally is not None:
            self.tally.count_slow(self.kind)
        logger.warning(
            "subscriber %r is slow: its %s lane is at its limit of %d messages; %s",
            self.subscriber,
            self.kind.value,
            self.limit,
            "dropping the oldest" if self.kind is Lane.DATA else "keeping them all",
        )

    def drained(self) -> None:
        """End a slow episode: the lane's task found it empty."""
        self.slow = False
        logger.info(
            "subscriber %r caught up on its %s lane (%d dropped so far)",
            self.subscriber,
            self.kind.value,
            self.dropped,
        )

    def statistics(self) -> LaneStatistics:
        """Return a snapshot of the lane."""
        return LaneStatistics(
            len(self.queue),
            self.handled,
            self.failed,
            self.limit,
            self.dropped,
            self.slow_episodes,
            self.slow,
        )


def _kept(message: BusMessage) -> bool:
    """Whether a full lane must keep the message: a job's or a lifecycle message."""
    return message.job_role is not None or message.durable
