"""Round trips through natsbus.codec: every built-in class, lossless payloads, app types."""

from __future__ import annotations

import enum
import inspect
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from natsbus import codec, messages
from natsbus._codec_values import MAX_DEPTH
from natsbus.codec import Codec, MessageRegistry
from natsbus.frames import FrameDirection, TextFrame
from natsbus.messages import (
    BusActivateWorkerMessage,
    BusCancelMessage,
    BusCancelWorkerMessage,
    BusDataMessage,
    BusDeactivateWorkerMessage,
    BusEndMessage,
    BusEndWorkerMessage,
    BusFrameMessage,
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobResponseUrgentMessage,
    BusJobStreamDataMessage,
    BusJobStreamEndMessage,
    BusJobStreamStartMessage,
    BusJobUpdateMessage,
    BusJobUpdateRequestMessage,
    BusJobUpdateUrgentMessage,
    BusLocalMessage,
    BusMessage,
    BusSystemMessage,
    BusTTSSpeakMessage,
    BusWorkerErrorMessage,
    BusWorkerReadyMessage,
    BusWorkerRegistryMessage,
    JobStatus,
    WorkerRegistryEntry,
)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

PAYLOAD = {
    "n": 1,
    "big": 2**53 + 1,
    "neg": INT64_MIN,
    "x": 0.5,
    "s": "héllo ✓",
    "ok": True,
    "no": False,
    "none": None,
    "raw": b"\x00\xff",
    "list": [1, "two", [3.0, None], {}],
    "map": {"inner": {"deep": [True]}},
}


def _samples() -> list[BusMessage]:
    """One message of every built-in class, most fields set; optional ones vary below."""
    return [
        BusActivateWorkerMessage(args=PAYLOAD, source="runner", target="w1"),
        BusDeactivateWorkerMessage(source="runner", target="w1"),
        BusEndMessage(reason="done", source="w1"),
        BusEndWorkerMessage(reason="shutdown", source="runner", target="w1"),
        BusCancelMessage(reason="abort", source="w1"),
        BusCancelWorkerMessage(reason="abort", source="runner", target="w1"),
        BusWorkerErrorMessage(error="boom", source="w1"),
        BusWorkerReadyMessage(
            runner="r1", parent="p", active=True, bridged=True, started_at=1.5, source="w1"
        ),
        BusWorkerRegistryMessage(
            runner="r1",
            workers=[
                WorkerRegistryEntry(name="a"),
                WorkerRegistryEntry(
                    name="b", parent="a", active=True, bridged=True, started_at=2.0
                ),
                WorkerRegistryEntry(name="c", parent="", started_at=0.0),
            ],
            source="r1",
        ),
        BusTTSSpeakMessage(text="hi", append_to_context=False, source="w1", target="tts"),
        BusJobRequestMessage(job_id="j1", job_name="sum", payload=PAYLOAD, source="c", target="w"),
        BusJobResponseMessage(
            job_id="j1", status=JobStatus.COMPLETED, response=PAYLOAD, source="w", target="c"
        ),
        BusJobResponseUrgentMessage(job_id="j1", status=JobStatus.FAILED, source="w"),
        BusJobUpdateMessage(job_id="j1", update={"progress": 0.5}, source="w"),
        BusJobUpdateUrgentMessage(job_id="j1", update={"progress": 1}, source="w"),
        BusJobUpdateRequestMessage(job_id="j1", source="c", target="w"),
        BusJobStreamStartMessage(job_id="j1", data={"type": "text/plain"}, source="w"),
        BusJobStreamDataMessage(job_id="j1", data={"chunk": b"abc"}, source="w"),
        BusJobStreamEndMessage(job_id="j1", source="w"),
        BusJobCancelMessage(job_id="j1", reason="late", source="c", target="w"),
        # Every frame class is sampled in tests/test_frames_codec.py.
        BusFrameMessage(
            TextFrame("hi"), FrameDirection.UPSTREAM, bridge="voice", source="w", target="t"
        ),
    ]


def _roundtrip(message: BusMessage, c: Codec | None = None) -> BusMessage:
    c = c or Codec()
    decoded = c.decode(c.encode(message))
    assert type(decoded) is type(message)
    assert decoded == message
    return decoded


