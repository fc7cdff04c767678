"""Frames and ``BusFrameMessage`` <-> their wire form (part of the codec).

A ``BusFrameMessage`` travels in the envelope's ``frame`` body (``proto/natsbus/v1/frames.proto``):
the direction, the bridge name and one ``Frame``, which holds the frame's base fields (id,
name, pts, metadata) and exactly one body. Every built-in frame class of
:mod:`natsbus.frames` has a body field; an application's own frame classes travel in the
``custom`` body under the wire name they were registered with, in a closed registry, exactly as
application message types do.

Audio and image bytes are protobuf ``bytes`` fields, set and read as they are: protobuf copies
them into its buffer on encoding and out of it on decoding, and nothing else does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.unknown_fields import UnknownFieldSet as PB2UnknownFieldSet

from natsbus import frames as fr
from natsbus._codec_values import decode_payload, encode_payload
from natsbus._proto.v1 import frames_pb2 as _pb_frames
from natsbus._proto.v1.envelope_pb2 import Envelope as PB2Envelope
from natsbus._proto.v1.frames_pb2 import Frame as PB2Frame
from natsbus._proto.v1.frames_pb2 import FrameMessage as PB2FrameMessage
from natsbus._proto.v1.messages_pb2 import Custom as PB2Custom
from natsbus.errors import (
    DecodeError,
    EncodeError,
    MalformedMessageError,
    RegistrationError,
    UnknownMessageTypeError,
    UnsupportedValueError,
)
from natsbus.messages import BusFrameMessage, BusMessage

__all__ = ["FRAME_MESSAGE_FIELD", "FRAME_WIRE_PREFIX", "FrameRegistry"]

FRAME_MESSAGE_FIELD: Final = "frame"
"""The envelope body field that carries a BusFrameMessage."""
FRAME_WIRE_PREFIX: Final = "natsbus.frame."
"""Wire names of built-in frame types are this prefix plus their body field name."""
_RESERVED_PREFIX: Final = "natsbus."

# Base fields of every frame, carried by the Frame message itself rather than a custom body.
_BASE_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(fr.Frame))

_DIRECTION_TO_WIRE: Final[dict[int, int]] = {
    fr.FrameDirection.DOWNSTREAM: _pb_frames.FRAME_DIRECTION_DOWNSTREAM,
    fr.FrameDirection.UPSTREAM: _pb_frames.FRAME_DIRECTION_UPSTREAM,
}
_DIRECTION_FROM_WIRE: Final[dict[int, fr.FrameDirection]] = {
    wire: fr.FrameDirection(value) for value, wire in _DIRECTION_TO_WIRE.items()
}

_Encode = Callable[[Any, Any], None]  # (frame, body message) -> None
_Decode = Callable[[Any, dict[str, Any]], fr.Frame]  # (body message, base kwargs) -> frame


@dataclass(frozen=True, slots=True)
class _Builtin:
    """How one built-in frame class travels: its body field and the two conversions."""

    field: str
    cls: type[fr.Frame]
    encode: _Encode
    decode: _Decode


def _empty(field: str, cls: type[Any]) -> _Builtin:
    def encode(frame: Any, body: Any) -> None:
        body.SetInParent()

    def decode(body: Any, base: dict[str, Any]) -> fr.Frame:
        return cls(**base)  # type: ignore[no-any-return]

    return _Builtin(field, cls, encode, decode)


def _reason(field: str, cls: type[Any]) -> _Builtin:
    def encode(frame: Any, body: Any) -> None:
        body.SetInParent()
        if frame.reason is not None:
            body.reason = frame.reason

    def decode(body: Any, base: dict[str, Any]) -> fr.Frame:
        return cls(reason=body.reason if body.HasField("reason") else None, **base)  # type: ignore[no-any-return]

    return _Builtin(field, cls, encode, decode)


def _transport_message(field: str, cls: type[Any]) -> _Builtin:
    def encode(frame: Any, body: Any) -> None:
        encode_payload({"message": frame.message}, body.message)

    def decode(body: Any, base: dict[str, Any]) -> fr.Frame:
        message = decode_payload(body.message).get("message") if body.HasField("message") else None
        return cls(message, **base)  # type: ignore[no-any-return]

    return _Builtin(field, cls, encode, decode)


def _transcription(field: str, cls: type[Any]) -> _Builtin:
    def encode(frame: Any, body: Any) -> None:
        body.text = frame.text
        body.user_id = frame.user_id
        body.timestamp = frame.timestamp
        if frame.language is not None:
            body.language = frame.language

    def decode(body: Any, base: dict[str, Any]) -> fr.Frame:
        language = body.language if body.HasField("language") else None
        return cls(body.text, body.user_id, body.timestamp, language, **base)  # type: ignore[no-any-return]

    return _Builtin(field, cls, encode, decode)


def _payload_list(field: str, cls: type[Any], attr: str) -> _Builtin:
    """LLMMessagesFrame and LLMSetToolsFrame: a list of payload dicts."""

    def encode(frame: Any, body: Any) -> None:
        items = getattr(frame, attr)
        if not isinstance(items, list):
            raise UnsupportedValueError(f"{cls.__name__}.{attr} must be a list, not {items!r}")
        body.SetInParent()
        add = getattr(body, attr).add
        for item in items:
            encode_payload(item, add())

    def decode(body: Any, base: dict[str, Any]) -> fr.Frame:
        return cls([decode_payload(item) for item in getattr(body, attr)], **base)  # type: ignore[no-any-return]

    return _Builtin(field, cls, encode, decode)


def _audio(field: str, cls: type[Any]) -> _Builtin:
    def encode(frame: Any, body: Any) -> None:
        body.audio = frame.audio
        body.sample_rate = frame.sample_rate
        body.num_channels = frame.num_channels

    def decode(body: Any, base: dict[str, Any]) -> fr.Frame:
        return cls(body.audio, body.sample_rate, body.num_channels, **base)  # type: ignore[no-any-return]

    return _Builtin(field, cls, encode, decode)


def _image(field: str, cls: type[Any]) -> _Builtin:
    def encode(frame: Any, body: Any) -> None:
        body.image = frame.image
        body.width, body.height = frame.size
        if frame.format is not None:
            body.format = frame.format

    def decode(body: Any, base: dict[str, Any]) -> fr.Frame:
        image_format = body.format if body.HasField("format") else None
        return cls(body.image, (body.width, body.height), image_format, **base)  # type: ignore[no-any-return]

    return _Builtin(field, cls, encode, decode)


def _encode_start(frame: fr.StartFrame, body: _pb_frames.StartFrame) -> None:
    body.audio_in_sample_rate = frame.audio_in_sample_rate
    body.audio_out_sample_rate = frame.audio_out_sample_rate


def _decode_start(body: _pb_frames.StartFrame, base: dict[str, Any]) -> fr.Frame:
    return fr.StartFrame(body.audio_in_sample_rate, body.audio_out_sample_rate, **base)


def _encode_error(frame: fr.ErrorFrame, body: _pb_frames.ErrorFrame) -> None:
    body.error = frame.error
    body.fatal = frame.fatal


def _decode_error(body: _pb_frames.ErrorFrame, base: dict[str, Any]) -> fr.Frame:
    return fr.ErrorFrame(body.error, body.fatal, **base)


def _encode_text(frame: fr.TextFrame, body: _pb_frames.TextFrame) -> None:
    body.text = frame.text


def _decode_text(body: _pb_frames.TextFrame, base: dict[str, Any]) -> fr.Frame:
    return fr.TextFrame(body.text, **base)


def _encode_tts_speak(frame: fr.TTSSpeakFrame, body: _pb_frames.TtsSpeakFrame) -> None:
    body.text = frame.text
    if frame.append_to_context is not None:
        body.append_to_context = frame.append_to_context


def _decode_tts_speak(body: _pb_frames.TtsSpeakFrame, base: dict[str, Any]) -> fr.Frame:
    append = body.append_to_context if body.HasField("append_to_context") else None
    return fr.TTSSpeakFrame(body.text, append, **base)


BUILTIN_FRAMES: Final[tuple[_Builtin, ...]] = (
    _Builtin("start", fr.StartFrame, _encode_start, _decode_start),
    _reason("end", fr.EndFrame),
    _reason("cancel", fr.CancelFrame),
    _empty("stop", fr.StopFrame),
    _empty("interruption", fr.InterruptionFrame),
    _Builtin("error", fr.ErrorFrame, _encode_error, _decode_error),
    _transport_message("output_transport_message_urgent", fr.OutputTransportMessageUrgentFrame),
    _Builtin("text", fr.TextFrame, _encode_text, _decode_text),
    _transcription("transcription", fr.TranscriptionFrame),
    _transcription("interim_transcription", fr.InterimTranscriptionFrame),
    _Builtin("tts_speak", fr.TTSSpeakFrame, _encode_tts_speak, _decode_tts_speak),
    _payload_list("llm_messages", fr.LLMMessagesFrame, "messages"),
    _payload_list("llm_set_tools", fr.LLMSetToolsFrame, "tools"),
    _transport_message("output_transport_message", fr.OutputTransportMessageFrame),
    _audio("input_audio_raw", fr.InputAudioRawFrame),
    _audio("output_audio_raw", fr.OutputAudioRawFrame),
    _audio("tts_audio_raw", fr.TTSAudioRawFrame),
    _image("input_image_raw", fr.InputImageRawFrame),
    _image("output_image_raw", fr.OutputImageRawFrame),
)
"""Every built-in frame class, in body field order."""


@dataclass(frozen=True, slots=True)
class _CustomFrame:
    """An application frame type registered under its own wire name."""

    wire_name: str
    cls: type[fr.Frame]
    fields: tuple[str, ...]  # in declaration order, so that encoding is deterministic
    field_set: frozenset[str]
    to_bytes: Callable[[Any], bytes] | None
    from_bytes: Callable[[bytes], Any] | None

    def encode(self, frame: Any, body: PB2Custom) -> None:
        body.wire_name = self.wire_name
        if self.to_bytes is None:
            encode_payload({name: getattr(frame, name) for name in self.fields}, body.fields)
            return
        try:
            data = self.to_bytes(frame)
        except EncodeError:
            raise
        except Exception as exc:
            raise EncodeError(f"to_bytes of frame {self.wire_name!r} failed: {exc!r}") from exc
        if not isinstance(data, bytes):
            raise EncodeError(
                f"to_bytes of frame {self.wire_name!r} returned {type(data).__name__}, not bytes"
            )
        body.data = data

    def decode(self, body: PB2Custom, base: dict[str, Any]) -> fr.Frame:
        content = body.WhichOneof("content")
        if self.from_bytes is None:
            if content != "fields":
                raise MalformedMessageError(f"frame {self.wire_name!r} arrived without fields")
            # Fields of a newer producer are ignored, as protobuf ignores unknown fields.
            known = self.field_set
            kwargs = {k: v for k, v in decode_payload(body.fields).items() if k in known}
            try:
                return self.cls(**kwargs, **base)
            except Exception as exc:
                raise MalformedMessageError(
                    f"cannot build {self.cls.__name__} from frame {self.wire_name!r}: {exc!r}"
                ) from exc
        if content != "data":
            raise MalformedMessageError(f"frame {self.wire_name!r} arrived without its bytes")
        try:
            frame = self.from_bytes(body.data)
        except DecodeError:
            raise
        except Exception as exc:
            raise MalformedMessageError(
                f"from_bytes of frame {self.wire_name!r} failed: {exc!r}"
            ) from exc
        if not isinstance(frame, self.cls):
            raise MalformedMessageError(
                f"from_bytes of frame {self.wire_name!r} returned {type(frame).__name__}, "
                f"not {self.cls.__name__}"
            )
        for name, value in base.items():
            setattr(frame, name, value)
        return frame


def _base_fields(pb: PB2Frame) -> dict[str, Any]:
    """The keyword arguments every frame class takes: id, name, pts, metadata."""
    return {
        "id": pb.id,
        "name": pb.name,
        "pts": pb.pts if pb.HasField("pts") else None,
        "metadata": decode_payload(pb.metadata) if pb.HasField("metadata") else {},
    }


class FrameRegistry:
    """The closed set of frame types a codec can carry; part of a ``MessageRegistry``.

    Holds every built-in frame class; applications add theirs with :meth:`register`.
    """

    def __init__(self) -> None:
        self._encoders: dict[type, tuple[str, _Encode]] = {}
        self._decoders: dict[str, _Decode] = {"custom": self._decode_custom}
        self._custom: dict[str, _CustomFrame] = {}
        self._wire_names: dict[type, str] = {}
        for builtin in BUILTIN_FRAMES:
            self._encoders[builtin.cls] = (builtin.field, builtin.encode)
            self._decoders[builtin.field] = builtin.decode
            self._wire_names[builtin.cls] = FRAME_WIRE_PREFIX + builtin.field

    def register(
        self,
        wire_name: str,
        cls: type[fr.Frame],
        *,
        to_bytes: Callable[[Any], bytes] | None = None,
        from_bytes: Callable[[bytes], Any] | None = None,
    ) -> None:
        """Register an application frame class under an explicit wire name.

        See ``natsbus.codec.register_frame_type`` for the rules.

        Raises:
            RegistrationError: The name or the class is invalid or already registered.
        """
        if not isinstance(wire_name, str) or not wire_name:
            raise RegistrationError(f"a wire name must be a non-empty str, not {wire_name!r}")
        if not wire_name.isprintable() or any(ch.isspace() for ch in wire_name):
            raise RegistrationError(f"wire name {wire_name!r} holds whitespace or control chars")
        if wire_name.startswith(_RESERVED_PREFIX):
            raise RegistrationError(
                f"wire name {wire_name!r} uses the prefix {_RESERVED_PREFIX!r}, kept for "
                "built-in types"
            )
        if wire_name in self._custom:
            taken_by = self._custom[wire_name].cls.__qualname__
            raise RegistrationError(f"frame wire name {wire_name!r} is already taken by {taken_by}")
        if not isinstance(cls, type) or not issubclass(cls, fr.Frame):
            raise RegistrationError(f"{cls!r} is not a Frame subclass")
        if "__dataclass_fields__" not in vars(cls):
            raise RegistrationError(f"{cls.__qualname__} is not a dataclass (add @dataclass)")
        if cls in self._wire_names:
            raise RegistrationError(
                f"{cls.__qualname__} is already registered as {self._wire_names[cls]!r}"
            )
        if (to_bytes is None) != (from_bytes is None):
            raise RegistrationError(f"{wire_name!r}: give both to_bytes and from_bytes, or neither")
        fields = tuple(
            f.name for f in dataclasses.fields(cls) if f.init and f.name not in _BASE_FIELDS
        )
        custom = _CustomFrame(wire_name, cls, fields, frozenset(fields), to_bytes, from_bytes)
        self._custom[wire_name] = custom
        self._encoders[cls] = ("custom", custom.encode)
        self._wire_names[cls] = wire_name

    def wire_name_of(self, cls: type) -> str | None:
        """Return the wire name a frame class travels under, or None if it is not registered."""
        return self._wire_names.get(cls)

    def encode_frame(self, frame: fr.Frame, out: PB2Frame) -> None:
        """Fill a ``Frame`` message from a frame.

        Raises:
            UnsupportedValueError: ``frame`` is not a Frame, or a value has no wire form.
            EncodeError: The frame's class is not registered.
        """
        entry = self._encoders.get(type(frame))
        if entry is None:
            if not isinstance(frame, fr.Frame):
                raise UnsupportedValueError(f"{type(frame).__name__} is not a Frame")
            raise EncodeError(
                f"frame class {type(frame).__qualname__} is not registered: call "
                "register_frame_type() with a wire name for it (subclasses do not inherit "
                "their base's registration)"
            )
        field, encode = entry
        out.id = frame.id
        out.name = frame.name
        pts = frame.pts
        if pts is not None:
            out.pts = pts
        if frame.metadata:
            encode_payload(frame.metadata, out.metadata)
        encode(frame, getattr(out, field))

    def decode_frame(self, pb: PB2Frame) -> fr.Frame:
        """Build a frame from a ``Frame`` message.

        Raises:
            UnknownMessageTypeError: The body is empty, or names an unregistered frame type.
            MalformedMessageError: The body cannot be made into its frame class.
        """
        field = pb.WhichOneof("body")
        decode = self._decoders.get(field)  # type: ignore[arg-type]
        if decode is None:
            unknown = PB2UnknownFieldSet(pb)
            numbers = sorted({unknown[i].field_number for i in range(len(unknown))})
            raise UnknownMessageTypeError(f"<frame field {numbers[-1]}>" if numbers else "<frame>")
        return decode(getattr(pb, field), _base_fields(pb))  # type: ignore[arg-type]

    def encode_message(self, message: BusFrameMessage, env: PB2Envelope) -> None:
        """Fill the envelope's ``frame`` body from a BusFrameMessage."""
        body = env.frame
        direction = _DIRECTION_TO_WIRE.get(message.direction)
        if direction is None:
            raise UnsupportedValueError(f"direction {message.direction!r} is not a FrameDirection")
        body.direction = direction  # type: ignore[assignment]
        if message.bridge is not None:
            body.bridge = message.bridge
        self.encode_frame(message.frame, body.frame)

    def decode_message(self, body: PB2FrameMessage, source: str, target: str | None) -> BusMessage:
        """Build a BusFrameMessage from the envelope's ``frame`` body."""
        direction = _DIRECTION_FROM_WIRE.get(body.direction)
        if direction is None:
            raise MalformedMessageError(f"unknown frame direction number {body.direction}")
        if not body.HasField("frame"):
            raise MalformedMessageError("a frame message arrived without its frame")
        return BusFrameMessage(
            self.decode_frame(body.frame),
            direction,
            body.bridge if body.HasField("bridge") else None,
            source=source,
            target=target,
        )

    def _decode_custom(self, body: PB2Custom, base: dict[str, Any]) -> fr.Frame:
        registered = self._custom.get(body.wire_name)
        if registered is None:
            raise UnknownMessageTypeError(body.wire_name)
        return registered.decode(body, base)
