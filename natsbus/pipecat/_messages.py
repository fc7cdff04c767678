"""pipecat ``Bus*`` messages <-> natsbus messages, through a closed table.

natsbus reproduces every pipecat bus message class with the same name and fields, so most rows
copy fields across; a few fields change type on the way (the frame of a ``BusFrameMessage``,
its direction, a job's status, the registry's entries). pipecat messages natsbus has no class
for (``BusFlushProgressMessage``, the ``BusUI*`` messages) travel as twins: natsbus message
dataclasses registered in the codec's closed registry under explicit ``pipecat.*`` wire names.
Local-only messages never reach this table: the bus keeps them in the process as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, Final

import pipecat.bus.messages as pm
from pipecat.bus.ui import messages as pui
from pipecat.pipeline.job_context import JobStatus as PipecatJobStatus
from pipecat.registry.types import WorkerRegistryEntry as PipecatRegistryEntry

import natsbus.messages as nm
from natsbus._codec_registry import MessageRegistry
from natsbus.codec import default_registry
from natsbus.errors import EncodeError, RegistrationError, UnknownMessageTypeError
from natsbus.pipecat._frames import (
    FrameMap,
    default_frames,
    direction_to_natsbus,
    direction_to_pipecat,
)

__all__ = ["MessageMap", "default_messages"]

_Convert = Callable[[Any], Any]

# Set by each side's constructor or envelope, never copied: pipecat's id and name, natsbus's
# envelope metadata and job delivery facts.
_NOT_COPIED: Final = frozenset(
    {"id", "name", "sent_at", "trace_context", "deadline", "reply_to", "attempt"}
)

_BASES: Final = (pm.BusMessage, pm.BusDataMessage, pm.BusSystemMessage)


def _same_named() -> list[tuple[type, type]]:
    """The pipecat message classes natsbus has a class of the same name for, with it.

    Worked out from the two modules' classes (never from the wire): every concrete pipecat
    ``Bus*`` message that is not local-only.
    """
    pairs = []
    for name, cls in vars(pm).items():
        if not (isinstance(cls, type) and issubclass(cls, pm.BusMessage)) or cls in _BASES:
            continue
        if issubclass(cls, pm.BusLocalMessage) or cls.__module__ != pm.__name__:
            continue
        twin = getattr(nm, name, None)
        if twin is not None:
            pairs.append((cls, twin))
    return pairs


_PIPECAT_TWINS: Final[tuple[tuple[str, type[pm.BusMessage]], ...]] = (
    ("pipecat.BusFlushProgressMessage", pm.BusFlushProgressMessage),
    ("pipecat.BusUIEventMessage", pui.BusUIEventMessage),
    ("pipecat.BusUICommandMessage", pui.BusUICommandMessage),
    ("pipecat.BusUIJobGroupStartedMessage", pui.BusUIJobGroupStartedMessage),
    ("pipecat.BusUIJobUpdateMessage", pui.BusUIJobUpdateMessage),
    ("pipecat.BusUIJobCompletedMessage", pui.BusUIJobCompletedMessage),
    ("pipecat.BusUIJobGroupCompletedMessage", pui.BusUIJobGroupCompletedMessage),
)


def _entries_to_natsbus(entries: list[Any]) -> list[nm.WorkerRegistryEntry]:
    return [nm.WorkerRegistryEntry(**dataclasses.asdict(e)) for e in entries]


def _entries_to_pipecat(entries: list[Any]) -> list[PipecatRegistryEntry]:
    return [PipecatRegistryEntry(**dataclasses.asdict(e)) for e in entries]


def _init_fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.init and f.name not in _NOT_COPIED)


class _Row:
    """How one class pair converts: per field copied, its conversion each way (or none)."""

    __slots__ = ("_to_nb", "_to_pc", "natsbus", "pipecat")

    def __init__(
        self,
        pipecat: type,
        natsbus: type,
        to_nb: dict[str, _Convert],
        to_pc: dict[str, _Convert],
        fields: tuple[str, ...] | None = None,
    ) -> None:
        self.pipecat = pipecat
        self.natsbus = natsbus
        names = _init_fields(pipecat) if fields is None else fields
        carried = frozenset(_init_fields(natsbus))
        missing = [n for n in names if n not in carried]
        if missing:  # a pipecat release with a field natsbus does not carry: fail at import
            raise RegistrationError(f"natsbus {natsbus.__name__} lacks pipecat fields {missing}")
        # Worked out once: this runs for every message sent and received.
        self._to_nb = tuple((n, to_nb.get(n)) for n in names)
        self._to_pc = tuple((n, to_pc.get(n)) for n in names)

    def to_natsbus(self, message: Any) -> Any:
        return self.natsbus(
            **{
                n: getattr(message, n) if c is None else c(getattr(message, n))
                for n, c in self._to_nb
            }
        )

    def to_pipecat(self, message: Any) -> Any:
        return self.pipecat(
            **{
                n: getattr(message, n) if c is None else c(getattr(message, n))
                for n, c in self._to_pc
            }
        )


class MessageMap:
    """The closed table of pipecat bus messages that cross the network, and their conversions.

    Args:
        frames: The frame table a ``BusFrameMessage``'s frame goes through.
        registry: The codec registry twins are registered in (the default codec's).
    """

    def __init__(
        self, frames: FrameMap = default_frames, registry: MessageRegistry = default_registry
    ) -> None:
        self._registry = registry
        self._frames = frames
        to_nb: dict[str, _Convert] = {
            "frame": frames.to_natsbus,
            "direction": direction_to_natsbus,
            "status": lambda s: nm.JobStatus(str(s)),
            "workers": _entries_to_natsbus,
        }
        to_pc: dict[str, _Convert] = {
            "frame": frames.to_pipecat,
            "direction": direction_to_pipecat,
            "status": lambda s: PipecatJobStatus(str(s)),
            "workers": _entries_to_pipecat,
        }
        self._rows_pc: dict[type, _Row] = {}
        self._rows_nb: dict[type, _Row] = {}
        # natsbus's TTS message may say None (the frame's default), pipecat's says True then.
        tts_to_pc = {"append_to_context": lambda v: True if v is None else v}
        for pipecat_cls, natsbus_cls in _same_named():
            tts = pipecat_cls is pm.BusTTSSpeakMessage
            self._add(_Row(pipecat_cls, natsbus_cls, to_nb, tts_to_pc if tts else to_pc))
        for wire_name, cls in _PIPECAT_TWINS:
            self.register(wire_name, cls)

    def _add(self, row: _Row) -> None:
        self._rows_pc[row.pipecat] = row
        self._rows_nb[row.natsbus] = row

    def register(
        self, wire_name: str, cls: type[pm.BusMessage], *, fields: Iterable[str] | None = None
    ) -> type[nm.BusMessage]:
        """Let a pipecat bus message class cross the network under an explicit wire name.

        A natsbus message dataclass (its twin) with the same fields and priority is made and
        registered in the codec's registry under ``wire_name``. The fields' values must be
        payload values.

        Args:
            wire_name: The name the message travels under, e.g. ``"acme.TranscriptReady"``.
            cls: A pipecat ``BusMessage`` dataclass that is not local-only.
            fields: The fields that cross (default: every ``__init__`` field but ``source``
                and ``target``, which the envelope carries).

        Returns:
            The natsbus twin class.

        Raises:
            RegistrationError: The class is not a pipecat bus message dataclass, is local-only
                or already mapped, a field is unknown, or the wire name is invalid or taken.
        """
        if not isinstance(cls, type) or not issubclass(cls, pm.BusMessage):
            raise RegistrationError(f"{cls!r} is not a pipecat BusMessage subclass")
        if issubclass(cls, pm.BusLocalMessage):
            raise RegistrationError(f"{cls.__qualname__} is local-only: it never crosses")
        if cls in self._rows_pc:
            raise RegistrationError(f"pipecat message {cls.__qualname__} is already mapped")
        init = [n for n in _init_fields(cls) if n not in ("source", "target")]
        names = init if fields is None else list(fields)
        unknown = [n for n in names if n not in init]
        if unknown:
            raise RegistrationError(f"{cls.__qualname__} has no init field(s) {unknown}")
        base = nm.BusSystemMessage if issubclass(cls, pm.BusSystemMessage) else nm.BusDataMessage
        twin = dataclasses.make_dataclass(
            cls.__name__,
            [(n, Any, dataclasses.field(default=None)) for n in names],
            bases=(base,),
            namespace={"__doc__": f"natsbus twin of pipecat's {cls.__qualname__} ({wire_name})."},
        )
        twin.__module__ = __name__
        self._registry.register(wire_name, twin)
        self._add(_Row(cls, twin, {}, {}, ("source", "target", *names)))
        return twin

    def to_natsbus(self, message: pm.BusMessage) -> nm.BusMessage:
        """Convert a pipecat bus message to the natsbus message that travels.

        Raises:
            EncodeError: The class (or its frame's class) is not in the table.
            UnsupportedValueError: A value has no wire form.
        """
        row = self._rows_pc.get(type(message))
        if row is None:
            cls = type(message)
            raise EncodeError(
                f"pipecat message class {cls.__module__}.{cls.__qualname__} has no natsbus wire"
                " form: map it with natsbus.pipecat.register_message_type("
                f"'yourapp.{cls.__name__}', {cls.__name__})"
            )
        converted: nm.BusMessage = row.to_natsbus(message)
        return converted

    def to_pipecat(self, message: nm.BusMessage) -> pm.BusMessage:
        """Convert a natsbus message (decoded off the wire, or sent here) to pipecat's.

        Raises:
            UnknownMessageTypeError: The class has no pipecat counterpart (a natsbus
                application message this process did not map, or a natsbus-only message).
        """
        row = self._rows_nb.get(type(message))
        if row is None:
            wire_name = self._registry.wire_name_of(type(message))
            raise UnknownMessageTypeError(wire_name or type(message).__qualname__)
        converted: pm.BusMessage = row.to_pipecat(message)
        return converted


default_messages: Final = MessageMap()
"""The process-wide message table that :func:`natsbus.pipecat.register_message_type` extends
(its frames go through :data:`~natsbus.pipecat._frames.default_frames`)."""
