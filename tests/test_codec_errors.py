"""Every typed error of natsbus.codec, and bytes off the wire that must not crash it."""

from __future__ import annotations

import contextlib
import decimal
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from natsbus._codec_values import MAX_DEPTH, _check_decoded
from natsbus._proto.v1.envelope_pb2 import Envelope as PB2Envelope
from natsbus._proto.v1.messages_pb2 import Custom as PB2Custom
from natsbus._proto.v1.messages_pb2 import JobRequest as PB2JobRequest
from natsbus._proto.v1.messages_pb2 import JobResponse as PB2JobResponse
from natsbus._proto.v1.value_pb2 import Values as PB2Values
from natsbus.codec import Codec, MessageRegistry
from natsbus.errors import (
    CodecError,
    DecodeError,
    EncodeError,
    LocalOnlyMessageError,
    MalformedMessageError,
    MessageTooLargeError,
    PayloadTooDeepError,
    RegistrationError,
    UnknownMessageTypeError,
    UnsupportedValueError,
)
from natsbus.messages import (
    BusAddWorkerMessage,
    BusDataMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusLocalMessage,
    BusSystemMessage,
    BusWorkerLocalErrorMessage,
    JobStatus,
)

# Value kind numbers, as in proto/natsbus/v1/value.proto.
NULL, FALSE, TRUE, INT, DOUBLE, STRING, BYTES, LIST, MAP = range(1, 10)


def _request(payload: Any = None, **fields: Any) -> BusJobRequestMessage:
    return BusJobRequestMessage(job_id="j", payload=payload, source="s", **fields)


# --- Malformed and unknown -------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"\xff", b"\x0a\x05ab", b"\x80", b"\x12\x08\x00", b"\xff" * 64],
    ids=repr,
)
def test_malformed_bytes(data: bytes) -> None:
    with pytest.raises(MalformedMessageError) as caught:
        Codec().decode(data)
    assert isinstance(caught.value, ValueError)  # callers who only know builtins still catch it


def test_empty_body_is_an_unknown_type() -> None:
    data = PB2Envelope(id="x", source="s").SerializeToString()
    with pytest.raises(UnknownMessageTypeError) as caught:
        Codec().decode(data)
    assert caught.value.wire_name == ""
    with pytest.raises(UnknownMessageTypeError):
        Codec().decode(b"")


def test_body_from_a_newer_producer_is_an_unknown_type() -> None:
    # Field 50 (kept for frames) with an empty body: what an older consumer sees.
    data = PB2Envelope(source="s").SerializeToString() + bytes([0x92, 0x03, 0x00])
    with pytest.raises(UnknownMessageTypeError) as caught:
        Codec().decode(data)
    assert "50" in caught.value.wire_name


def test_unregistered_custom_name_is_an_unknown_type() -> None:
    env = PB2Envelope(source="s", custom=PB2Custom(wire_name="acme.Nope", data=b""))
    with pytest.raises(UnknownMessageTypeError) as caught:
        Codec().decode(env.SerializeToString())
    assert caught.value.wire_name == "acme.Nope"


@pytest.mark.parametrize("status", [0, 5, 99, -1])
def test_unknown_job_status_number_is_malformed(status: int) -> None:
    env = PB2Envelope(source="s", job_response=PB2JobResponse(job_id="j", status=status))
    with pytest.raises(MalformedMessageError, match="status"):
        Codec().decode(env.SerializeToString())


