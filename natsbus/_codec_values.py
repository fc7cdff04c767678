"""Payload dicts <-> the lossless ``natsbus.v1.Values`` wire type (part of the codec).

``proto/natsbus/v1/value.proto`` describes the layout: the nodes of the value tree in level
order, one kind byte per node, numbers packed in one ``bytes`` column, strings joined in one
text. This module is on the hot path, so it works in bulk wherever it can:

- encoding visits each value once in a plain loop, then converts whole columns with one
  ``bytes()``, one ``struct.pack`` and one ``str.join``;
- decoding makes one ``struct.unpack`` and one ``str.split``, produces every node's value in
  one ``map(next, ...)`` over per-kind column iterators (a container's value there is its
  count), then rebuilds the containers from the last to the first, each from one slice of
  that list. Python-level work is per container, not per value, and nothing recurses.

A value is accepted when it is an instance of a lossless type: ``None``, ``bool``, ``int``
(within int64), ``float``, ``str``, ``bytes``, ``list`` or ``dict`` with ``str`` keys.
Subclasses (an ``IntEnum``, a ``StrEnum``, an ``OrderedDict``) are accepted and come back as
their base type, which compares equal; anything else (a tuple, a set, an object) raises
:class:`~natsbus.errors.UnsupportedValueError` rather than being converted quietly.
"""

from __future__ import annotations

import reprlib
import struct
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate, compress, repeat
from typing import Any, Final

from natsbus._proto.v1 import value_pb2 as _pb_value
from natsbus._proto.v1.value_pb2 import Values as PB2Values
from natsbus.errors import MalformedMessageError, UnsupportedValueError

__all__ = ["MAX_DEPTH", "decode_payload", "encode_payload"]

MAX_DEPTH: Final = 100
"""Deepest container nesting accepted (the root map is depth 1), as protobuf's own limit."""

_NULL: Final = _pb_value.VALUE_KIND_NULL
_FALSE: Final = _pb_value.VALUE_KIND_FALSE
_TRUE: Final = _pb_value.VALUE_KIND_TRUE
_INT: Final = _pb_value.VALUE_KIND_INT
_DOUBLE: Final = _pb_value.VALUE_KIND_DOUBLE
_STRING: Final = _pb_value.VALUE_KIND_STRING
_BYTES: Final = _pb_value.VALUE_KIND_BYTES
_LIST: Final = _pb_value.VALUE_KIND_LIST
_MAP: Final = _pb_value.VALUE_KIND_MAP

_KNOWN_KINDS: Final = bytes((_NULL, _FALSE, _TRUE, _INT, _DOUBLE, _STRING, _BYTES, _LIST, _MAP))
# kinds.translate(_NUMBER_FORMAT, _NO_NUMBER) is the struct format of the `numbers` column.
_NUMBER_FORMAT: Final = bytes.maketrans(bytes((_INT, _DOUBLE, _LIST, _MAP)), b"qdII")
_NO_NUMBER: Final = bytes((_NULL, _FALSE, _TRUE, _STRING, _BYTES))
# kinds.translate(_CONTAINER_MARKS) is 1 where a node is a list or a map, 0 elsewhere.
_CONTAINER_MARKS: Final = bytes(1 if i in (_LIST, _MAP) else 0 for i in range(256))
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1

_Add = Callable[[Any], None]


# --- Encoding ----------------------------------------------------------------------------------


