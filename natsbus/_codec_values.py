"""Payload dicts <-> the lossless ``natsbus.v1.Values`` wire type (part of the codec).

A ``Values`` message carries one payload as MessagePack (``proto/natsbus/v1/value.proto``):
its C codec keeps every type a payload may hold apart (int stays int, bool stays bool, bytes
stay bytes) at a fraction of the cost of building protobuf messages value by value.

A value is accepted when it is an instance of a lossless type: ``None``, ``bool``, ``int``
(within int64), ``float``, ``str``, ``bytes``, ``list`` or ``dict`` with ``str`` keys, or a
``msgpack.Timestamp`` (the one extension MessagePack decodes itself). The decoder holds bytes
from any producer to the same rules, nesting included.
Subclasses (an ``IntEnum``, a ``StrEnum``, an ``OrderedDict``) are accepted and come back as
their base type, which compares equal; anything else (a tuple, a set, an object) raises
:class:`~natsbus.errors.UnsupportedValueError` rather than being converted quietly.
"""

from __future__ import annotations

import reprlib
from typing import Any, Final

import msgpack

from natsbus._proto.v1.value_pb2 import Values as PB2Values
from natsbus.errors import MalformedMessageError, PayloadTooDeepError, UnsupportedValueError

__all__ = ["MAX_DEPTH", "decode_payload", "encode_payload"]

MAX_DEPTH: Final = 100
"""Deepest container nesting accepted (the root map is depth 1), as protobuf's own limit.

Both directions: the encoder refuses a deeper payload and so does the decoder (MessagePack
alone would decode up to 1,024 levels), with :class:`~natsbus.errors.PayloadTooDeepError`."""

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
# msgpack.Timestamp: the one extension MessagePack decodes itself, so it is carried both ways.
_SCALARS: Final = frozenset({str, float, bool, bytes, type(None), msgpack.Timestamp})
# Base types that a subclass is converted to before packing (bool cannot be subclassed).
_BASES: Final = (str, int, float, bytes, list, dict)


def _refuse_extension(code: int, data: bytes) -> Any:
    raise MalformedMessageError(f"payload holds a MessagePack extension type ({code})")


def _as_base_type(value: Any) -> Any:
    # Called by the packer (strict_types) for anything that is not exactly a base type.
    for base in _BASES:
        if isinstance(value, base):
            convert: Any = base  # each base's constructor takes its own subclasses
            return convert(value)
    raise UnsupportedValueError(
        f"payload value {reprlib.repr(value)} of type {type(value).__name__} has no lossless "
        "wire form (use None, bool, int, float, str, bytes, list or dict)"
    )


# One packer per process is safe: asyncio runs one encode at a time per thread, and the
# packer is reset by every packb call. strict_types sends subclasses and tuples to
# _as_base_type instead of letting MessagePack turn a tuple into a list unnoticed.
_packer: Final = msgpack.Packer(default=_as_base_type, strict_types=True, use_bin_type=True)


def _check(value: Any, depth: int) -> None:
    """Refuse what MessagePack would carry differently or not at all.

    The packer alone would turn a bytearray into bytes, accept int keys and ints up to 2**64,
    and recurse 512 levels: this walk keeps payloads to what the wire schema promises.
    """
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise UnsupportedValueError(f"int {reprlib.repr(value)} does not fit in 64 bits")
        return
    if isinstance(value, (dict, list)):
        _check_container(value, depth)
    elif isinstance(value, int):
        _check(int(value), depth)  # an IntEnum: its value must fit too
    elif not isinstance(value, _BASES):
        _as_base_type(value)  # raises UnsupportedValueError with the type's name