def _with_payload(values: PB2Values) -> bytes:
    return PB2Envelope(
        source="s", job_request=PB2JobRequest(job_id="j", payload=values)
    ).SerializeToString()


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(PB2Values(msgpack=b""), id="empty"),
        pytest.param(PB2Values(msgpack=msgpack.packb([1, 2])), id="root list"),
        pytest.param(PB2Values(msgpack=msgpack.packb("text")), id="root str"),
        pytest.param(PB2Values(msgpack=b"\x81\xa1k"), id="truncated map"),
        pytest.param(PB2Values(msgpack=msgpack.packb({"a": 1}) + b"\x00"), id="trailing bytes"),
        pytest.param(PB2Values(msgpack=msgpack.packb({1: "int key"})), id="int key"),
        pytest.param(PB2Values(msgpack=b"\x81\xa1k\xc1"), id="reserved byte 0xc1"),
        pytest.param(
            PB2Values(msgpack=b"\x81\xa1k" + msgpack.packb(msgpack.ExtType(5, b"x"))),
            id="extension type",
        ),
        pytest.param(PB2Values(msgpack=b"\x81\xa1k\xa2\xff\xfe"), id="invalid UTF-8 text"),
        pytest.param(PB2Values(msgpack=b"\x81\xa1k" + b"\x91" * 2000 + b"\xc0"), id="too deep"),
    ],
)
def test_malformed_payloads_are_malformed_messages(values: PB2Values) -> None:
    with pytest.raises(MalformedMessageError):
        Codec().decode(_with_payload(values))


def _nested(depth: int) -> dict[str, Any]:
    """A payload whose containers nest ``depth`` levels (the root map is level 1)."""
    inner: Any = 1
    for _ in range(depth - 1):
        inner = [inner]
    return {"k": inner}


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, 1_023])
def test_the_decoder_refuses_the_nesting_the_encoder_refuses(depth: int) -> None:
    # Bytes from a producer that is not natsbus: MessagePack alone decodes them.
    values = PB2Values(msgpack=msgpack.packb(_nested(depth)))
    with pytest.raises(PayloadTooDeepError, match=f"deeper than {MAX_DEPTH}"):
        Codec().decode(_with_payload(values))
    with pytest.raises(PayloadTooDeepError, match=f"deeper than {MAX_DEPTH}"):
        Codec().encode(_request(_nested(depth)))


def test_a_timestamp_goes_both_ways() -> None:
    # MessagePack decodes its timestamp extension itself: the encoder carries it too.
    message = _request({"at": msgpack.Timestamp(1_700_000_000, 5)})
    assert Codec().decode(Codec().encode(message)).payload == message.payload  # type: ignore[attr-defined]


def test_the_deepest_payload_goes_both_ways() -> None:
    message = _request(_nested(MAX_DEPTH))
    assert Codec().decode(Codec().encode(message)).payload == message.payload  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({b"k": 1}, id="bytes key"),
        pytest.param({"k": 2**64 - 1}, id="uint64 beyond int64"),
    ],
)
def test_the_decoder_refuses_values_the_encoder_never_sends(raw: dict[Any, Any]) -> None:
    values = PB2Values(msgpack=msgpack.packb(raw))
    with pytest.raises(MalformedMessageError):
        Codec().decode(_with_payload(values))


_any_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=4) | st.binary(max_size=4), inner, max_size=3)
    ),
    max_leaves=30,
)


@given(st.dictionaries(st.text(max_size=4), _any_value, max_size=4), st.integers(0, 110))
def test_the_fast_pre_check_never_lets_through_what_the_walk_refuses(
    payload: dict[str, Any], depth: int
) -> None:
    for _ in range(depth):
        payload = {"k": [payload]}
    data = msgpack.packb(payload)
    try:
        _check_decoded(msgpack.unpackb(data, strict_map_key=False), 1)
        refused = False
    except MalformedMessageError:
        refused = True
    if refused:
        with pytest.raises(MalformedMessageError):
            Codec().decode(_with_payload(PB2Values(msgpack=data)))


def test_a_well_formed_crafted_payload_decodes() -> None:
    # The counterpart of the cases above, so that they fail for the reason they name.
    values = PB2Values(msgpack=b"\x82\xa1a\x92\x01\xa1x\xa1b\xc0")
    decoded = Codec().decode(_with_payload(values))
    assert decoded.payload == {"a": [1, "x"], "b": None}  # type: ignore[attr-defined]


# --- Size limits -------------------------------------------------------------------------------


def test_oversized_on_encode() -> None:
    message = _request({"blob": b"x" * 200})
    size = len(Codec().encode(message))
    assert Codec(max_message_bytes=size).encode(message)  # exactly at the limit is fine
    with pytest.raises(MessageTooLargeError) as caught:
        Codec(max_message_bytes=size - 1).encode(message)
    assert (caught.value.size, caught.value.limit) == (size, size - 1)