def encode_payload(payload: Any, out: PB2Values) -> None:
    """Write a payload dict into an empty ``Values`` message.

    Args:
        payload: The dict to encode (str keys, lossless values).
        out: The message to fill, usually a field of a body (which this marks as set).

    Raises:
        UnsupportedValueError: Some value, or the payload itself, has no lossless wire form.
    """
    if type(payload) is not dict:
        if not isinstance(payload, dict):
            raise UnsupportedValueError(
                f"a payload must be a dict, not {type(payload).__name__}: {reprlib.repr(payload)}"
            )
        payload = dict(payload)
    kinds = [_MAP]
    numbers: list[int | float] = [len(payload)]
    texts: list[str] = []
    keys: list[str] = list(payload)
    blobs: list[bytes] = []
    # Bound once: a bound method is a new object at every attribute lookup.
    add_kind, add_number, add_text = kinds.append, numbers.append, texts.append
    add_blob, add_keys = blobs.append, keys.extend
    level: list[Iterable[Any]] = [payload.values()]
    depth = 1  # of the containers whose children `level` holds
    while level:
        next_level: list[Iterable[Any]] = []
        add_container = next_level.append
        for children in level:
            _put_children(
                children, add_kind, add_number, add_text, add_blob, add_keys, add_container
            )
        depth += 1
        if next_level and depth > MAX_DEPTH:
            raise UnsupportedValueError(
                f"containers nest deeper than {MAX_DEPTH} levels (or contain themselves)"
            )
        level = next_level
    kind_bytes = bytes(kinds)
    try:
        out.numbers = struct.pack(b"<" + kind_bytes.translate(_NUMBER_FORMAT, _NO_NUMBER), *numbers)
    except struct.error:
        raise UnsupportedValueError(_describe_bad_int(payload)) from None
    out.kinds = kind_bytes
    texts += keys
    try:
        text = "\0".join(texts)
    except TypeError:
        raise UnsupportedValueError(_describe_bad_key(payload)) from None
    try:
        # The joined form is only unambiguous when no string holds the separator, and an
        # empty `text` means "no strings" to the decoder, so a lone "" takes `texts` too.
        if text and text.count("\0") == len(texts) - 1:
            out.text = text
        elif texts:
            out.texts.extend(texts)
    except ValueError as exc:  # lone surrogates cannot be UTF-8
        raise UnsupportedValueError(f"a string is not valid Unicode text: {exc}") from None
    if blobs:
        out.blobs.extend(blobs)


def _put_children(  # noqa: PLR0917 (bound appenders as positional locals: the fastest form)
    children: Iterable[Any],
    add_kind: _Add,
    add_number: _Add,
    add_text: _Add,
    add_blob: _Add,
    add_keys: Callable[[Iterable[str]], None],
    add_container: _Add,
) -> None:
    """Write the nodes of one container's children; queue their own children for later."""
    for value in children:
        # Exact types, most frequent first: `type(v) is` is cheaper than isinstance, and it
        # keeps bool (an int subclass) apart from int.
        kind = type(value)
        if kind is str:
            add_kind(_STRING)
            add_text(value)
        elif kind is int:
            add_kind(_INT)
            add_number(value)
        elif kind is float:
            add_kind(_DOUBLE)
            add_number(value)
        elif kind is bool:
            add_kind(_TRUE if value else _FALSE)
        elif value is None:
            add_kind(_NULL)
        elif kind is dict:
            add_kind(_MAP)
            add_number(len(value))
            add_keys(value)  # str.join checks later that they are str
            add_container(value.values())
        elif kind is list:
            add_kind(_LIST)
            add_number(len(value))
            add_container(value)
        elif kind is bytes:
            add_kind(_BYTES)
            add_blob(value)
        else:  # subclasses and refusals: rare, so out of the way
            plain = (_plain(value),)
            _put_children(plain, add_kind, add_number, add_text, add_blob, add_keys, add_container)


def _plain(value: Any) -> Any:
    """Return a subclass instance as its lossless base type, or refuse the value.

    The base-type methods return a plain copy of the value (an IntEnum's int, a StrEnum's
    str), never what a subclass's override would.
    """
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    if isinstance(value, int):  # bool cannot be subclassed, so this is not a bool
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return bytes.__bytes__(value)
    raise UnsupportedValueError(
        f"{type(value).__name__} value {reprlib.repr(value)} has no lossless wire form "
        "(use None, bool, int, float, str, bytes, list or dict with str keys)"
    )


def _describe_bad_int(payload: dict[str, Any]) -> str:
    """Name the int that does not fit int64 (called only after struct.pack refused one)."""
    for value in _walk(payload):
        if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
            return f"int {reprlib.repr(value)} does not fit in 64 bits"
    return "a number does not fit its wire form"


def _describe_bad_key(payload: dict[str, Any]) -> str:
    """Name the map key that is not a str (called only after str.join refused one)."""
    for value in _walk(payload):
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    return f"map keys must be str, not {type(key).__name__}: {reprlib.repr(key)}"
    return "map keys must be str"


def _walk(value: Any) -> Iterable[Any]:
    """Yield ``value`` and every value nested in it (error paths only; depth is bounded)."""
    stack = [value]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


# --- Decoding ----------------------------------------------------------------------------------

# Endless columns for the kinds that carry no data.
_NONES: Final = repeat(None)
_FALSES: Final = repeat(False)
_TRUES: Final = repeat(True)


