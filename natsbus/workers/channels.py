"""What a runner's workers ask another channel through (``self.job(..., channel=...)``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from natsbus.workers.handles import JobHandle
    from natsbus.workers.types import JobParams

__all__ = ["ChannelClient"]


class ChannelClient(Protocol):
    """What a runner's workers ask another channel through (a :class:`natsbus.BusClient`)."""

    def job(
        self,
        worker: str,
        *,
        name: str | None = None,
        payload: Any = None,
        timeout: float | None = None,
        params: JobParams | None = None,
    ) -> JobHandle:
        """A job on ``worker`` of that channel, as an ``async with`` block."""
        ...
