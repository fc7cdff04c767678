"""Payload dicts <-> the lossless ``natsbus.v1.Values`` wire type (part of the codec).

A ``Values`` message carries one payload as MessagePack (``proto/natsbus/v1/value.proto``):
its C codec keeps every type a payload may hold apart (int stays int, bool stays bool, bytes
stay bytes) at a fraction of the cost of building protobuf messages value by value.

A value is accepted when it is an instance of a lossless type: ``None``, ``bool``, ``int``
(within int64), ``float``, ``str``, ``bytes``, ``list`` or ``dict`` with ``str`` keys.
Subclasses (an ``IntEnum``, a ``StrEnum``, an ``OrderedDict``) are accepted and come back as
their base type, which compares equal; anything else (a tuple, a set, an object) raises
:class:`~natsbus.errors.UnsupportedValueError` rather than being converted quietly.
"""

from __future__ import annotations

import reprlib
from typing import Any, Final

import msgpack

from natsbus._proto.v1.value_pb2 import Values as PB2Values
from natsbus.errors import MalformedMessageError, UnsupportedValueError

__all__ = ["MAX_DEPTH", "decode_payload", "encode_payload"]

MAX_DEPTH: Final = 100
"""Deepest container nesting accepted (the root map is depth 1), as protobuf's own limit."""

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_SCALARS: Final = frozenset({str, float, bool, bytes, type(None)})
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
        raise UnsupportedValueError(f"payload containers nest deeper than {MAX_DEPTH} levels")
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
        MalformedMessageError: The bytes are not a MessagePack map, or use an extension type
            (the timestamp extension aside, which MessagePack decodes as ``msgpack.Timestamp``).
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
    return payload
