"""The NATS + JetStream bus (``NatsBus``), for workers spread across processes and pods."""

from natsbus.bus.nats.bus import NatsBus
from natsbus.bus.nats.layout import SubjectLayout
from natsbus.bus.nats.options import JetStreamOptions, NatsConnectOptions
from natsbus.bus.nats.shared import NatsConnections

__all__ = ["JetStreamOptions", "NatsBus", "NatsConnectOptions", "NatsConnections", "SubjectLayout"]
