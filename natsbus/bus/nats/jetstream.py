"""The JetStream objects a NatsBus relies on: the job stream and its consumers.

Creating them is idempotent, so every bus of a deployment can call these at start-up.
"""

from __future__ import annotations

import logging
from typing import Final

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError

from natsbus.bus.nats.layout import SubjectLayout
from natsbus.bus.nats.options import JetStreamOptions

__all__ = [
    "delete_consumer_quietly",
    "ensure_consumer",
    "ensure_stream",
    "instance_consumer_config",
    "job_consumer_config",
]

logger = logging.getLogger(__name__)

_STREAM_CONFIG_CONFLICT: Final = 10058


async def ensure_stream(
    jetstream: JetStreamContext, layout: SubjectLayout, options: JetStreamOptions
) -> None:
    """Create the job stream, or bring an existing one to these settings."""
    config = StreamConfig(
        name=layout.stream,
        subjects=SubjectLayout.stream_subjects(layout.prefix),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=options.replicas,
        max_age=options.max_age,
        duplicate_window=options.duplicate_window,
    )
    try:
        await jetstream.add_stream(config)
    except BadRequestError as error:
        if error.err_code != _STREAM_CONFIG_CONFLICT:
            raise
        await jetstream.update_stream(config)


def job_consumer_config(
    layout: SubjectLayout, worker: str, options: JetStreamOptions
) -> ConsumerConfig:
    """The durable consumer every bus hosting ``worker`` shares for its job requests."""
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
    )


def instance_consumer_config(name: str, subject: str, options: JetStreamOptions) -> ConsumerConfig:
    """A consumer of one bus instance; the server deletes it if the instance goes away."""
    return ConsumerConfig(
        name=name,
        durable_name=name,
        filter_subject=subject,
        deliver_policy=DeliverPolicy.NEW,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=options.ack_wait,
        inactive_threshold=options.instance_inactive_threshold,
    )


async def ensure_consumer(jetstream: JetStreamContext, stream: str, config: ConsumerConfig) -> None:
    """Create a consumer; an existing one with other settings is shared as it is."""
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
