"""The :class:`BusSubscriber` mixin: anything that receives messages from a WorkerBus."""

from __future__ import annotations

from collections.abc import Iterable

from natsbus.messages import BusMessage

__all__ = ["BusSubscriber", "union_targets"]


class BusSubscriber:
    """Mixin for objects that receive messages from a :class:`~natsbus.bus.WorkerBus`.

    Implementors override :meth:`on_bus_message` and provide a :attr:`name` property.

    Every subscriber of an in-process bus receives every message, exactly as in the reference
    API: a subscriber looks at ``message.target`` itself and ignores what is not for it.
    :attr:`bus_targets` only tells a *network* bus which targeted messages to fetch from the
    network for this process; it never filters local delivery.

    Example::

        class Logger(BusSubscriber):
            @property
            def name(self) -> str:
                return "logger"

            @property
            def bus_targets(self) -> frozenset[str] | None:
                return None  # an observer: fetch every targeted message

            async def on_bus_message(self, message: BusMessage) -> None:
                print(message)
    """

    @property
    def name(self) -> str:
        """Unique name identifying this subscriber on the bus."""
        raise NotImplementedError(f"{type(self).__name__} must provide a 'name' property")

    @property
    def bus_targets(self) -> frozenset[str] | None:
        """Targets whose messages this subscriber answers to.

        A network bus subscribes to broadcasts (``target=None``, which always reach every
        subscriber) plus the union of its subscribers' targets. The default is the
        subscriber's own name. Override to answer to more names (aliases, a group) or return
        ``None`` to receive every targeted message, as an observer or a runner does.
        """
        return frozenset((self.name,))

    @property
    def bus_job_targets(self) -> frozenset[str]:
        """Targets whose job requests this subscriber takes and runs (none by default).

        A network bus keeps a JetStream consumer for each of them (shared with the other
        buses that host the same target), and reads their job cancels; a subscriber that runs
        no jobs (an observer, a runner, a bridge, a recorder) costs the server no consumer.
        A worker (:class:`~natsbus.workers.BaseWorker`) takes its own name's jobs.
        """
        return frozenset()

    @property
    def bus_taking_jobs(self) -> bool:
        """Whether this subscriber takes new job requests now (True unless overridden).

        A network bus pulls the requests of :attr:`bus_job_targets` only while this is true;
        until then they wait in the stream for another bus. A worker says False until it is
        set up and active, and from the moment it ends; it calls
        :meth:`WorkerBus.refresh_interest <natsbus.bus.WorkerBus.refresh_interest>` when the
        answer changes.
        """
        return True

    async def on_bus_message(self, message: BusMessage) -> None:
        """Handle an incoming bus message.

        Called from the subscriber's own dispatch tasks: system messages and data messages
        arrive on separate lanes, so a system message may run while a data message is still
        being handled. An exception raised here is logged and counted; dispatch continues.

        Args:
            message: The bus message to handle.
        """


def union_targets(subscribers: Iterable[BusSubscriber]) -> frozenset[str] | None:
    """Combine the :attr:`~BusSubscriber.bus_targets` of several subscribers.

    Args:
        subscribers: The subscribers of one bus.

    Returns:
        Every target named by any subscriber, or None if any of them wants everything.
    """
    targets: set[str] = set()
    for subscriber in subscribers:
        wanted = subscriber.bus_targets
        if wanted is None:
            return None
        targets.update(wanted)
    return frozenset(targets)
