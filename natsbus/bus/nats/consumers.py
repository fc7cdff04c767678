"""How far behind the JetStream consumers of a NatsBus are, as the server sees them."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from nats.js.client import JetStreamContext

from natsbus.bus.statistics import ConsumerStatistics
from natsbus.messages import Lane

__all__ = ["ConsumerStatistics", "query_consumers"]

logger = logging.getLogger(__name__)


async def query_consumers(
    jetstream: Mapping[Lane, JetStreamContext],
    wanted: Iterable[tuple[str, str, Lane, str, str]],
    timeout: float,
) -> list[ConsumerStatistics]:
    """Ask the server about each consumer; those it cannot answer for now are left out.

    Args:
        jetstream: The bus's JetStream contexts by lane (``sys``, ``data``).
        wanted: ``(role, worker, lane, stream, consumer name)`` for each consumer.
        timeout: Seconds to wait for each answer.
    """
    found: list[ConsumerStatistics] = []
    for role, worker, lane, stream, name in wanted:
        try:
            info = await jetstream[lane].consumer_info(stream, name, timeout=timeout)
        except Exception:  # away, or deleted meanwhile: nothing to say about it now
            logger.debug("consumer_info(%s) failed", name, exc_info=True)
            continue
        found.append(
            ConsumerStatistics(
                role,
                worker,
                lane.value,
                name,
                int(info.num_pending or 0),
                int(info.num_ack_pending or 0),
            )
        )
    return found
