"""Bus messages <-> bytes, through a closed registry of wire types.

A message travels as one ``natsbus.v1.Envelope`` (``proto/natsbus/v1/envelope.proto``):
metadata (id, send time, source, target, trace context) and exactly one body. Built-in
classes each have a body field; an application's own classes travel in the ``custom`` body
under the wire name they were registered with.

Decoding never imports or builds anything from a name read off the wire: the body field, or
the custom wire name, is looked up in a closed registry filled by explicit calls, and anything
else is an :class:`~natsbus.errors.UnknownMessageTypeError`.

Wire names: built-in types are ``natsbus.<body field>`` (``natsbus.job_request``,
``natsbus.job_response_urgent``...), and the ``natsbus.`` prefix is reserved. Applications pick
their own names, preferably namespaced (``acme.TranscriptReady``).

Typical use::

    from natsbus import codec

    data = codec.encode(message)  # the default codec: 1 MiB limit, default registry
    message = codec.decode(data)

    codec.register_message_type("acme.TranscriptReady", TranscriptReady)
    codec.register_frame_type("acme.VisemeFrame", VisemeFrame)
    small = codec.Codec(max_message_bytes=64 * 1024)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from google.protobuf.message import DecodeError as PB2DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet as PB2UnknownFieldSet

from natsbus._codec_registry import MessageRegistry
from natsbus._proto.v1.envelope_pb2 import Envelope as PB2Envelope
from natsbus.errors import (
    EncodeError,
    MalformedMessageError,
    MessageTooLargeError,
    UnknownMessageTypeError,
    UnsupportedValueError,
)
from natsbus.frames import Frame
from natsbus.messages import BusJobRequestMessage, BusMessage

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "Codec",
    "MessageRegistry",
    "decode",
    "default_registry",
    "encode",
    "register_frame_type",
    "register_message_type",
]

DEFAULT_MAX_MESSAGE_BYTES: Final = 1024 * 1024
"""Default size limit of an encoded message: 1 MiB, NATS's default max_payload."""


def _describe_missing_body(env: PB2Envelope) -> str:
    """Name an envelope's body for UnknownMessageTypeError when no known field holds one."""
    unknown = PB2UnknownFieldSet(env)
    numbers = sorted({unknown[i].field_number for i in range(len(unknown))})
    # A newer producer's body type shows up as an unknown field: name its number.
    return f"<envelope field {numbers[-1]}>" if numbers else ""


default_registry: Final = MessageRegistry()
"""The process-wide registry that :func:`register_message_type` fills."""


