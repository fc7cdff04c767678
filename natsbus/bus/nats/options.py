"""Connection and JetStream settings for :class:`~natsbus.bus.nats.NatsBus`."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from natsbus._redact import REDACTED, redact_url

__all__ = ["JetStreamOptions", "NatsConnectOptions"]

DEFAULT_SERVERS: Final = ("nats://127.0.0.1:4222",)


@dataclass(frozen=True, kw_only=True)
class NatsConnectOptions:
    """How a NatsBus connects to NATS. Every field maps onto one ``nats.connect`` argument.

    Attributes:
        servers: One or more server URLs; the client fails over between them.
        name: Connection name shown by the server's monitoring (``/connz``); the bus appends
            ``:system`` and ``:data`` to tell its two connections apart.
        user: User name for user/password authentication.
        password: Password for user/password authentication.
        token: Token authentication.
        nkeys_seed: Path to an NKEY seed file.
        user_credentials: Path to a ``.creds`` file (JWT plus NKEY seed).
        tls: A ready :class:`ssl.SSLContext`; takes precedence over the file options below.
        tls_ca_file: CA bundle that signs the server certificate.
        tls_cert_file: Client certificate, for mutual TLS.
        tls_key_file: Client private key, for mutual TLS.
        tls_hostname: Host name to verify the server certificate against.
        connect_timeout: Seconds to wait for a server when connecting.
        reconnect_time_wait: Seconds between reconnect attempts.
        connect_attempts: Attempts per server when the bus starts; then ``start()`` fails with
            the last error (a wrong password fails fast instead of hanging).
        max_reconnect_attempts: Reconnect attempts, once connected, before giving up; -1
            retries forever.
        pending_size: Bytes the client buffers for core messages while reconnecting; beyond
            that a send raises and the message is counted as dropped.
        inbox_prefix: Prefix of the client's inboxes, where the server answers its requests
            and delivers its pulls; None (the default) is the bus's channel's
            (``SubjectLayout.inbox_prefix``), which the generated permissions allow.
    """

    servers: Sequence[str] = DEFAULT_SERVERS
    name: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    nkeys_seed: str | None = None
    user_credentials: str | None = None
    tls: ssl.SSLContext | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_hostname: str | None = None
    connect_timeout: float = 2.0
    reconnect_time_wait: float = 0.25
    connect_attempts: int = 5
    max_reconnect_attempts: int = -1
    pending_size: int = 8 * 1024 * 1024
    inbox_prefix: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.servers, str):
            object.__setattr__(self, "servers", (self.servers,))
        if not self.servers:
            raise ValueError("NatsConnectOptions.servers must name at least one server URL")
        if self.connect_attempts < 1:
            raise ValueError(
                f"NatsConnectOptions.connect_attempts must be >= 1, got {self.connect_attempts!r}"
            )
        if (self.user is None) != (self.password is None):
            raise ValueError("NatsConnectOptions: user and password go together")
        if self.tls_cert_file is not None and self.tls_key_file is None:
            raise ValueError("NatsConnectOptions: tls_cert_file needs tls_key_file")

    def redacted_servers(self) -> list[str]:
        """The server URLs as logs and errors show them: any password or token replaced."""
        return [redact_url(url) for url in self.servers]

    def redact(self, text: str) -> str:
        """``text`` with every secret of these options replaced (for an error from nats-py).

        The secrets are the password, the token, and whatever a server URL carries before
        its ``@``; the seed and credentials files are paths, whose contents are never read
        here.
        """
        secrets = {self.password, self.token}
        for url in self.servers:
            userinfo = urlsplit(url).netloc.rpartition("@")[0]
            secrets.update(userinfo.split(":", 1)[-1:] if userinfo else ())
        for secret in sorted((s for s in secrets if s), key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text

    def ssl_context(self) -> ssl.SSLContext | None:
        """Build the TLS context these options ask for, or None for plain TCP."""
        if self.tls is not None:
            return self.tls
        if self.tls_ca_file is None and self.tls_cert_file is None:
            return None
        context = ssl.create_default_context(cafile=self.tls_ca_file)
        if self.tls_cert_file is not None:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        return context

    def connect_kwargs(self, *, lane: str) -> dict[str, Any]:
        """Return the keyword arguments for ``nats.connect`` for one of the bus's connections.

        Args:
            lane: ``"system"`` or ``"data"``; it suffixes the connection name.
        """
        kwargs: dict[str, Any] = {
            "servers": list(self.servers),
            "name": f"{self.name or 'natsbus'}:{lane}",
            "connect_timeout": self.connect_timeout,
            "reconnect_time_wait": self.reconnect_time_wait,
            "max_reconnect_attempts": self.max_reconnect_attempts,
            "pending_size": self.pending_size,
            # A bus hands its own messages to its local subscribers directly; an echo from the
            # server would deliver them twice.
            "no_echo": True,
            # Every subject the bus uses is built from escaped tokens; nats-py's per-publish
            # regex check would only cost time.
            "skip_subject_validation": True,
        }
        optional = {
            "user": self.user,
            "password": self.password,
            "token": self.token,
            "nkeys_seed": self.nkeys_seed,
            "user_credentials": self.user_credentials,
            "tls": self.ssl_context(),
            "tls_hostname": self.tls_hostname,
            "inbox_prefix": self.inbox_prefix,
        }
        kwargs.update({key: value for key, value in optional.items() if value is not None})
        return kwargs


_MIN_DEDUPLICATION_WINDOW: Final = 120.0


@dataclass(frozen=True, kw_only=True)
class JetStreamOptions:
    """How a NatsBus keeps job messages on JetStream.

    Attributes:
        stream: Name of the stream that stores every channel's job controls and replies; job
            requests go to a work-queue stream named ``<stream>_REQUESTS``.
        replicas: Stream replicas; 3 on a clustered JetStream for a job to survive a node.
        max_age: Seconds a job message is kept (a request not taken by then is dropped).
        duplicate_window: Seconds within which a re-published message id is de-duplicated.
            None (the default): long enough for every redelivery of a request to find out
            whether an earlier delivery was answered (``ack_wait`` times ``max_attempts``, at
            least two minutes); see :attr:`deduplication_window`.
        ack_wait: Seconds a delivered job request may go without an ack or an in-progress
            signal before the server redelivers it to another bus.
        max_attempts: Deliveries of one job request before the bus gives up and answers the
            requester with status ``error`` instead of running it again.
        max_jobs_in_flight: Job requests one bus takes at once for each worker it hosts.
        instance_inactive_threshold: Seconds after which the server deletes the consumers of
            a bus instance that went away without cleaning up.
        job_consumer_inactive_threshold: Seconds after which the server deletes the job
            request consumer of a worker that no bus has hosted for that long (a channel per
            session leaves one behind per worker). Requests not yet taken stay stored, and the
            next bus to host the worker makes the consumer again and gets them.
        max_consumers: Consumers each of the two streams may have; None keeps the server's
            default (1,000 per stream from nats-server 2.15). A bus uses two consumers of the
            job stream, and each worker of a channel one of the request stream.
        publish_retry_interval: Seconds between attempts to store a job message while the
            server does not answer.
        outbox_size: Job messages held in memory while waiting to be stored; ``send()``
            waits for room beyond that.
        memory_consumers: Keep the state of the bus's job request consumers in the server's
            memory, not on disk (instance consumers always are): cheaper to make and delete,
            for short-lived channels (a session's). A server restart loses them; the bus
            makes them again (its pull loops do).
        fast_copies: Send each stored message but job requests a second time on core NATS,
            for its readers to get it without waiting for their consumer (see
            :mod:`natsbus.bus.nats.copies`): cancels and answers arrive sooner, for one more
            core message each.
    """

    stream: str = "NATSBUS_JOBS"
    replicas: int = 1
    max_age: float = 24 * 3600.0
    duplicate_window: float | None = None
    ack_wait: float = 30.0
    max_attempts: int = 5
    max_jobs_in_flight: int = 64
    instance_inactive_threshold: float = 300.0
    job_consumer_inactive_threshold: float = 3600.0
    max_consumers: int | None = None
    publish_retry_interval: float = 0.25
    outbox_size: int = 10_000
    memory_consumers: bool = False
    fast_copies: bool = True

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"JetStreamOptions.replicas must be >= 1, got {self.replicas!r}")
        if self.max_attempts < 1:
            raise ValueError(
                f"JetStreamOptions.max_attempts must be >= 1, got {self.max_attempts!r}"
            )
        if self.max_jobs_in_flight < 1:
            raise ValueError(
                f"JetStreamOptions.max_jobs_in_flight must be >= 1, got {self.max_jobs_in_flight!r}"
            )
        if self.ack_wait <= 0:
            raise ValueError(f"JetStreamOptions.ack_wait must be > 0, got {self.ack_wait!r}")
        for name in ("instance_inactive_threshold", "job_consumer_inactive_threshold"):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"JetStreamOptions.{name} must be > 0, got {value!r}")
        if self.duplicate_window is not None and self.duplicate_window <= 0:
            raise ValueError(
                f"JetStreamOptions.duplicate_window must be > 0, got {self.duplicate_window!r}"
            )
        if self.max_consumers is not None and self.max_consumers < 1:
            raise ValueError(
                f"JetStreamOptions.max_consumers must be >= 1 or None, got {self.max_consumers!r}"
            )

    @property
    def message_ttl(self) -> float:
        """Seconds a job's reply, control or claim stays in the job stream (its ``Nats-TTL``).

        What needs them once they were delivered: a redelivered request's check for its
        answer (within :attr:`deduplication_window`), and an instance consumer that waits for
        its bus through an outage (``instance_inactive_threshold``); new consumers read only
        what comes after them. Lifecycle messages and dead letters keep ``max_age``, for
        ``natsbus status`` and ``natsbus dlq``.
        """
        return min(self.max_age, max(self.deduplication_window, self.instance_inactive_threshold))

    @property
    def deduplication_window(self) -> float:
        """The streams' de-duplication window in seconds (``duplicate_window``, or derived).

        A redelivered request is checked against the answers stored within this window
        (:mod:`natsbus.bus.nats.answers`): set lower than ``ack_wait * max_attempts``, a
        request whose last deliveries come later than the window may run again.
        """
        if self.duplicate_window is not None:
            return self.duplicate_window
        return max(_MIN_DEDUPLICATION_WINDOW, self.ack_wait * self.max_attempts)
