"""The JetStream objects a NatsBus relies on: the two job streams and their consumers.

Creating them is idempotent, so every bus of a deployment can call these at start-up.

* The **job stream** (limits retention) keeps job controls and replies; every bus instance
  reads it through two consumers of its own, one per lane.
* The **request stream** (work-queue retention) keeps job requests until they are answered;
  every bus hosting a worker pulls from that worker's one durable consumer. Work-queue
  retention is what makes it safe to let that consumer expire when no bus has hosted the
  worker for a while: a new one made later starts from the requests still stored, which are
  exactly those not yet answered.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, Final

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from natsbus.bus.nats.layout import SubjectLayout
from natsbus.bus.nats.options import JetStreamOptions

__all__ = [
    "TTL_HEADER",
    "delete_consumer_quietly",
    "ensure_consumer",
    "ensure_streams",
    "instance_consumer_config",
    "job_consumer_config",
    "ttl_value",
]

logger = logging.getLogger(__name__)

_STREAM_CONFIG_CONFLICT: Final = 10058
TTL_HEADER: Final = "Nats-TTL"
"""The header that gives a message of the job stream its own maximum age (nats-server 2.11+)."""


def ttl_value(seconds: float) -> str:
    """A ``Nats-TTL`` header's value: whole seconds, at least one."""
    return f"{max(1, round(seconds))}s"


async def ensure_streams(
    jetstream: JetStreamContext, layout: SubjectLayout, options: JetStreamOptions
) -> None:
    """Create the job stream and the request stream, or bring existing ones to these settings.

    The job stream goes first: a job stream of an earlier natsbus captured requests too
    (``<prefix>.*.job.>``), and narrowing it is what makes room for the request stream.
    """
    common: dict[str, Any] = {
        "storage": StorageType.FILE,
        "num_replicas": options.replicas,
        "max_age": options.max_age,
        "duplicate_window": options.deduplication_window,
    }
    if options.max_consumers is not None:
        common["max_consumers"] = options.max_consumers
    await _ensure_stream(
        jetstream,
        StreamConfig(
            name=layout.stream,
            subjects=SubjectLayout.stream_subjects(layout.prefix),
            retention=RetentionPolicy.LIMITS,
            allow_msg_ttl=True,  # a job's replies and controls expire sooner (TTL_HEADER)
            **common,
        ),
    )
    await _ensure_stream(
        jetstream,
        StreamConfig(
            name=layout.request_stream,
            subjects=SubjectLayout.request_stream_subjects(layout.prefix),
            retention=RetentionPolicy.WORK_QUEUE,
            **common,
        ),
    )


_COMPARED: Final = (
    "subjects",
    "retention",
    "storage",
    "num_replicas",
    "max_age",
    "duplicate_window",
    "max_consumers",
    "allow_msg_ttl",
)
"""The settings natsbus chooses for its streams; an existing stream that differs is updated."""


async def _ensure_stream(jetstream: JetStreamContext, config: StreamConfig) -> None:
    """Create or update a stream, or only read it when it is as wanted.

    Reading first lets a bus whose user may only read the streams' info (every role but the
    runner, in the permissions ``natsbus permissions`` generates) start once they exist.
    """
    assert config.name is not None
    try:
        info = await jetstream.stream_info(config.name)
    except NotFoundError:
        try:
            await jetstream.add_stream(config)
            return
        except BadRequestError as error:
            if error.err_code != _STREAM_CONFIG_CONFLICT:
                raise
            # Made by another bus meanwhile, with other settings: bring it to these.
    else:
        if _as_wanted(info.config, config):
            return
    await jetstream.update_stream(config)


def _as_wanted(existing: StreamConfig, wanted: StreamConfig) -> bool:
    for setting in _COMPARED:
        value = getattr(wanted, setting)
        if value is None:
            continue  # left to the server's default
        current = getattr(existing, setting)
        if setting == "subjects":
            value, current = sorted(value), sorted(current or ())
        elif isinstance(value, float):
            matches = current is not None and abs(current - value) < 1e-3
            if not matches:
                return False
            continue
        if current != value:
            return False
    return True


