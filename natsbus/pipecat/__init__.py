"""pipecat apps on NATS: a pipecat ``WorkerBus`` over natsbus's transport, on natsbus's wire.

Needs the ``pipecat`` extra (``pip install 'natsbus[pipecat]'``, which pins ``pipecat-ai``).
The core ``natsbus`` package never imports this one.

Typical use, in a pipecat app that used ``RedisBus``::

    from natsbus.pipecat import NatsBus

    runner = WorkerRunner(bus=NatsBus(servers="nats://nats:4222", channel="session-42"))

pipecat frames and messages travel through closed tables (see ``docs/pipecat.md`` for the
frames that map); an app's own types cross once registered under explicit wire names::

    from natsbus.pipecat import register_frame_type

    register_frame_type("acme.VisemeFrame", VisemeFrame)
"""

from __future__ import annotations

try:
    import pipecat.bus  # noqa: F401  (fails here, with the fix, when the extra is missing)
except ImportError as error:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "natsbus.pipecat needs pipecat-ai: install natsbus with its pipecat extra"
        " (pip install 'natsbus[pipecat]')"
    ) from error

from natsbus.pipecat._frames import FrameMap, default_frames
from natsbus.pipecat._messages import MessageMap, default_messages
from natsbus.pipecat.bus import NatsBus

__all__ = [
    "FrameMap",
    "MessageMap",
    "NatsBus",
    "default_frames",
    "default_messages",
    "mapped_frame_types",
    "register_frame_type",
    "register_message_type",
]


register_frame_type = default_frames.register
"""Let an app's pipecat frame class cross the bus under an explicit wire name
(:meth:`FrameMap.register` of :data:`default_frames`)."""

register_message_type = default_messages.register
"""Let an app's pipecat bus message class cross the network under an explicit wire name
(:meth:`MessageMap.register` of :data:`default_messages`)."""

mapped_frame_types = default_frames.mapped
"""Every pipecat frame class that crosses the bus now (built-in rows and registered)."""