def test_oversized_on_decode_is_checked_before_parsing() -> None:
    data = Codec().encode(_request({"blob": b"x" * 200}))
    assert Codec(max_message_bytes=len(data)).decode(data)
    with pytest.raises(MessageTooLargeError) as caught:
        Codec(max_message_bytes=len(data) - 1).decode(data)
    assert (caught.value.size, caught.value.limit) == (len(data), len(data) - 1)
    # Garbage over the limit is refused for its size, without being looked at.
    with pytest.raises(MessageTooLargeError):
        Codec(max_message_bytes=8).decode(b"\xff" * 9)


def test_default_limit_is_one_mebibyte() -> None:
    with pytest.raises(MessageTooLargeError):
        Codec().encode(_request({"blob": b"x" * (1024 * 1024)}))
    with pytest.raises(MessageTooLargeError):
        Codec().decode(b"\x00" * (1024 * 1024 + 1))


# --- What cannot be encoded --------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        BusAddWorkerMessage(worker=object(), source="runner"),
        BusWorkerLocalErrorMessage(error="boom", source="child", target="parent"),
    ],
    ids=lambda m: type(m).__name__,
)
def test_local_only_messages_are_refused(message: Any) -> None:
    with pytest.raises(LocalOnlyMessageError) as caught:
        Codec().encode(message)
    assert caught.value.message_type == type(message).__name__


def test_a_local_subclass_of_a_network_class_is_refused() -> None:
    @dataclass
    class LocalRequest(BusJobRequestMessage, BusLocalMessage):
        pass

    with pytest.raises(LocalOnlyMessageError):
        Codec().encode(LocalRequest(job_id="j", source="s"))


def test_an_unregistered_subclass_is_refused() -> None:
    @dataclass
    class MyRequest(BusJobRequestMessage):
        pass

    with pytest.raises(EncodeError, match="not registered"):
        Codec().encode(MyRequest(job_id="j", source="s"))


def test_a_non_message_is_refused() -> None:
    with pytest.raises(UnsupportedValueError):
        Codec().encode({"job_id": "j"})  # type: ignore[arg-type]


cyclic: list[Any] = []
cyclic.append(cyclic)
too_deep: Any = []
for _ in range(MAX_DEPTH - 1):  # one level more than test_codec's deepest accepted payload
    too_deep = [too_deep]


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"s": {1, 2}}, "set"),
        ({"t": (1, 2)}, "tuple"),
        ({"f": frozenset()}, "frozenset"),
        ({"o": object()}, "object"),
        ({"c": 1 + 2j}, "complex"),
        ({"d": decimal.Decimal("1.5")}, "Decimal"),
        ({"nested": [{"x": bytearray(b"x")}]}, "bytearray"),
        ({1: "x"}, "map keys must be str, not int"),
        ({b"k": 1}, "map keys must be str, not bytes"),
        ({"n": {None: 1}}, "map keys must be str, not NoneType"),
        ({"i": 2**63}, "9223372036854775808 does not fit"),
        ({"i": -(2**63) - 1}, "does not fit in 64 bits"),
        ({"l": [1, [2**64]]}, "does not fit in 64 bits"),
        ({"s": "\ud800"}, "Unicode"),
        ({"k\udfff": 1}, "Unicode"),
        ({"cycle": cyclic}, "nest deeper"),
        ({"deep": too_deep}, "nest deeper"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_unsupported_payload_values(payload: Any, match: str) -> None:
    with pytest.raises(UnsupportedValueError, match=match) as caught:
        Codec().encode(_request(payload))
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, EncodeError)


@pytest.mark.parametrize("payload", [[1], "x", 5, ({"a": 1},)], ids=repr)
def test_a_payload_must_be_a_dict(payload: Any) -> None:
    with pytest.raises(UnsupportedValueError, match="must be a dict"):
        Codec().encode(_request(payload))