def job_consumer_config(
    layout: SubjectLayout, worker: str, options: JetStreamOptions
) -> ConsumerConfig:
    """The durable consumer every bus hosting ``worker`` shares for its job requests.

    The server deletes it once no bus has pulled from it, nor held one of its requests, for
    ``job_consumer_inactive_threshold`` seconds.
    """
    name = layout.job_consumer(worker)
    return ConsumerConfig(
        name=name,
        durable_name=name,
        filter_subject=layout.job_requests(worker),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=options.ack_wait,
        # One delivery more than the attempts: the bus that gets it answers 'error' instead.
        max_deliver=options.max_attempts + 1,
        max_waiting=512,
        inactive_threshold=options.job_consumer_inactive_threshold,
        mem_storage=options.memory_consumers or None,
    )


def instance_consumer_config(
    name: str, subjects: Sequence[str], options: JetStreamOptions
) -> ConsumerConfig:
    """A consumer of one bus instance; the server deletes it if the instance goes away.

    Its state is kept in memory, not on disk: making a consumer of a file stream with file
    state costs the server a write and the bus about 10 ms, once per lane at every start. A
    server that restarts forgets it; the bus then makes it again from the stream sequence
    after the last message it read (:class:`~natsbus.bus.nats.instance_consumer.
    InstanceConsumer`, through :func:`resume_consumer`), so no reply stored meanwhile is missed.

    Args:
        name: The consumer's name.
        subjects: What it reads (disjoint subjects); a bus updates them as its workers change.
        options: The bus's JetStream options.
    """
    return ConsumerConfig(
        name=name,
        durable_name=name,
        filter_subjects=list(subjects),
        deliver_policy=DeliverPolicy.NEW,
        # Read in order and handled as they come: one acknowledgement serves a whole burst
        # (natsbus.bus.nats.intake.BurstAcks).
        ack_policy=AckPolicy.ALL,
        ack_wait=options.ack_wait,
        inactive_threshold=options.instance_inactive_threshold,
        mem_storage=True,
    )


async def resume_consumer(
    jetstream: JetStreamContext, stream: str, config: ConsumerConfig, after: int | None
) -> ConsumerConfig:
    """Make a consumer the server lost again, delivering from the message after ``after``.

    Does nothing to a consumer that still exists. ``after`` is the stream sequence of the
    last message read (None: none yet, and the consumer delivers only new messages).

    Returns:
        The config the consumer has now (later updates must keep its start).
    """
    assert config.name is not None
    try:
        await jetstream.consumer_info(stream, config.name)
    except NotFoundError:
        pass
    else:
        return config
    if after is not None:
        config = dataclasses.replace(
            config, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1
        )
    await jetstream.add_consumer(stream, config)
    logger.info("consumer %s was gone: made again from stream sequence %s", config.name, after)
    return config


async def ensure_consumer(jetstream: JetStreamContext, stream: str, config: ConsumerConfig) -> None:
    """Create a consumer, or update it to ``config``; one that cannot be updated is shared.

    (``add_consumer`` with a name creates or updates: the server takes what may change, such
    as an instance consumer's subjects, and refuses what may not.)
    """
    try:
        await jetstream.add_consumer(stream, config)
    except BadRequestError as error:
        # Another bus made it with other settings (an older version, other options): share it
        # rather than fail.
        logger.warning("consumer %s exists with other settings: %s", config.name, error)


async def delete_consumer_quietly(jetstream: JetStreamContext, stream: str, name: str) -> None:
    """Delete a consumer, ignoring one that is gone or a server that is away."""
    try:
        await jetstream.delete_consumer(stream, name)
    except Exception:  # inactive_threshold cleans up what could not be deleted now
        logger.debug("could not delete consumer %s", name, exc_info=True)
