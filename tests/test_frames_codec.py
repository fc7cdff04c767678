"""Frames through the codec: every built-in frame, application frames, and bad input."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from natsbus import frames as fr
from natsbus._proto.v1.envelope_pb2 import Envelope as PB2Envelope
from natsbus.codec import Codec, MessageRegistry
from natsbus.errors import (
    EncodeError,
    MalformedMessageError,
    RegistrationError,
    UnknownMessageTypeError,
    UnsupportedValueError,
)
from natsbus.frames import Frame, FrameDirection
from natsbus.messages import BusFrameMessage

PCM = bytes(range(256)) * 2 + b"\x00" * 128  # 640 bytes: 20 ms of 16 kHz mono


def _samples() -> list[Frame]:
    """One frame of every built-in class, most fields set."""
    return [
        fr.StartFrame(audio_in_sample_rate=8000, audio_out_sample_rate=48000),
        fr.EndFrame(reason="bye"),
        fr.CancelFrame(reason="abort"),
        fr.StopFrame(),
        fr.InterruptionFrame(),
        fr.ErrorFrame("boom", fatal=True),
        fr.OutputTransportMessageUrgentFrame({"type": "urgent", "n": 1}),
        fr.OutputTransportMessageFrame(["a", 1, None, b"\x00"]),
        fr.TextFrame("héllo ✓"),
        fr.TranscriptionFrame("hi there", "user-1", "2026-05-09T07:35:25Z", language="en"),
        fr.InterimTranscriptionFrame("hi th", "user-1", "2026-05-09T07:35:24Z"),
        fr.TTSSpeakFrame("say this", append_to_context=True),
        fr.LLMMessagesFrame([{"role": "user", "content": "hi"}, {"role": "system", "n": 2**40}]),
        fr.LLMSetToolsFrame([{"name": "lookup", "parameters": {"type": "object"}}]),
        fr.InputAudioRawFrame(PCM, 16000, 1),
        fr.OutputAudioRawFrame(PCM, 24000, 2),
        fr.TTSAudioRawFrame(PCM, 24000, 1),
        fr.InputImageRawFrame(b"\x01\x02\x03" * 4, (2, 2), "RGB"),
        fr.OutputImageRawFrame(b"\xff\xd8jpeg", (640, 480)),
    ]


def _roundtrip(frame: Frame, codec: Codec | None = None, **kwargs: Any) -> Frame:
    codec = codec or Codec()
    message = BusFrameMessage(frame, FrameDirection.DOWNSTREAM, source="a", **kwargs)
    decoded = codec.decode(codec.encode(message))
    assert isinstance(decoded, BusFrameMessage)
    assert decoded == message
    assert type(decoded.frame) is type(frame)
    return decoded.frame


def test_every_builtin_frame_class_has_a_sample() -> None:
    bases = {Frame, fr.SystemFrame, fr.DataFrame, fr.ControlFrame}
    classes = {
        cls
        for _, cls in inspect.getmembers(fr, inspect.isclass)
        if issubclass(cls, Frame) and cls not in bases
    }
    assert {type(f) for f in _samples()} == classes


@pytest.mark.parametrize("frame", _samples(), ids=lambda f: type(f).__name__)
def test_builtin_frame_round_trip(frame: Frame) -> None:
    frame.pts = 123_456_789
    frame.metadata = {"turn": 3, "raw": b"\x00", "nested": {"ok": True}}
    decoded = _roundtrip(frame)
    assert decoded.id == frame.id
    assert decoded.name == frame.name
    assert decoded.pts == 123_456_789
    assert decoded.bus_source is None


@pytest.mark.parametrize("frame", _samples(), ids=lambda f: type(f).__name__)
def test_builtin_frame_round_trip_with_defaults(frame: Frame) -> None:
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(frame)
        if f.init and f.default is not dataclasses.MISSING and f.name not in ("pts", "name")
    }
    plain = dataclasses.replace(frame, **defaults)
    assert _roundtrip(plain).pts is None


def test_id_and_name_take_no_part_in_equality_but_pts_and_metadata_do() -> None:
    a, b = fr.TextFrame("x"), fr.TextFrame("x")
    assert a.id != b.id and a.name != b.name
    assert a == b
    assert fr.TextFrame("x", pts=1) != fr.TextFrame("x", pts=2)
    assert fr.TextFrame("x", metadata={"a": 1}) != fr.TextFrame("x")
    # Same fields, different class: not equal.
    assert fr.OutputAudioRawFrame(PCM, 16000, 1) != fr.TTSAudioRawFrame(PCM, 16000, 1)


def test_direction_and_bridge_travel() -> None:
    codec = Codec()
    for direction in FrameDirection:
        for bridge in (None, "", "voice"):
            message = BusFrameMessage(fr.TextFrame("t"), direction, bridge, source="s", target="t")
            decoded = codec.decode(codec.encode(message))
            assert decoded == message
            assert decoded.direction is direction  # type: ignore[attr-defined]


def test_audio_bytes_travel_raw_without_base64() -> None:
    data = Codec().encode(BusFrameMessage(fr.InputAudioRawFrame(PCM, 16000, 1), 1, source="s"))  # type: ignore[arg-type]
    assert PCM in data
    assert len(data) < len(PCM) + 100


@given(st.text())
def test_any_text_round_trips(text: str) -> None:
    assert _roundtrip(fr.TextFrame(text)).text == text  # type: ignore[attr-defined]
    frame = fr.TranscriptionFrame(text, user_id=text, timestamp=text, language=text)
    assert _roundtrip(frame) == frame


@given(st.binary(max_size=4096), st.integers(1, 192_000), st.integers(1, 8))
def test_any_audio_round_trips(audio: bytes, rate: int, channels: int) -> None:
    frame = fr.OutputAudioRawFrame(audio, rate, channels)
    assert _roundtrip(frame) == frame


@given(st.binary(max_size=4096), st.tuples(st.integers(0, 2**31), st.integers(0, 2**31)))
def test_any_image_round_trips(image: bytes, size: tuple[int, int]) -> None:
    frame = fr.InputImageRawFrame(image, size, "RGB")
    assert _roundtrip(frame) == frame


def test_unsupported_values_are_refused() -> None:
    codec = Codec()
    bad: list[Any] = [
        fr.TextFrame("x", metadata={"t": (1, 2)}),
        fr.LLMMessagesFrame([("not", "a dict")]),  # type: ignore[list-item]
        fr.LLMMessagesFrame("not a list"),  # type: ignore[arg-type]
        fr.OutputTransportMessageFrame({1, 2}),
        fr.TextFrame("x", pts=2**64),
    ]
    for frame in bad:
        with pytest.raises(UnsupportedValueError):
            codec.encode(BusFrameMessage(frame, FrameDirection.DOWNSTREAM, source="s"))
    with pytest.raises(UnsupportedValueError):
        codec.encode(BusFrameMessage("not a frame", FrameDirection.DOWNSTREAM, source="s"))  # type: ignore[arg-type]
    with pytest.raises(UnsupportedValueError):
        codec.encode(BusFrameMessage(fr.TextFrame("x"), 3, source="s"))  # type: ignore[arg-type]


# --- Application frames -----------------------------------------------------------------------


@dataclass
class VisemeFrame(fr.DataFrame):
    viseme: str
    weights: list[float] = field(default_factory=list)


@dataclass
class Point:
    x: int
    y: int


@dataclass
class PointerFrame(fr.SystemFrame):
    point: Point


def _point_to_bytes(frame: PointerFrame) -> bytes:
    return f"{frame.point.x},{frame.point.y}".encode()


def _point_from_bytes(data: bytes) -> PointerFrame:
    x, y = data.decode().split(",")
    return PointerFrame(Point(int(x), int(y)))


@pytest.fixture
def registry() -> MessageRegistry:
    return MessageRegistry()


def test_app_frame_round_trip(registry: MessageRegistry) -> None:
    registry.register_frame_type("acme.Viseme", VisemeFrame)
    assert registry.frame_wire_name_of(VisemeFrame) == "acme.Viseme"
    assert registry.frame_wire_name_of(fr.TextFrame) == "natsbus.frame.text"
    frame = VisemeFrame("aa", [0.5, 1.0], pts=7, metadata={"k": "v"})
    decoded = _roundtrip(frame, Codec(registry=registry))
    assert decoded.id == frame.id


def test_app_frame_with_its_own_bytes(registry: MessageRegistry) -> None:
    registry.register_frame_type(
        "acme.Pointer", PointerFrame, to_bytes=_point_to_bytes, from_bytes=_point_from_bytes
    )
    frame = PointerFrame(Point(3, -4), pts=9)
    decoded = _roundtrip(frame, Codec(registry=registry))
    assert (decoded.id, decoded.name, decoded.pts) == (frame.id, frame.name, 9)


def test_unregistered_app_frames_and_subclasses_are_refused(registry: MessageRegistry) -> None:
    @dataclass
    class MyText(fr.TextFrame):
        pass

    codec = Codec(registry=registry)
    for frame in (VisemeFrame("aa"), MyText("x")):
        with pytest.raises(EncodeError, match="register_frame_type"):
            codec.encode(BusFrameMessage(frame, FrameDirection.DOWNSTREAM, source="s"))


def test_an_unknown_app_frame_is_an_unknown_type(registry: MessageRegistry) -> None:
    registry.register_frame_type("acme.Viseme", VisemeFrame)
    data = Codec(registry=registry).encode(
        BusFrameMessage(VisemeFrame("aa"), FrameDirection.DOWNSTREAM, source="s")
    )
    with pytest.raises(UnknownMessageTypeError) as caught:
        Codec().decode(data)
    assert caught.value.wire_name == "acme.Viseme"


@pytest.mark.parametrize(
    ("wire_name", "cls"),
    [
        ("", VisemeFrame),
        ("has space", VisemeFrame),
        ("natsbus.mine", VisemeFrame),
        ("acme.Text", fr.TextFrame),  # a built-in is registered already
        ("acme.NotAFrame", Point),
        ("acme.Plain", type("Plain", (VisemeFrame,), {})),  # not a dataclass itself
    ],
)
def test_bad_frame_registrations(registry: MessageRegistry, wire_name: str, cls: Any) -> None:
    with pytest.raises(RegistrationError):
        registry.register_frame_type(wire_name, cls)


def test_a_taken_frame_name_or_class_is_refused(registry: MessageRegistry) -> None:
    registry.register_frame_type("acme.Viseme", VisemeFrame)
    with pytest.raises(RegistrationError, match="taken"):
        registry.register_frame_type("acme.Viseme", PointerFrame)
    with pytest.raises(RegistrationError, match="already registered"):
        registry.register_frame_type("acme.Viseme2", VisemeFrame)
    with pytest.raises(RegistrationError, match="both"):
        registry.register_frame_type("acme.P", PointerFrame, to_bytes=_point_to_bytes)


# --- Bad input ----------------------------------------------------------------------------------


def _envelope(frame: Frame | None = None) -> PB2Envelope:
    env = PB2Envelope()
    env.source = "s"
    env.frame.direction = 1  # type: ignore[assignment]
    if frame is not None:
        env.frame.frame.id = frame.id
        env.frame.frame.text.text = "x"
    return env


def test_a_frame_body_from_a_newer_producer_is_an_unknown_type() -> None:
    env = _envelope()
    # Field 63 of Frame: unknown to this version, as a newer producer's frame type would be.
    env.frame.frame.MergeFromString(b"\xfa\x03\x00")
    with pytest.raises(UnknownMessageTypeError, match="frame field 63"):
        Codec().decode(env.SerializeToString())


def test_a_frame_message_without_frame_or_direction_is_malformed() -> None:
    with pytest.raises(MalformedMessageError, match="without its frame"):
        Codec().decode(_envelope().SerializeToString())
    env = _envelope(fr.TextFrame("x"))
    env.frame.direction = 0  # type: ignore[assignment]
    with pytest.raises(MalformedMessageError, match="direction"):
        Codec().decode(env.SerializeToString())


def test_a_bad_app_frame_body_is_malformed(registry: MessageRegistry) -> None:
    registry.register_frame_type(
        "acme.Pointer", PointerFrame, to_bytes=_point_to_bytes, from_bytes=_point_from_bytes
    )
    env = _envelope()
    env.frame.frame.custom.wire_name = "acme.Pointer"
    env.frame.frame.custom.data = b"nonsense"
    with pytest.raises(MalformedMessageError, match="from_bytes"):
        Codec(registry=registry).decode(env.SerializeToString())
