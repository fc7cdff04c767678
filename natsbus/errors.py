"""Exceptions raised by natsbus.

Every error the library raises on purpose derives from :class:`NatsBusError`, and where a
builtin fits it is a base too, so ``except ValueError`` keeps working for callers who do not
know natsbus. The hierarchy::

    NatsBusError
    ├── CodecError                      bytes <-> message failures
    │   ├── DecodeError (ValueError)        bytes that are not a message
    │   │   ├── MalformedMessageError           not a valid envelope at all
    │   │   └── UnknownMessageTypeError         a wire type nobody registered
    │   ├── EncodeError (ValueError)        a message that cannot become bytes
    │   │   ├── LocalOnlyMessageError           a BusLocalMessage, which never leaves the process
    │   │   └── UnsupportedValueError (TypeError) a payload value with no lossless wire form
    │   ├── PayloadTooDeepError             nested past MAX_DEPTH: an UnsupportedValueError
    │   │                                   and a MalformedMessageError (either direction)
    │   └── MessageTooLargeError (ValueError) over the configured size limit (either direction)
    ├── RegistrationError (ValueError)  a wire name or class registered twice or badly
    ├── BusClosedError (RuntimeError)   the bus was stopped by its owner ("closed by us")
    ├── BusUnavailableError (ConnectionError)  the network broke it: the server is away and
    │                                   nothing more can be buffered ("broken by the peer")
    ├── BusPermissionError (PermissionError)  the server refused an operation the bus needs
    │                                   (its NATS user lacks a permission)
    ├── UnknownChannelError (LookupError)  a job asked on a channel the runner is not joined to
    └── SessionError                    a session (``natsbus serve``) did not start or run
        ├── SessionStartError               refused: bad arguments, a factory that raised,
        │   │                               workers that were not ready in time
        │   └── SessionStartTimeoutError (TimeoutError)  no serving process took it in time
        └── SessionFailedError              its serving process went away (or stopped
                                            answering) while it ran
"""

from __future__ import annotations

__all__ = [
    "BusClosedError",
    "BusPermissionError",
    "BusUnavailableError",
    "CodecError",
    "DecodeError",
    "EncodeError",
    "LocalOnlyMessageError",
    "MalformedMessageError",
    "MessageTooLargeError",
    "NatsBusError",
    "PayloadTooDeepError",
    "RegistrationError",
    "SessionError",
    "SessionFailedError",
    "SessionStartError",
    "SessionStartTimeoutError",
    "UnknownChannelError",
    "UnknownMessageTypeError",
    "UnsupportedValueError",
]


class NatsBusError(Exception):
    """Root of every error natsbus raises on purpose."""


class CodecError(NatsBusError):
    """A message could not be turned into bytes, or bytes into a message."""


class DecodeError(CodecError, ValueError):
    """Bytes read off the wire are not a message this process can decode."""


class MalformedMessageError(DecodeError):
    """The bytes are not a valid natsbus envelope (truncated, garbage, or inconsistent)."""


class UnknownMessageTypeError(DecodeError):
    """The envelope names a message type that is not in this process's registry.

    Attributes:
        wire_name: The type name read off the wire.
    """

    def __init__(self, wire_name: str) -> None:
        super().__init__(f"unknown message type {wire_name!r}: register it before decoding")
        self.wire_name = wire_name


class EncodeError(CodecError, ValueError):
    """A message cannot be encoded."""


class LocalOnlyMessageError(EncodeError):
    """A :class:`~natsbus.BusLocalMessage` was asked to cross the network.

    Attributes:
        message_type: The class name of the refused message.
    """

    def __init__(self, message_type: str) -> None:
        super().__init__(f"{message_type} is local-only and never leaves the process")
        self.message_type = message_type


class UnsupportedValueError(EncodeError, TypeError):
    """A payload holds a value with no lossless wire form (a set, an object, a non-str key...)."""


class PayloadTooDeepError(UnsupportedValueError, MalformedMessageError):
    """A payload nests containers deeper than ``natsbus.codec.MAX_DEPTH`` levels.

    The same limit, and this same error, on both sides: :func:`~natsbus.encode` refuses such a
    payload (it is an :class:`UnsupportedValueError`), and so does the decoder (it is a
    :class:`MalformedMessageError`), whoever produced the bytes.
    """


class MessageTooLargeError(CodecError, ValueError):
    """A message is larger than the limit in force.

    Attributes:
        size: The message's size in bytes.
        limit: The limit it broke, in bytes.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class RegistrationError(NatsBusError, ValueError):
    """A message or frame type was registered under a bad or already-taken wire name."""


class BusClosedError(NatsBusError, RuntimeError):
    """The bus was stopped by its owner and accepts no more messages."""


class BusUnavailableError(NatsBusError, ConnectionError):
    """The NATS server cannot be reached and the message could not be buffered for later."""


class BusPermissionError(NatsBusError, PermissionError):
    """The NATS server refused an operation the bus needs: its user lacks a permission.

    ``natsbus permissions`` prints the set a bus needs for its role.

    Attributes:
        operation: ``"publish"`` or ``"subscribe"``.
        subject: The subject the server refused.
    """

    def __init__(self, operation: str, subject: str) -> None:
        super().__init__(
            f"the NATS server refused to let this user {operation} on {subject!r}: its"
            " permissions lack it (see `natsbus permissions` for the set a bus needs)"
        )
        self.operation = operation
        self.subject = subject


class UnknownChannelError(NatsBusError, LookupError):
    """``job(..., channel=C)`` named a channel its runner has no client for.

    Attributes:
        channel: The channel asked for.
    """

    def __init__(self, channel: str, known: list[str]) -> None:
        super().__init__(f"no client for channel {channel!r} on this runner (has {known!r})")
        self.channel = channel


class SessionError(NatsBusError):
    """A session did not start, or did not run to its end.

    Attributes:
        session_id: The session's id.
    """

    def __init__(self, message: str, *, session_id: str) -> None:
        super().__init__(message)
        self.session_id = session_id


class SessionStartError(SessionError):
    """The serving process refused the session or could not start it (see the message)."""


class SessionStartTimeoutError(SessionStartError, TimeoutError):
    """No serving process started the session within the requester's timeout."""


class SessionFailedError(SessionError):
    """The session's serving process died or stopped answering while the session ran."""
