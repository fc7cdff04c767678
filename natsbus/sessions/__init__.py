"""Sessions on a fleet: serving processes that host many sessions, and shared services.

* :class:`SessionServer` (``natsbus serve app:make_session --group voice --slots 8``) takes a
  group's session requests while it has free slots; each session gets a channel, a bus and a
  runner of its own, and its workers from ``make_session(args)``.
* :class:`SessionHandle` is what ``await client.start_session("voice", args=...)`` returns.
* :class:`ServiceRunner` (``natsbus run ... --service``) hosts a service worker that sessions
  share and that only its own deployment ends.

See ``docs/sessions.md``.
"""

from natsbus.sessions.handle import SessionEnd, SessionHandle
from natsbus.sessions.host import SessionFactory, SessionHost
from natsbus.sessions.metrics import SESSION_METRIC_NAMES, SessionMetrics
from natsbus.sessions.protocol import Outcome, session_channel
from natsbus.sessions.serve import ServeOptions, SessionServer
from natsbus.workers.service import ServiceRunner

__all__ = [
    "SESSION_METRIC_NAMES",
    "Outcome",
    "ServeOptions",
    "ServiceRunner",
    "SessionEnd",
    "SessionFactory",
    "SessionHandle",
    "SessionHost",
    "SessionMetrics",
    "SessionServer",
    "session_channel",
]