@pytest.mark.parametrize(
    "message",
    [
        BusJobRequestMessage(job_id=None, source="s"),  # type: ignore[arg-type]
        BusJobRequestMessage(job_id="j", source=3),  # type: ignore[arg-type]
        BusJobRequestMessage(job_id="j", job_name=b"\xff", source="s"),  # type: ignore[arg-type]
        BusJobRequestMessage(job_id="j\ud800", source="s"),
        BusJobResponseMessage(job_id="j", status="bogus", source="s"),  # type: ignore[arg-type]
        BusJobResponseMessage(job_id="j", status=None, source="s"),  # type: ignore[arg-type]
    ],
    ids=repr,
)
def test_fields_of_the_wrong_type(message: Any) -> None:
    with pytest.raises(UnsupportedValueError):
        Codec().encode(message)


@pytest.mark.parametrize("trace_context", [{"traceparent": 1}, {1: "x"}, [("a", "b")]], ids=repr)
def test_trace_context_must_map_str_to_str(trace_context: Any) -> None:
    message = _request()
    message.trace_context = trace_context
    with pytest.raises(UnsupportedValueError):
        Codec().encode(message)


# --- Application types -------------------------------------------------------------------------


@dataclass
class Note(BusDataMessage):
    text: str
    tags: list[Any] | None = None


@dataclass
class Blob(BusSystemMessage):
    value: Any = None


@pytest.fixture
def registry() -> MessageRegistry:
    return MessageRegistry()


def test_duplicate_wire_name_is_refused(registry: MessageRegistry) -> None:
    registry.register("acme.Note", Note)
    with pytest.raises(RegistrationError, match="already taken"):
        registry.register("acme.Note", Blob)


def test_a_class_registers_once(registry: MessageRegistry) -> None:
    registry.register("acme.Note", Note)
    with pytest.raises(RegistrationError, match="already registered"):
        registry.register("acme.Note2", Note)
    with pytest.raises(RegistrationError, match="already registered"):
        registry.register("acme.Request", BusJobRequestMessage)


@pytest.mark.parametrize(
    "name",
    [
        "",
        " ",
        "acme Note",
        "acme.Note\n",
        "\tx",
        "a\x00b",
        "a\u00a0b",
        "natsbus.job_request",
        "natsbus.x",
        5,
        None,
    ],
    ids=repr,
)
def test_bad_wire_names_are_refused(registry: MessageRegistry, name: Any) -> None:
    with pytest.raises(RegistrationError):
        registry.register(name, Note)
    assert registry.wire_name_of(Note) is None  # nothing half-registered


def test_bad_classes_are_refused(registry: MessageRegistry) -> None:
    class NotADataclass(BusDataMessage):
        pass

    @dataclass
    class NotAMessage:
        x: int

    @dataclass
    class Local(BusDataMessage, BusLocalMessage):
        pass

    for cls in (NotADataclass, NotAMessage, Local, "Note", BusAddWorkerMessage):
        with pytest.raises(RegistrationError):
            registry.register("acme.Bad", cls)  # type: ignore[arg-type]


def test_to_bytes_and_from_bytes_come_together(registry: MessageRegistry) -> None:
    with pytest.raises(RegistrationError, match="both"):
        registry.register("acme.Blob", Blob, to_bytes=lambda m: b"")
    with pytest.raises(RegistrationError, match="both"):
        registry.register("acme.Blob", Blob, from_bytes=lambda d: Blob(source=""))


def test_app_fields_must_be_payload_values(registry: MessageRegistry) -> None:
    registry.register("acme.Blob", Blob)
    with pytest.raises(UnsupportedValueError, match="set"):
        Codec(registry=registry).encode(Blob(value={1}, source="s"))


def test_failing_to_bytes(registry: MessageRegistry) -> None:
    def to_bytes(message: Blob) -> bytes:
        if message.value == "str":
            return "not bytes"  # type: ignore[return-value]
        raise RuntimeError("no")

    registry.register("acme.Blob", Blob, to_bytes=to_bytes, from_bytes=lambda d: Blob(source=""))
    with pytest.raises(EncodeError, match="RuntimeError"):
        Codec(registry=registry).encode(Blob(source="s"))
    with pytest.raises(EncodeError, match="not bytes"):
        Codec(registry=registry).encode(Blob(value="str", source="s"))