def decode_payload(values: PB2Values) -> dict[str, Any]:
    """Rebuild the payload dict from a ``Values`` message.

    Args:
        values: The message, whose root node must be a map.

    Returns:
        The dict, with keys in their original order.

    Raises:
        MalformedMessageError: The columns are inconsistent (a kind nobody knows, a column
            too short or too long, a child before its container, nesting deeper than
            :data:`MAX_DEPTH`, a repeated key).
    """
    kinds = values.kinds
    if not kinds or kinds[0] != _MAP:
        raise MalformedMessageError("a payload's root value must be a map")
    if kinds.translate(None, _KNOWN_KINDS):
        raise MalformedMessageError("a payload holds a value kind this version does not know")
    nodes, keys = _read_nodes(values, kinds)
    return _rebuild_containers(kinds, nodes, keys)


def _read_nodes(values: PB2Values, kinds: bytes) -> tuple[list[Any], list[str]]:
    """Return every node's value in level order (a container's is its count), and the keys."""
    try:
        numbers = struct.unpack(b"<" + kinds.translate(_NUMBER_FORMAT, _NO_NUMBER), values.numbers)
    except struct.error:
        raise MalformedMessageError("a payload's numbers do not match its kinds") from None
    text = values.text
    texts = iter(text.split("\0") if text else values.texts)
    blob_column = values.blobs
    blobs = iter(blob_column)
    number_iter = iter(numbers)
    # The column each kind reads from; containers take their count from `numbers`, in node
    # order like INT and DOUBLE.
    columns: dict[int, Iterator[Any]] = {
        _STRING: texts,
        _INT: number_iter,
        _DOUBLE: number_iter,
        _LIST: number_iter,
        _MAP: number_iter,
        _NULL: _NONES,
        _FALSE: _FALSES,
        _TRUE: _TRUES,
        _BYTES: blobs,
    }
    # A column that runs dry raises StopIteration, which only ends `map` early: hence the check.
    nodes = list(map(next, map(columns.__getitem__, kinds)))
    if len(nodes) != len(kinds):
        raise MalformedMessageError("a payload has fewer strings or bytes than its kinds say")
    if blob_column and next(blobs, None) is not None:
        raise MalformedMessageError("a payload has more bytes values than its kinds say")
    return nodes, list(texts)  # what the strings left: the keys of every map, in node order


def _rebuild_containers(kinds: bytes, nodes: list[Any], keys: list[str]) -> dict[str, Any]:
    """Replace each container's count in ``nodes`` by the container; return the root."""
    size = len(kinds)
    if kinds.count(_MAP) == 1 and _LIST not in kinds:  # a flat map, the common case: one slice
        mapping = dict(zip(keys, nodes[1:], strict=False))
        if nodes[0] != size - 1 or len(keys) != size - 1 or len(mapping) != size - 1:
            raise MalformedMessageError("a payload map's count, keys and values disagree")
        return mapping
    positions = list(compress(range(size), kinds.translate(_CONTAINER_MARKS)))
    counts = list(map(nodes.__getitem__, positions))
    # Container i's children are the nodes from starts[i], right after those of container i-1.
    starts = list(accumulate(counts, initial=1))
    if starts.pop() != size:
        raise MalformedMessageError("a payload's container counts do not add up to its nodes")
    if len(positions) > MAX_DEPTH:  # fewer containers cannot nest deeper than the limit
        _check_depth(positions, counts)
    key_end = len(keys)
    # Last container first: the containers among its children, which come later in level
    # order, are already rebuilt in `nodes` when its slice is taken. (A plain while/pop loop:
    # measured faster here than zip(reversed(...)).)
    while positions:
        position = positions.pop()
        count = counts.pop()
        start = starts.pop()
        if start <= position:  # a child before its container would make a cycle
            raise MalformedMessageError("a payload container's children come before it")
        items = nodes[start : start + count]
        if kinds[position] == _MAP:
            mapping = dict(zip(keys[key_end - count : key_end], items, strict=False))
            key_end -= count
            if len(mapping) != count:
                raise MalformedMessageError("a payload map lacks keys, or repeats one")
            nodes[position] = mapping
        else:
            nodes[position] = items
    if key_end:
        raise MalformedMessageError("a payload has more strings than its kinds and maps say")
    return nodes[0]  # type: ignore[no-any-return]


def _check_depth(positions: list[int], counts: list[int]) -> None:
    """Refuse a tree nested deeper than :data:`MAX_DEPTH`, from its level structure.

    In level order, level d+1 holds exactly the children of the containers of level d, so
    the level boundaries follow from the counts alone.
    """
    depth = 1
    level_end = 1  # end of the nodes of the level being walked (the root's level: [0, 1))
    next_level_end = 1
    for position, count in zip(positions, counts, strict=True):
        if position >= level_end:
            depth += 1
            level_end = next_level_end
            if depth > MAX_DEPTH:
                raise MalformedMessageError(f"a payload nests deeper than {MAX_DEPTH} levels")
        next_level_end += count
