"""What a NatsBus does with bytes that arrive: decode them, or count, log and drop them.

A bus that meets a message it cannot decode (garbage, a type it does not know, a message over
its size limit) must keep serving: the message is counted by reason, logged at most once per
reason every ``log_interval`` seconds, and dropped.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict

from natsbus.codec import Codec
from natsbus.errors import (
    DecodeError,
    MessageTooLargeError,
    PayloadTooDeepError,
    UnknownMessageTypeError,
)
from natsbus.messages import BusMessage

__all__ = ["InboundDecoder", "RecentIds"]

logger = logging.getLogger("natsbus.bus.nats")


def decode_error_reason(error: Exception) -> str:
    """A short, bounded label for why a message could not be decoded."""
    if isinstance(error, UnknownMessageTypeError):
        return "unknown_type"
    if isinstance(error, MessageTooLargeError):
        return "too_large"
    if isinstance(error, PayloadTooDeepError):
        return "too_deep"
    return "malformed"


class InboundDecoder:
    """Decodes inbound messages, keeping count of the ones it had to drop.

    Args:
        codec: The codec (and its size limit) to decode with.
        log_interval: Seconds between two log lines for the same drop reason.
        dropped: Where to count drops by reason (a bus's ``NetworkCounts.decode_errors``);
            a counter of its own if not given.
    """

    def __init__(
        self, codec: Codec, *, log_interval: float = 10.0, dropped: Counter[str] | None = None
    ) -> None:
        self._codec = codec
        self._log_interval = log_interval
        self._last_logged: dict[str, float] = {}
        self.dropped: Counter[str] = dropped if dropped is not None else Counter()
        """Messages dropped so far, by reason (``malformed``, ``unknown_type``, ``too_large``)."""

    def decode(self, data: bytes, subject: str) -> BusMessage | None:
        """Decode one message, or count and drop it.

        Args:
            data: The bytes read off the wire.
            subject: Where they arrived, for the log.

        Returns:
            The message, or None if it was dropped.
        """
        try:
            return self._codec.decode(data)
        except (DecodeError, MessageTooLargeError) as error:
            self._drop(decode_error_reason(error), subject, error)
            return None

    def _drop(self, reason: str, subject: str, error: Exception) -> None:
        self.dropped[reason] += 1
        now = time.monotonic()
        if now - self._last_logged.get(reason, -self._log_interval) >= self._log_interval:
            self._last_logged[reason] = now
            logger.warning(
                "dropped an undecodable message on %s (%s: %s); %d dropped for this reason",
                subject,
                reason,
                error,
                self.dropped[reason],
            )


class RecentIds:
    """A bounded set of recently seen message ids, oldest forgotten first.

    JetStream delivers at least once; a redelivery whose id is here was already handed to the
    local subscribers and is acknowledged again instead of being delivered twice. An id also
    says whether its message was delivered by its **fast copy** (the core NATS copy of a
    stored message: see :mod:`natsbus.bus.nats.copies`), so that the stored copy that follows
    is dropped without being counted as a duplicate.

    Args:
        capacity: Ids remembered at most.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, bool] = OrderedDict()

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message_id: str, *, fast: bool = False) -> None:
        """Remember an id (``fast``: delivered by its fast copy), forgetting the oldest one."""
        self._ids[message_id] = fast
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)

    def fast(self, message_id: str) -> bool:
        """Whether ``message_id`` was delivered by its fast copy."""
        return self._ids.get(message_id, False)