def test_failing_from_bytes(registry: MessageRegistry) -> None:
    def from_bytes(data: bytes) -> Any:
        if data == b"wrong":
            return Note(text="", source="")
        raise KeyError(data)

    registry.register("acme.Blob", Blob, to_bytes=lambda m: m.value, from_bytes=from_bytes)
    c = Codec(registry=registry)
    with pytest.raises(MalformedMessageError, match="KeyError"):
        c.decode(c.encode(Blob(value=b"x", source="s")))
    with pytest.raises(MalformedMessageError, match="returned Note"):
        c.decode(c.encode(Blob(value=b"wrong", source="s")))


def test_custom_body_of_the_wrong_form(registry: MessageRegistry) -> None:
    registry.register("acme.Note", Note)
    registry.register(
        "acme.Blob", Blob, to_bytes=lambda m: b"", from_bytes=lambda d: Blob(source="")
    )
    c = Codec(registry=registry)
    as_bytes = PB2Envelope(source="s", custom=PB2Custom(wire_name="acme.Note", data=b"x"))
    with pytest.raises(MalformedMessageError, match="fields"):
        c.decode(as_bytes.SerializeToString())
    fields = PB2Values(msgpack=msgpack.packb({}))
    as_fields = PB2Envelope(source="s", custom=PB2Custom(wire_name="acme.Blob", fields=fields))
    with pytest.raises(MalformedMessageError, match="bytes"):
        c.decode(as_fields.SerializeToString())


def test_custom_fields_missing_a_required_one(registry: MessageRegistry) -> None:
    registry.register("acme.Note", Note)
    fields = PB2Values(msgpack=msgpack.packb({}))
    env = PB2Envelope(source="s", custom=PB2Custom(wire_name="acme.Note", fields=fields))
    with pytest.raises(MalformedMessageError, match="Note"):
        Codec(registry=registry).decode(env.SerializeToString())


# --- Bytes off the wire never crash the decoder ------------------------------------------------


def _decode_or_decode_error(c: Codec, data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        c.decode(data)


@given(st.binary(max_size=512))
def test_random_bytes_raise_only_decode_errors(data: bytes) -> None:
    _decode_or_decode_error(Codec(), data)


_VALID = Codec().encode(
    BusJobResponseMessage(
        job_id="j",
        status=JobStatus.COMPLETED,
        response={"a": [1, "x", None, b"y", {"b": 2.5, "c": True}], "d": ""},
        source="s",
        target="t",
    )
)


@given(st.data())
def test_mutated_valid_messages_raise_only_decode_errors(data: st.DataObject) -> None:
    raw = bytearray(_VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip":
            raw[index] = data.draw(st.integers(0, 255))
        elif action == "insert":
            raw.insert(index, data.draw(st.integers(0, 255)))
        elif action == "delete" and len(raw) > 1:
            del raw[index]
        else:
            del raw[index:]
        if not raw:
            break
    _decode_or_decode_error(Codec(), bytes(raw))


@given(
    data=st.binary(max_size=64)
    | st.builds(
        lambda head, rest: head + rest,
        st.sampled_from([b"\x81", b"\x82\xa1k"]),
        st.binary(max_size=32),
    )
)
def test_random_payload_bytes_raise_only_malformed(data: bytes) -> None:
    values = PB2Values(msgpack=data)
    with contextlib.suppress(MalformedMessageError):
        Codec().decode(_with_payload(values))


def test_error_hierarchy() -> None:
    # What the bus relies on to count and drop a bad message and keep going.
    for error in (MalformedMessageError, UnknownMessageTypeError):
        assert issubclass(error, DecodeError)
    for error in (LocalOnlyMessageError, UnsupportedValueError):
        assert issubclass(error, EncodeError)
    assert issubclass(MessageTooLargeError, CodecError)
