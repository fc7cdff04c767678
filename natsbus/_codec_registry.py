"""The closed registry of message types that a codec knows (part of the codec).

Built-in classes are registered when a :class:`MessageRegistry` is made; an application adds
its own with :meth:`MessageRegistry.register`. Nothing is ever looked up by importing a name:
decoding finds a type in these dicts or fails with
:class:`~natsbus.errors.UnknownMessageTypeError`. Public names are re-exported by
:mod:`natsbus.codec`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from natsbus._codec_builtins import BUILTIN_WIRE_PREFIX, BUILTINS, BodyDecoder, BodyEncoder
from natsbus._codec_frames import FRAME_MESSAGE_FIELD, FrameRegistry
from natsbus._codec_values import decode_payload, encode_payload
from natsbus._proto.v1.envelope_pb2 import Envelope as PB2Envelope
from natsbus._proto.v1.messages_pb2 import Custom as PB2Custom
from natsbus.errors import (
    DecodeError,
    EncodeError,
    LocalOnlyMessageError,
    MalformedMessageError,
    RegistrationError,
    UnknownMessageTypeError,
    UnsupportedValueError,
)
from natsbus.frames import Frame
from natsbus.messages import BusFrameMessage, BusLocalMessage, BusMessage

__all__ = ["MessageRegistry"]

# Fields of every BusMessage that the envelope carries rather than a custom body.
_ENVELOPE_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(BusMessage))


@dataclass(frozen=True, slots=True)
class _CustomType:
    """An application type registered under its own wire name."""

    wire_name: str
    cls: type[BusMessage]
    fields: tuple[str, ...]  # in declaration order, so that encoding is deterministic
    field_set: frozenset[str]
    to_bytes: Callable[[Any], bytes] | None
    from_bytes: Callable[[bytes], Any] | None

    def encode(self, message: Any, env: PB2Envelope) -> None:
        body = env.custom
        body.wire_name = self.wire_name
        if self.to_bytes is None:
            encode_payload({name: getattr(message, name) for name in self.fields}, body.fields)
            return
        try:
            data = self.to_bytes(message)
        except EncodeError:
            raise
        except Exception as exc:
            raise EncodeError(f"to_bytes of {self.wire_name!r} failed: {exc!r}") from exc
        if not isinstance(data, bytes):
            raise EncodeError(
                f"to_bytes of {self.wire_name!r} returned {type(data).__name__}, not bytes"
            )
        body.data = data

    def decode(self, body: PB2Custom, source: str, target: str | None) -> BusMessage:
        content = body.WhichOneof("content")
        if self.from_bytes is None:
            if content != "fields":
                raise MalformedMessageError(f"{self.wire_name!r} arrived without its fields")
            # Fields this version does not know (from a newer producer) are ignored, as
            # protobuf ignores unknown fields; a missing required one fails the constructor.
            known = self.field_set
            kwargs = {k: v for k, v in decode_payload(body.fields).items() if k in known}
            try:
                return self.cls(**kwargs, source=source, target=target)
            except Exception as exc:
                raise MalformedMessageError(
                    f"cannot build {self.cls.__name__} from {self.wire_name!r}: {exc!r}"
                ) from exc
        if content != "data":
            raise MalformedMessageError(f"{self.wire_name!r} arrived without its bytes")
        try:
            message = self.from_bytes(body.data)
        except DecodeError:
            raise
        except Exception as exc:
            raise MalformedMessageError(
                f"from_bytes of {self.wire_name!r} failed: {exc!r}"
            ) from exc
        if not isinstance(message, self.cls):
            raise MalformedMessageError(
                f"from_bytes of {self.wire_name!r} returned {type(message).__name__}, "
                f"not {self.cls.__name__}"
            )
        message.source = source
        message.target = target
        return message


class MessageRegistry:
    """The closed set of message types a codec can encode and decode.

    A new registry holds every built-in class of :mod:`natsbus.messages` except the local-only
    ones. Applications add their own classes with :meth:`register`. Most code uses the
    process-wide :data:`default_registry`; tests can give a :class:`Codec` a fresh one.
    """

    def __init__(self) -> None:
        self._encoders: dict[type, BodyEncoder] = {}
        # Keyed by the envelope's body field; the `custom` body looks its wire name up next.
        self._decoders: dict[str, BodyDecoder] = {"custom": self._decode_custom}
        self._custom: dict[str, _CustomType] = {}
        self._wire_names: dict[type, str] = {}
        for builtin in BUILTINS:
            self._encoders[builtin.cls] = builtin.encode
            self._decoders[builtin.field] = builtin.decode
            self._wire_names[builtin.cls] = builtin.wire_name
        # BusFrameMessage needs this registry's frame types, so its codec is bound to them.
        self._frames = FrameRegistry()
        self._encoders[BusFrameMessage] = self._frames.encode_message
        self._decoders[FRAME_MESSAGE_FIELD] = self._frames.decode_message
        self._wire_names[BusFrameMessage] = BUILTIN_WIRE_PREFIX + FRAME_MESSAGE_FIELD

    def register(
        self,
        wire_name: str,
        cls: type[BusMessage],
        *,
        to_bytes: Callable[[Any], bytes] | None = None,
        from_bytes: Callable[[bytes], Any] | None = None,
    ) -> None:
        """Register an application message class under an explicit wire name.

        By default the class's own dataclass fields (every ``__init__`` field but ``source``
        and ``target``, which the envelope carries) travel as a lossless map, so their values
        must be payload values: None, bool, int, float, str, bytes, list, dict. A class whose
        fields are not can bring its own bytes form instead with ``to_bytes``/``from_bytes``.

        Args:
            wire_name: The name the type travels under: non-empty, printable, no whitespace,
                not starting with ``natsbus.`` (kept for built-ins), not taken.
            cls: A dataclass subclass of :class:`~natsbus.messages.BusMessage` that is not a
                :class:`~natsbus.messages.BusLocalMessage` and is not registered yet.
            to_bytes: Turns a message into bytes (its source, target and envelope metadata
                excluded: the codec carries those). Give both callables or neither.
            from_bytes: Turns those bytes back into an instance of ``cls``; its ``source`` and
                ``target`` are then set from the envelope. An exception it raises becomes a
                :class:`~natsbus.errors.MalformedMessageError`.

        Raises:
            RegistrationError: The name or the class is invalid or already registered.
        """
        self._check_wire_name(wire_name)
        self._check_class(cls)
        if (to_bytes is None) != (from_bytes is None):
            raise RegistrationError(f"{wire_name!r}: give both to_bytes and from_bytes, or neither")
        fields = tuple(
            f.name for f in dataclasses.fields(cls) if f.init and f.name not in _ENVELOPE_FIELDS
        )
        custom = _CustomType(wire_name, cls, fields, frozenset(fields), to_bytes, from_bytes)
        self._custom[wire_name] = custom
        self._encoders[cls] = custom.encode
        self._wire_names[cls] = wire_name

    def register_frame_type(
        self,
        wire_name: str,
        cls: type[Frame],
        *,
        to_bytes: Callable[[Any], bytes] | None = None,
        from_bytes: Callable[[bytes], Any] | None = None,
    ) -> None:
        """Register an application frame class under an explicit wire name.

        The frame then travels in a ``BusFrameMessage``. Its base fields (``id``, ``name``,
        ``pts``, ``metadata``) always travel in the frame's own wire form; by default its other
        dataclass fields travel as a lossless map, so their values must be payload values. A
        class whose fields are not brings its own bytes form with ``to_bytes``/``from_bytes``.
        Frame wire names are a namespace of their own, apart from message wire names.

        Args:
            wire_name: The name the frame type travels under: non-empty, printable, no
                whitespace, not starting with ``natsbus.`` (kept for built-ins), not taken.
            cls: A dataclass subclass of :class:`~natsbus.frames.Frame`, not registered yet
                (a subclass of a built-in frame needs its own registration).
            to_bytes: Turns a frame into bytes (its base fields excluded). Give both
                callables or neither.
            from_bytes: Turns those bytes back into an instance of ``cls``; its base fields
                are then set from the wire. An exception it raises becomes a
                :class:`~natsbus.errors.MalformedMessageError`.

        Raises:
            RegistrationError: The name or the class is invalid or already registered.
        """
        self._frames.register(wire_name, cls, to_bytes=to_bytes, from_bytes=from_bytes)

    def frame_wire_name_of(self, cls: type) -> str | None:
        """Return the wire name a frame class travels under.

        Args:
            cls: A frame class.

        Returns:
            Its wire name (``natsbus.frame.<body field>`` for built-ins), or None if the class
            is not registered here.
        """
        return self._frames.wire_name_of(cls)

    def wire_name_of(self, cls: type) -> str | None:
        """Return the wire name a class travels under.

        Args:
            cls: A message class.

        Returns:
            Its wire name (``natsbus.<body field>`` for built-ins), or None if the class is
            not registered here (subclasses are not registered by their base).
        """
        return self._wire_names.get(cls)

    def _check_wire_name(self, wire_name: object) -> None:
        if not isinstance(wire_name, str) or not wire_name:
            raise RegistrationError(f"a wire name must be a non-empty str, not {wire_name!r}")
        if not wire_name.isprintable() or any(ch.isspace() for ch in wire_name):
            raise RegistrationError(f"wire name {wire_name!r} holds whitespace or control chars")
        if wire_name.startswith(BUILTIN_WIRE_PREFIX):
            raise RegistrationError(
                f"wire name {wire_name!r} uses the prefix {BUILTIN_WIRE_PREFIX!r}, kept for "
                "built-in types"
            )
        if wire_name in self._custom:
            taken_by = self._custom[wire_name].cls.__qualname__
            raise RegistrationError(f"wire name {wire_name!r} is already taken by {taken_by}")

    def _check_class(self, cls: object) -> None:
        if not isinstance(cls, type) or not issubclass(cls, BusMessage):
            raise RegistrationError(f"{cls!r} is not a BusMessage subclass")
        # Decorated itself, not only through its base: fields a plain subclass adds would not
        # be dataclass fields, and would be dropped on the wire without a word.
        if "__dataclass_fields__" not in vars(cls):
            raise RegistrationError(f"{cls.__qualname__} is not a dataclass (add @dataclass)")
        if issubclass(cls, BusLocalMessage):
            raise RegistrationError(f"{cls.__qualname__} is local-only and never travels")
        if cls in self._wire_names:
            raise RegistrationError(
                f"{cls.__qualname__} is already registered as {self._wire_names[cls]!r}"
            )

    def _unencodable(self, message: object) -> EncodeError:
        """The error for a message whose exact class has no encoder."""
        if isinstance(message, BusLocalMessage):
            return LocalOnlyMessageError(type(message).__name__)
        if not isinstance(message, BusMessage):
            return UnsupportedValueError(f"{type(message).__name__} is not a BusMessage")
        return EncodeError(
            f"{type(message).__qualname__} is not registered: call register_message_type() "
            "with a wire name for it (subclasses do not inherit their base's registration)"
        )

    def _decode_custom(self, body: PB2Custom, source: str, target: str | None) -> BusMessage:
        registered = self._custom.get(body.wire_name)
        if registered is None:
            raise UnknownMessageTypeError(body.wire_name)
        return registered.decode(body, source, target)