def test_every_network_message_class_has_a_sample() -> None:
    # A class added to natsbus.messages must be added to the codec (and to these samples).
    bases = {BusMessage, BusDataMessage, BusSystemMessage, messages.BusJobMessage}
    network_classes = {
        cls
        for _, cls in inspect.getmembers(messages, inspect.isclass)
        if issubclass(cls, BusMessage) and cls not in bases and not issubclass(cls, BusLocalMessage)
    }
    assert {type(m) for m in _samples()} == network_classes


@pytest.mark.parametrize("message", _samples(), ids=lambda m: type(m).__name__)
def test_builtin_round_trip_with_metadata(message: BusMessage) -> None:
    message.id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    message.sent_at = 1_767_225_600.123456
    message.trace_context = {"traceparent": "00-abc-def-01", "tracestate": "k=v"}
    decoded = _roundtrip(message)
    assert decoded.id == message.id
    assert decoded.sent_at == message.sent_at
    assert decoded.trace_context == message.trace_context
    assert decoded.source == message.source
    assert decoded.target == message.target


@pytest.mark.parametrize("message", _samples(), ids=lambda m: type(m).__name__)
def test_builtin_round_trip_with_defaults(message: BusMessage) -> None:
    # Metadata as a message has it before it is sent: empty id, zero time, no trace context.
    decoded = _roundtrip(message)
    assert decoded.id == ""
    assert decoded.sent_at == 0.0
    assert decoded.trace_context is None


@pytest.mark.parametrize(
    "message",
    [
        BusEndMessage(source="a"),
        BusEndMessage(reason="", source="a"),
        BusEndWorkerMessage(reason="", source="a"),
        BusCancelMessage(reason="", source="a"),
        BusCancelWorkerMessage(source="a"),
        BusJobCancelMessage(job_id="", reason="", source="a"),
        BusJobCancelMessage(job_id="j", source="a"),
        BusJobRequestMessage(job_id="", source="", target=""),
        BusJobRequestMessage(job_id="j", job_name="", payload={}, source="a"),
        BusJobRequestMessage(job_id="j", job_name=None, payload=None, source="a", target=None),
        BusActivateWorkerMessage(args={}, source="a"),
        BusActivateWorkerMessage(source="a"),
        BusWorkerReadyMessage(runner="", parent="", started_at=0.0, source="a"),
        BusWorkerReadyMessage(runner="r", source="a"),
        BusTTSSpeakMessage(text="", append_to_context=None, source="a"),
        BusTTSSpeakMessage(text="t", append_to_context=True, source="a"),
        BusJobStreamDataMessage(job_id="j", data={}, source="a"),
        BusJobUpdateMessage(job_id="j", update=None, source="a"),
        BusWorkerRegistryMessage(runner="r", workers=[], source="a"),
    ],
    ids=repr,
)
def test_none_and_empty_stay_apart(message: BusMessage) -> None:
    # Equality covers every field, so None vs "" (and None vs {}) must survive exactly.
    _roundtrip(message)


@pytest.mark.parametrize("status", list(JobStatus))
@pytest.mark.parametrize("cls", [BusJobResponseMessage, BusJobResponseUrgentMessage])
def test_job_status_round_trip(cls: type[Any], status: JobStatus) -> None:
    decoded = _roundtrip(cls(job_id="j", status=status, source="w"))
    assert decoded.status is status  # type: ignore[attr-defined]


def test_plain_str_status_is_accepted_and_comes_back_as_enum() -> None:
    message = BusJobResponseMessage(job_id="j", status="completed", source="w")  # type: ignore[arg-type]
    decoded = Codec().decode(Codec().encode(message))
    assert decoded.status is JobStatus.COMPLETED  # type: ignore[attr-defined]


def test_metadata_travels_but_takes_no_part_in_equality() -> None:
    message = BusJobUpdateRequestMessage(job_id="j", source="a")
    message.id = "id-1"
    message.trace_context = {}  # empty: nothing on the wire, None after decoding
    decoded = codec.decode(codec.encode(message))
    assert decoded.id == "id-1"
    assert decoded.trace_context is None
    decoded.id = "id-2"
    assert decoded == message


