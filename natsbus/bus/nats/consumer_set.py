"""The JetStream consumers one NatsBus reads from, and the pull loops that read them.

A bus needs few consumers, because a server holds a limited number per stream (1,000 by
default from nats-server 2.15) and a deployment with a channel per session runs many buses:

* two of its **instance**, whatever it hosts: the system one reads the bus's urgent replies
  and the controls (cancels, update requests) of every worker it hosts, the data one its
  other replies. When the hosted workers change, the system consumer's subjects are updated
  in place;
  On a shared connection pair, the pair's two consumers read those for all its buses instead
  (:mod:`natsbus.bus.nats.routed`), and this set only says which deliveries its bus wants;
* one **job request** consumer per hosted worker that takes jobs, shared with every other bus
  hosting that worker in the channel (on a shared pair, made only once a request is there to
  take: see :mod:`natsbus.bus.nats.doorbell`). It outlives the buses (requests wait in it
  while no bus hosts the worker) until the server expires it after
  ``JetStreamOptions.job_consumer_inactive_threshold``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from functools import partial
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig
from nats.js.client import JetStreamContext

from natsbus.bus.nats.consumers import ConsumerStatistics, query_consumers
from natsbus.bus.nats.doorbell import Doorbell
from natsbus.bus.nats.instance_consumer import InstanceConsumer
from natsbus.bus.nats.intake import BurstAcks, JobIntake
from natsbus.bus.nats.jetstream import (
    delete_consumer_quietly,
    ensure_consumer,
    instance_consumer_config,
    job_consumer_config,
)
from natsbus.bus.nats.layout import SubjectLayout
from natsbus.bus.nats.ledger import JobLedger
from natsbus.bus.nats.options import JetStreamOptions
from natsbus.bus.nats.pull import PullLoop
from natsbus.bus.nats.routed import SharedInstanceConsumers
from natsbus.messages import Lane

__all__ = ["ConsumerSet"]

logger = logging.getLogger(__name__)

_LANES: Final[tuple[Lane, Lane]] = (Lane.SYSTEM, Lane.DATA)
_RETRY_INTERVAL: Final = 1.0
"""Seconds between two attempts to make a consumer the server would not make."""


class ConsumerSet:
    """The consumers and pull loops of one bus (made by the bus once it is connected).

    :meth:`sync`, :meth:`pause_jobs` and the opening of a worker's consumer when its doorbell
    rings take turns.

    Args:
        clients: The bus's connections by lane.
        jetstream: Their JetStream contexts.
        layout: The bus's subjects and stream names.
        options: The bus's JetStream options.
        instance: The bus's instance id.
        intake: Where delivered job messages go.
        ledger: The jobs taken, for the credit each worker's loop may ask for.
        routed: The instance consumers of the bus's shared connection pair, if it has one:
            the bus then has none of its own.
    """

    def __init__(
        self,
        *,
        clients: Mapping[Lane, Client],
        jetstream: Mapping[Lane, JetStreamContext],
        layout: SubjectLayout,
        options: JetStreamOptions,
        instance: str,
        intake: JobIntake,
        ledger: JobLedger,
        routed: SharedInstanceConsumers | None = None,
    ) -> None:
        self._clients = clients
        self._jetstream = jetstream
        self._layout = layout
        self._options = options
        self._instance = instance
        self._intake = intake
        self._ledger = ledger
        self._instance_consumers: dict[Lane, InstanceConsumer] = {}
        self._controlled: frozenset[str] = frozenset()
        self._job_loops: dict[str, PullLoop] = {}
        self._paused = False
        self._routed = routed
        # On a shared pair: the filter subjects this bus's own consumers would have, which
        # say what it wants of the pair's deliveries (see wants_routed).
        self._wanted: frozenset[str] = frozenset()
        self._observing: tuple[str, ...] = ()
        # On a shared pair: the workers taking jobs whose request consumer waits for a request.
        self._doorbells: dict[str, Doorbell] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Make the instance consumers and start reading them (on a pair: join its own)."""
        if self._routed is not None:
            self._want(self._instance_config(lane, frozenset(), frozenset()) for lane in _LANES)
            self._routed.join(self._layout.root, self)
            return
        for lane in _LANES:
            consumer = InstanceConsumer(
                client=self._clients[lane],
                jetstream=self._jetstream[lane],
                stream=self._layout.stream,
                config=self._instance_config(lane, frozenset(), frozenset()),
                on_message=self._intake.routed_reader(),
            )
            await consumer.start()
            self._instance_consumers[lane] = consumer

    async def sync(
        self,
        workers: Iterable[str],
        taking: Iterable[str],
        listening: Iterable[str] | None,
        *,
        narrow: bool = True,
    ) -> bool:
        """Read the controls of exactly ``workers``, and take job requests for ``taking``.

        The instance consumers also read the lifecycle messages broadcast and those for the
        targets in ``listening`` (None: every target, for an observer).

        ``taking`` are the workers among ``workers`` ready to run jobs now (set up, active, not
        ending): the requests of the others stay in the stream, for another bus to take. A
        worker that stops taking has its loop paused, not stopped, so that what an earlier
        pull still brings is handed back at once. A joining worker's controls are read before
        its requests are taken, and a leaving worker's requests stop before its controls do,
        so a job is never taken here without its cancels reaching it.

        With ``narrow=False``, instance consumers that would only read less are left as they
        are (reading a little more is harmless): a bus whose workers leave as it stops then
        spends no server call on consumers it is about to delete.

        Returns:
            True if an instance consumer was left reading more than it needs.

        Raises:
            nats.errors.Error: The server refused or did not answer; what was done stays
                done, and the next call completes the rest.
        """
        async with self._lock:
            return await self._sync(frozenset(workers), frozenset(taking), listening, narrow)

    async def _sync(
        self,
        wanted: frozenset[str],
        taking: frozenset[str],
        listening: Iterable[str] | None,
        narrow: bool,
    ) -> bool:
        takers = wanted & taking
        for worker in set(self._doorbells) - takers:
            await self._doorbells.pop(worker).disarm()
        for worker in set(self._job_loops) - wanted:
            await self._job_loops.pop(worker).stop()
        for worker in set(self._job_loops) - takers:
            if not self._job_loops[worker].paused:
                await self._job_loops[worker].pause()
        wider = await self._point(
            wanted, None if listening is None else frozenset(listening), narrow=narrow
        )
        if self._paused:
            return wider  # a drain takes no job, even for a worker that joins now
        for worker in takers & set(self._job_loops):
            self._job_loops[worker].resume()
        for worker in takers - set(self._job_loops):
            if self._routed is None:
                await self._take(worker)
            elif worker not in self._doorbells:
                await self._arm(worker)
        return wider

    async def _take(self, worker: str) -> None:
        """Make ``worker``'s request consumer (or share it) and start pulling from it."""
        config = job_consumer_config(self._layout, worker, self._options)
        await ensure_consumer(self._jetstream[Lane.DATA], self._layout.request_stream, config)
        self._job_loops[worker] = await self._start_loop(
            Lane.DATA,
            stream=self._layout.request_stream,
            name=config.name,
            ensure=partial(
                ensure_consumer, self._jetstream[Lane.DATA], self._layout.request_stream, config
            ),
            on_message=partial(self._intake.on_job_request, worker),
            capacity=partial(self._ledger.room, worker),
        )

    async def _arm(self, worker: str) -> None:
        """Wait for ``worker``'s first request with a doorbell, not a consumer (shared pair)."""
        doorbell = Doorbell(
            client=self._clients[Lane.DATA],
            jetstream=self._jetstream[Lane.DATA],
            stream=self._layout.request_stream,
            subject=self._layout.job_requests(worker),
            on_ring=partial(self._spawn, partial(self._answer_door, worker)),
        )
        self._doorbells[worker] = doorbell
        try:
            await doorbell.arm()
        except BaseException:
            del self._doorbells[worker]
            await doorbell.disarm()
            raise

    async def _answer_door(self, worker: str) -> None:
        """A request for ``worker`` is there: make its consumer and take it (retried)."""
        while True:
            async with self._lock:
                doorbell = self._doorbells.get(worker)
                if doorbell is None or self._paused:
                    return  # it stopped taking: arming it again asks the stream again
                try:
                    await self._take(worker)
                except Exception as error:
                    logger.warning(
                        "could not take the jobs of %r yet (%s); retrying", worker, error
                    )
                else:
                    del self._doorbells[worker]
                    await doorbell.disarm()
                    return
            await asyncio.sleep(_RETRY_INTERVAL)

    def requested(self, worker: str) -> None:
        """This bus sent a request to ``worker``: its doorbell cannot hear it (no echo)."""
        doorbell = self._doorbells.get(worker)
        if doorbell is not None:
            doorbell.ring()

    def _spawn(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = asyncio.get_running_loop().create_task(work())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _check_quietly(self, doorbell: Doorbell) -> None:
        try:
            await doorbell.check()
        except Exception:  # down again: the next reconnect checks again
            logger.debug("could not check for stored job requests", exc_info=True)

    def wants_routed(self, subject: str) -> bool:
        """Whether a delivery of the pair's consumers is for this bus (see ``routed.py``).

        Exactly what this bus's own consumers' filter subjects would let through: its
        replies, its workers' controls, the lifecycle messages of its targets.
        """
        if subject[: subject.rfind(".")] + ".*" in self._wanted:
            return True
        return any(subject.startswith(prefix) for prefix in self._observing)

    def on_routed_message(self, acks: BurstAcks, msg: Msg) -> None:
        """A delivery of the pair's consumers that this bus wants."""
        self._intake.on_routed_message(acks, msg)

    def _want(self, configs: Iterable[ConsumerConfig]) -> None:
        subjects = [s for config in configs for s in config.filter_subjects or ()]
        self._wanted = frozenset(s for s in subjects if not s.endswith(".>"))
        self._observing = tuple(s[:-1] for s in subjects if s.endswith(".>"))

    async def pause_jobs(self) -> None:
        """Stop taking job requests; controls and replies keep flowing."""
        async with self._lock:
            self._paused = True
            for loop in self._job_loops.values():
                await loop.pause()
            doorbells, self._doorbells = self._doorbells, {}
            for doorbell in doorbells.values():
                await doorbell.disarm()

    def missing(self, workers: Iterable[str], taking: Iterable[str]) -> set[str]:
        """The workers whose consumers are not in place (for readiness).

        That is the controls of ``workers``, and the job requests of ``taking``.
        """
        missing = set(workers) - self._controlled
        if not self._paused:
            missing.update(
                worker
                for worker in taking
                if worker not in self._doorbells
                and (worker not in self._job_loops or self._job_loops[worker].paused)
            )
        return missing

    def room_made(self, worker: str) -> None:
        """A job of ``worker`` was answered: its loop may ask for one more."""
        loop = self._job_loops.get(worker)
        if loop is not None:
            loop.room_made()

    def renew(self) -> None:
        """Ask again at once on every loop (the connection came back)."""
        for loop in self._job_loops.values():
            loop.renew()
        for consumer in self._instance_consumers.values():
            consumer.renew()
        for doorbell in self._doorbells.values():
            # A request stored while the connection was down did not ring.
            self._spawn(partial(self._check_quietly, doorbell))

    async def stop(self) -> None:
        """Stop every loop; what was delivered and not acknowledged is redelivered."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        doorbells, self._doorbells = self._doorbells, {}
        for doorbell in doorbells.values():
            await doorbell.disarm()
        for loop in self._job_loops.values():
            await loop.stop()
        for consumer in self._instance_consumers.values():
            await consumer.stop()
        self._job_loops.clear()

    async def delete_instance_consumers(self) -> None:
        """Delete the instance's consumers (the server would after their inactive threshold).

        On a shared pair, stop taking the pair's deliveries instead (its consumers stay).
        """
        if self._routed is not None:
            self._routed.leave(self._layout.root, self)
            self._controlled = frozenset()
            return
        stream = self._layout.stream
        for consumer in self._instance_consumers.values():
            await delete_consumer_quietly(self._jetstream[Lane.SYSTEM], stream, consumer.name)
        self._instance_consumers.clear()
        self._controlled = frozenset()

    async def statistics(self, timeout: float) -> list[ConsumerStatistics]:
        """Ask the server how far behind each consumer is (see ``NatsBus.consumer_statistics``)."""
        wanted: list[tuple[str, str, Lane, str, str]] = [
            ("job_requests", worker, Lane.DATA, self._layout.request_stream, loop.consumer)
            for worker, loop in self._job_loops.items()
        ]
        wanted.extend(
            ("instance", "", lane, self._layout.stream, consumer.name)
            for lane, consumer in self._instance_consumers.items()
        )
        if self._routed is not None:
            wanted.extend(
                ("instance", "", lane, self._routed.stream, name)
                for lane, name in self._routed.consumers.items()
            )
        return await query_consumers(self._jetstream, wanted, timeout)

    # --- internals ------------------------------------------------------------------------------

    def _instance_config(
        self, lane: Lane, controlled: frozenset[str], listening: frozenset[str] | None
    ) -> ConsumerConfig:
        layout = self._layout
        subjects = [layout.job_replies(self._instance, lane)]
        if lane is Lane.SYSTEM:
            subjects.extend(layout.job_control(worker) for worker in sorted(controlled))
        if listening is None:
            subjects.append(layout.lifecycle_everything(lane))
        else:
            subjects.append(layout.lifecycle(lane, None))
            subjects.extend(layout.lifecycle(lane, target) for target in sorted(listening))
        name = layout.instance_consumer(self._instance, lane)
        return instance_consumer_config(name, subjects, self._options)

    async def _point(
        self, controlled: frozenset[str], listening: frozenset[str] | None, *, narrow: bool
    ) -> bool:
        """Point the instance consumers at these workers' controls and targets' lifecycle.

        Returns True if one was left wider than that (``narrow=False``).
        """
        if self._routed is not None:
            # The pair's consumers read everything: only what this bus keeps changes.
            configs = [self._instance_config(lane, controlled, listening) for lane in _LANES]
            self._want(configs)
            self._controlled = controlled
            return False
        wider = False
        for lane in _LANES:
            consumer = self._instance_consumers[lane]
            current = consumer.config
            config = self._instance_config(lane, controlled, listening)
            if config.filter_subjects == current.filter_subjects:
                continue
            if not narrow and set(config.filter_subjects or ()) <= set(
                current.filter_subjects or ()
            ):
                wider = True
                continue
            # What it already delivered stays delivered (a consumer that delivers only new
            # messages never goes back for older ones on a subject it starts reading).
            await consumer.update(config)
            if lane is Lane.SYSTEM:
                self._controlled = controlled
        return wider

    async def _start_loop(
        self,
        lane: Lane,
        *,
        stream: str,
        name: str | None,
        ensure: Callable[[], Awaitable[None]],
        on_message: Callable[[Msg], None],
        capacity: Callable[[], int],
    ) -> PullLoop:
        assert name is not None
        loop = PullLoop(
            client=self._clients[lane],
            stream=stream,
            consumer=name,
            on_message=on_message,
            capacity=capacity,
            ensure_consumer=ensure,
        )
        await loop.start()
        return loop