class Codec:
    """Encodes and decodes bus messages under a size limit.

    A codec holds no per-message state and may be shared. Its registry is shared too: a type
    registered in :data:`default_registry` is known to every codec that uses it.

    Args:
        max_message_bytes: Largest encoded message accepted, in bytes, when encoding and when
            decoding (default 1 MiB).
        registry: The message types to know; None for :data:`default_registry`.

    Raises:
        ValueError: ``max_message_bytes`` is not a positive int.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        registry: MessageRegistry | None = None,
    ) -> None:
        if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int):
            raise ValueError(f"max_message_bytes must be an int, not {max_message_bytes!r}")
        if max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be positive, not {max_message_bytes!r}")
        self._max_message_bytes = max_message_bytes
        self._registry = default_registry if registry is None else registry
        # The registry's own dicts, not copies, so that later registrations are seen.
        self._encoders = self._registry._encoders
        self._decoders = self._registry._decoders

    @property
    def max_message_bytes(self) -> int:
        """Largest encoded message accepted, in bytes."""
        return self._max_message_bytes

    @property
    def registry(self) -> MessageRegistry:
        """The registry of message types this codec knows."""
        return self._registry

    def encode(self, message: BusMessage) -> bytes:
        """Encode a message, with its envelope metadata (id, sent_at, trace_context, routing).

        Args:
            message: A registered, non-local message.

        Returns:
            The encoded envelope.

        Raises:
            LocalOnlyMessageError: The message is a :class:`~natsbus.messages.BusLocalMessage`.
            UnsupportedValueError: A field or payload value has no lossless wire form.
            EncodeError: The message's class is not registered (or a ``to_bytes`` failed).
            MessageTooLargeError: The encoded message is over :attr:`max_message_bytes`.
        """
        fill = self._encoders.get(type(message))
        if fill is None:
            raise self._registry._unencodable(message)
        env = PB2Envelope()
        try:
            env.id = message.id
            env.sent_at = message.sent_at
            env.source = message.source
            if message.target is not None:
                env.target = message.target
            trace_context = message.trace_context
            if trace_context:
                env_trace_context = env.trace_context
                # Item by item: the map's update() goes through slow MutableMapping mixins.
                for key, value in trace_context.items():
                    env_trace_context[key] = value
            fill(message, env)
            if type(message) is BusJobRequestMessage:
                # A job request's routing lives in the envelope, not in the user's payload.
                env.reply_to = message.reply_to
                if message.deadline is not None:
                    env.deadline = message.deadline
        except EncodeError:
            raise
        except (TypeError, ValueError, AttributeError) as exc:
            # The protobuf runtime refuses a field of the wrong type or invalid Unicode (and a
            # trace_context that is not a dict has no items()).
            raise UnsupportedValueError(f"cannot encode {type(message).__name__}: {exc}") from exc
        data = env.SerializeToString()
        if len(data) > self._max_message_bytes:
            raise MessageTooLargeError(len(data), self._max_message_bytes)
        return data

    def decode(self, data: bytes) -> BusMessage:
        """Decode bytes into a message carrying its envelope metadata.

        The size is checked before anything is parsed. The message's ``id``, ``sent_at`` and
        ``trace_context`` (None when empty) are set from the envelope.

        Args:
            data: Bytes produced by :meth:`encode` (here or in another process).

        Returns:
            A new message of the registered class.

        Raises:
            MessageTooLargeError: ``data`` is over :attr:`max_message_bytes`.
            MalformedMessageError: ``data`` is not a valid envelope.
            UnknownMessageTypeError: The body is empty, or names a type nobody registered.
        """
        if len(data) > self._max_message_bytes:
            raise MessageTooLargeError(len(data), self._max_message_bytes)
        try:
            env = PB2Envelope.FromString(data)
        except PB2DecodeError as exc:
            raise MalformedMessageError(f"not a natsbus envelope: {exc}") from exc
        field = env.WhichOneof("body")
        decoder = self._decoders.get(field)  # type: ignore[arg-type]
        if decoder is None:
            raise UnknownMessageTypeError(_describe_missing_body(env))
        target = env.target if env.HasField("target") else None
        message = decoder(getattr(env, field), env.source, target)  # type: ignore[arg-type]
        message.id = env.id
        message.sent_at = env.sent_at
        trace_context = env.trace_context
        # A comprehension: dict(map) goes through slow Mapping mixins of the protobuf runtime.
        message.trace_context = (
            {k: trace_context[k] for k in trace_context} if trace_context else None
        )
        if field == "job_request":
            assert isinstance(message, BusJobRequestMessage)
            message.reply_to = env.reply_to
            message.deadline = env.deadline if env.HasField("deadline") else None
        return message


_default_codec: Final = Codec()


def encode(message: BusMessage) -> bytes:
    """Encode a message with the default codec (1 MiB limit, :data:`default_registry`).

    Args:
        message: A registered, non-local message.

    Returns:
        The encoded envelope.

    Raises:
        LocalOnlyMessageError: The message is a :class:`~natsbus.messages.BusLocalMessage`.
        UnsupportedValueError: A field or payload value has no lossless wire form.
        EncodeError: The message's class is not registered.
        MessageTooLargeError: The encoded message is over 1 MiB.
    """
    return _default_codec.encode(message)


def decode(data: bytes) -> BusMessage:
    """Decode bytes with the default codec (1 MiB limit, :data:`default_registry`).

    Args:
        data: Bytes produced by :func:`encode`.

    Returns:
        A new message carrying its envelope metadata.

    Raises:
        MessageTooLargeError: ``data`` is over 1 MiB.
        MalformedMessageError: ``data`` is not a valid envelope.
        UnknownMessageTypeError: The body is empty, or names a type nobody registered.
    """
    return _default_codec.decode(data)


def register_message_type(
    wire_name: str,
    cls: type[BusMessage],
    *,
    to_bytes: Callable[[Any], bytes] | None = None,
    from_bytes: Callable[[bytes], Any] | None = None,
) -> None:
    """Register an application message class in :data:`default_registry`.

    See :meth:`MessageRegistry.register` for the rules.

    Args:
        wire_name: The name the type travels under.
        cls: A dataclass subclass of :class:`~natsbus.messages.BusMessage`.
        to_bytes: Optional bytes form of a message; give both callables or neither.
        from_bytes: Optional inverse of ``to_bytes``.

    Raises:
        RegistrationError: The name or the class is invalid or already registered.
    """
    default_registry.register(wire_name, cls, to_bytes=to_bytes, from_bytes=from_bytes)


def register_frame_type(
    wire_name: str,
    cls: type[Frame],
    *,
    to_bytes: Callable[[Any], bytes] | None = None,
    from_bytes: Callable[[bytes], Any] | None = None,
) -> None:
    """Register an application frame class in :data:`default_registry`.

    See :meth:`MessageRegistry.register_frame_type` for the rules.

    Args:
        wire_name: The name the frame type travels under.
        cls: A dataclass subclass of :class:`~natsbus.frames.Frame`.
        to_bytes: Optional bytes form of a frame; give both callables or neither.
        from_bytes: Optional inverse of ``to_bytes``.

    Raises:
        RegistrationError: The name or the class is invalid or already registered.
    """
    default_registry.register_frame_type(wire_name, cls, to_bytes=to_bytes, from_bytes=from_bytes)