def _check_container(value: dict[Any, Any] | list[Any], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise PayloadTooDeepError(f"payload containers nest deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise UnsupportedValueError(
                    f"map keys must be str, not {type(key).__name__}: {reprlib.repr(key)}"
                )
        items: Any = value.values()
    else:
        items = value
    for item in items:
        if type(item) not in _SCALARS:
            _check(item, depth + 1)


def encode_payload(payload: Any, out: PB2Values) -> None:
    """Write a payload dict into a ``Values`` message.

    Raises:
        UnsupportedValueError: The payload is not a dict, or holds a value with no lossless
            wire form (a tuple, a set, an object, a non-str key, an int beyond int64) or
            nests deeper than :data:`MAX_DEPTH`.
    """
    if not isinstance(payload, dict):
        raise UnsupportedValueError(
            f"a payload must be a dict, not {type(payload).__name__}: {reprlib.repr(payload)}"
        )
    _check(payload, 1)
    try:
        out.msgpack = _packer.pack(payload)
    except UnicodeEncodeError as error:
        raise UnsupportedValueError(
            f"payload text is not valid Unicode (a lone surrogate?): {error}"
        ) from error


def decode_payload(values: PB2Values) -> dict[str, Any]:
    """Read the payload dict out of a ``Values`` message.

    Raises:
        MalformedMessageError: The bytes are not a MessagePack map, use an extension type
            (the timestamp extension aside, which MessagePack decodes as ``msgpack.Timestamp``),
            or hold what the encoder refuses (a bytes key, an int beyond int64).
        PayloadTooDeepError: Containers nest deeper than :data:`MAX_DEPTH` (a
            ``MalformedMessageError`` too).
    """
    try:
        payload = msgpack.unpackb(
            values.msgpack,
            ext_hook=_refuse_extension,
            strict_map_key=True,
            max_bin_len=len(values.msgpack),
        )
    except MalformedMessageError:
        raise
    except Exception as error:  # msgpack raises several kinds on bad input: all are bad bytes
        raise MalformedMessageError(f"payload is not valid MessagePack: {error}") from error
    if not isinstance(payload, dict):
        raise MalformedMessageError(f"payload root is a {type(payload).__name__}, not a map")
    if _may_break_limits(values.msgpack):
        _check_decoded(payload, 1)
    return payload


# A translation table of MessagePack format bytes: container headers (fixmap, fixarray,
# array 16/32, map 16/32) become 1, the headers of what the encoder never writes where the
# decoder accepts it (bin: a bytes key; uint 64 beyond int64) become 2, all else 0.
_CONTAINER_HEADERS: Final = (*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF)
_SUSPECT_HEADERS: Final = (0xC4, 0xC5, 0xC6, 0xCF)
_CLASSES: Final = bytes(
    1 if byte in _CONTAINER_HEADERS else 2 if byte in _SUSPECT_HEADERS else 0 for byte in range(256)
)


def _may_break_limits(data: bytes) -> bool:
    """Whether decoded bytes need the walk of :func:`_check_decoded` (a C-speed pre-check).

    Every container costs at least one header byte, so bytes with no more than MAX_DEPTH
    bytes that could be container headers and none that could start a bin or a uint 64
    cannot break a limit. Most payloads are such and skip the walk, which costs as much as
    the decoding; those whose data happen to hold such bytes are walked.
    """
    classes = data.translate(_CLASSES)
    return classes.count(1) > MAX_DEPTH or b"\x02" in classes


def _check_decoded(value: dict[Any, Any] | list[Any], depth: int) -> None:
    """Refuse decoded bytes that the encoder would have refused (a producer not natsbus).

    MessagePack decodes exact types only, so this is the encoder's walk without subclasses:
    nesting, str keys (MessagePack also allows bytes), ints within int64.
    """
    if depth > MAX_DEPTH:
        raise PayloadTooDeepError(f"payload containers nest deeper than {MAX_DEPTH} levels")
    if type(value) is dict:
        for key in value:
            if type(key) is not str:
                raise MalformedMessageError(f"payload map key is a {type(key).__name__}, not str")
        items: Any = value.values()
    else:
        items = value
    for item in items:
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is int:
            if not _INT64_MIN <= item <= _INT64_MAX:
                raise MalformedMessageError(f"payload int {item} does not fit in 64 bits")
        else:  # a dict or a list: MessagePack decodes nothing else
            _check_decoded(item, depth + 1)