def test_builtin_wire_names() -> None:
    registry = MessageRegistry()
    assert registry.wire_name_of(BusJobRequestMessage) == "natsbus.job_request"
    assert registry.wire_name_of(BusJobResponseUrgentMessage) == "natsbus.job_response_urgent"
    assert registry.wire_name_of(BusTTSSpeakMessage) == "natsbus.tts_speak"
    assert registry.wire_name_of(messages.BusAddWorkerMessage) is None


def test_module_functions_use_the_default_codec() -> None:
    message = _samples()[10]
    assert codec.encode(message) == Codec().encode(message)
    assert codec.decode(codec.encode(message)) == message


def test_codec_settings() -> None:
    c = Codec(max_message_bytes=4096)
    assert c.max_message_bytes == 4096
    assert Codec().max_message_bytes == codec.DEFAULT_MAX_MESSAGE_BYTES == 1024 * 1024
    assert Codec().registry is codec.default_registry
    registry = MessageRegistry()
    assert Codec(registry=registry).registry is registry


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_codec_rejects_a_bad_limit(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_message_bytes"):
        Codec(max_message_bytes=bad)


# --- Lossless payloads -------------------------------------------------------------------------


def assert_same(actual: Any, expected: Any) -> None:
    """Equal, with exactly the same types (bool is not int) and the same key order."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            assert_same(actual[key], expected[key])
    elif isinstance(expected, list):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_same(a, e)
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual)
    elif isinstance(expected, float):
        assert actual == expected
        assert math.copysign(1.0, actual) == math.copysign(1.0, expected)  # -0.0 stays -0.0
    else:
        assert actual == expected


def _payload_round_trip(payload: dict[str, Any]) -> dict[str, Any]:
    c = Codec(max_message_bytes=16 * 1024 * 1024)
    decoded = c.decode(c.encode(BusJobRequestMessage(job_id="j", payload=payload, source="s")))
    result = decoded.payload  # type: ignore[attr-defined]
    assert isinstance(result, dict)
    return result


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=INT64_MIN, max_value=INT64_MAX)
    | st.sampled_from([INT64_MIN, INT64_MAX, 2**53 + 1, -(2**53) - 1, 0, -1])
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)
payloads = st.dictionaries(st.text(max_size=12), values, max_size=8)


@given(payloads)
def test_payload_round_trip_is_lossless(payload: dict[str, Any]) -> None:
    assert_same(_payload_round_trip(payload), payload)


def test_typical_payload_round_trip() -> None:
    assert_same(_payload_round_trip(PAYLOAD), PAYLOAD)


def test_nan_and_infinities() -> None:
    payload = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "-0": -0.0, "l": [math.nan]}
    assert_same(_payload_round_trip(payload), payload)


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"": ""},  # a lone empty string cannot use the joined text column
        {"a": "x\x00y"},  # a string holding the separator
        {"k\x00": "v"},  # a key holding it
        {"a": "", "b": ["", ""], "": {"": ""}},
        {"a": [[[[[]]]]], "b": [{}, {"c": {}}]},
        {"many": [[i] for i in range(150)], "maps": [{"i": i} for i in range(150)]},
        {"order": {"z": 1, "a": 2, "m": 3}},
        {"blobs": [b"", b"\x00", bytes(range(256))]},
        {"emoji": "🦜", "cjk": "漢字", "rtl": "שלום"},
    ],
    ids=repr,
)
def test_payload_edge_cases(payload: dict[str, Any]) -> None:
    assert_same(_payload_round_trip(payload), payload)


def test_nesting_up_to_the_limit_round_trips() -> None:
    deep: Any = []
    for _ in range(MAX_DEPTH - 2):  # the root map and the value under "d" make the rest
        deep = [deep]
    payload = {"d": deep}
    assert_same(_payload_round_trip(payload), payload)


def test_large_payload_round_trips() -> None:
    payload = {f"k{i}": [i, str(i), float(i), {"n": i}] for i in range(2_000)}
    assert_same(_payload_round_trip(payload), payload)


class Color(enum.IntEnum):
    RED = 1


class Mood(enum.StrEnum):
    HAPPY = "happy"


class MyFloat(float):
    pass


class MyBytes(bytes):
    pass


class MyList(list[Any]):
    pass


def test_subclasses_of_lossless_types_come_back_as_their_base_type() -> None:
    payload = {
        "color": Color.RED,
        "mood": Mood.HAPPY,
        "f": MyFloat(1.5),
        "b": MyBytes(b"x"),
        "od": OrderedDict(z=1, a=[Mood.HAPPY]),
        "ml": MyList([1, 2]),
    }
    decoded = _payload_round_trip(payload)
    assert decoded == payload
    assert_same(
        decoded,
        {
            "color": 1,
            "mood": "happy",
            "f": 1.5,
            "b": b"x",
            "od": {"z": 1, "a": ["happy"]},
            "ml": [1, 2],
        },
    )


def test_a_dict_subclass_payload_is_accepted() -> None:
    assert_same(_payload_round_trip(OrderedDict(a=1)), {"a": 1})  # type: ignore[arg-type]


# --- Application types -------------------------------------------------------------------------


@dataclass
class TranscriptReady(BusDataMessage):
    text: str
    words: list[Any] = field(default_factory=list)
    confidence: float | None = None
    computed: int = field(default=0, init=False)


@dataclass
class Opaque(BusSystemMessage):
    blob: Any = None


def _opaque_to_bytes(message: Opaque) -> bytes:
    return ",".join(map(str, sorted(message.blob))).encode()


def _opaque_from_bytes(data: bytes) -> Opaque:
    return Opaque(blob={int(x) for x in data.decode().split(",") if x}, source="ignored")


@pytest.fixture
def registry() -> MessageRegistry:
    return MessageRegistry()


def test_app_type_round_trip(registry: MessageRegistry) -> None:
    registry.register("acme.TranscriptReady", TranscriptReady)
    c = Codec(registry=registry)
    message = TranscriptReady(
        text="hi", words=[{"w": "hi", "t": 0.1}], confidence=None, source="asr", target="llm"
    )
    message.id = "m1"
    message.sent_at = 3.0
    message.trace_context = {"traceparent": "x"}
    decoded = c.decode(c.encode(message))
    assert type(decoded) is TranscriptReady
    assert decoded == message
    assert (decoded.id, decoded.sent_at, decoded.trace_context) == ("m1", 3.0, {"traceparent": "x"})
    assert registry.wire_name_of(TranscriptReady) == "acme.TranscriptReady"


def test_app_type_with_its_own_bytes(registry: MessageRegistry) -> None:
    registry.register(
        "acme.Opaque", Opaque, to_bytes=_opaque_to_bytes, from_bytes=_opaque_from_bytes
    )
    c = Codec(registry=registry)
    message = Opaque(blob={3, 1, 2}, source="a", target="b")
    decoded = c.decode(c.encode(message))
    assert type(decoded) is Opaque
    assert decoded == message
    assert (decoded.source, decoded.target) == ("a", "b")  # from the envelope, not from_bytes


def test_a_codec_sees_later_registrations(registry: MessageRegistry) -> None:
    c = Codec(registry=registry)
    registry.register("acme.TranscriptReady", TranscriptReady)
    message = TranscriptReady(text="late", source="asr")
    assert c.decode(c.encode(message)) == message


def test_registration_is_per_registry(registry: MessageRegistry) -> None:
    registry.register("acme.TranscriptReady", TranscriptReady)
    assert codec.default_registry.wire_name_of(TranscriptReady) is None
    assert MessageRegistry().wire_name_of(TranscriptReady) is None


def test_unknown_fields_from_a_newer_producer_are_ignored() -> None:
    @dataclass
    class V1(BusDataMessage):
        a: int

    @dataclass
    class V2(BusDataMessage):
        a: int
        b: str = ""

    old, new = MessageRegistry(), MessageRegistry()
    old.register("acme.Thing", V1)
    new.register("acme.Thing", V2)
    data = Codec(registry=new).encode(V2(a=1, b="new", source="s"))
    assert Codec(registry=old).decode(data) == V1(a=1, source="s")
