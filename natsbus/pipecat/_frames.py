"""pipecat frames <-> natsbus frames, through a closed table.

Every pipecat frame class that may cross the bus has exactly one entry here: its natsbus frame
class (a built-in of :mod:`natsbus.frames`, whose protobuf body is in ``proto/``) and the two
conversions. Classes natsbus has no built-in for travel as *twins*: a natsbus frame dataclass
made from the pipecat class's fields and registered in the codec's closed registry under an
explicit wire name (``pipecat.*`` for the ones this module maps, the application's own name for
its frames). A frame class that is not in the table is refused at the sender with an
:class:`~natsbus.errors.EncodeError`; nothing is ever looked up by a name read from the wire.

Base fields: ``id`` (pipecat's int travels as its decimal string), ``name``, ``pts`` and
``metadata`` cross; pipecat's transport routing fields (``transport_source``,
``transport_destination``, ``broadcast_sibling_id``) are per-process and do not.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from pipecat.frames import frames as pf
from pipecat.processors.frame_processor import FrameDirection as PipecatDirection
from pipecat.transcriptions.language import Language

from natsbus import frames as nf
from natsbus._codec_registry import MessageRegistry
from natsbus.codec import default_registry
from natsbus.errors import (
    EncodeError,
    RegistrationError,
    UnknownMessageTypeError,
    UnsupportedValueError,
)
from natsbus.pipecat._llm import CONTEXT_FIELDS, context_from_natsbus, context_to_natsbus

__all__ = ["FrameMap", "default_frames"]

_ToNatsbus = Callable[[Any], nf.Frame]  # pipecat frame -> natsbus frame (base fields aside)
_ToPipecat = Callable[[Any], pf.Frame]  # natsbus frame -> pipecat frame (base fields aside)

# Fields every pipecat frame has that the table copies itself (or that never cross).
_PIPECAT_BASE: Final = frozenset(f.name for f in dataclasses.fields(pf.Frame))


@dataclass(frozen=True, slots=True)
class _Entry:
    """One row of the table: a pipecat class, its natsbus class, and the two conversions."""

    pipecat: type[pf.Frame]
    natsbus: type[nf.Frame]
    to_natsbus: _ToNatsbus
    to_pipecat: _ToPipecat


def _copying(pc: type[Any], nb: type[Any], names: Iterable[str]) -> tuple[_ToNatsbus, _ToPipecat]:
    """Conversions that copy the same-named fields each way.

    pipecat's values are read from the instance's ``__dict__``: some of its fields warn when
    read as attributes (deprecated since pipecat 1.8, such as ``StartFrame``'s sample rates).
    """
    fields = tuple(names)
    return (
        lambda f: nb(**{n: vars(f)[n] for n in fields}),
        lambda f: pc(**{n: getattr(f, n) for n in fields}),
    )


def _language(value: Any) -> Any:
    """Read a language code back as pipecat's ``Language``; an unknown one stays a str."""
    if value is None or isinstance(value, Language):
        return value
    try:
        return Language(value)
    except ValueError:
        return value


def _transcription(pc: type[Any], nb: type[Any]) -> tuple[_ToNatsbus, _ToPipecat]:
    def to_natsbus(f: Any) -> nf.Frame:
        language = f.language.value if isinstance(f.language, enum.Enum) else f.language
        return nb(f.text, f.user_id, f.timestamp, language=language)  # type: ignore[no-any-return]

    def to_pipecat(f: Any) -> pf.Frame:
        return pc(f.text, f.user_id, f.timestamp, language=_language(f.language))  # type: ignore[no-any-return]

    return to_natsbus, to_pipecat


def _error_to_pipecat(f: Any) -> pf.Frame:
    frame = pf.ErrorFrame(f.error)
    # Set, not passed: pipecat warns when its own code says fatal=True (deprecated since 1.8);
    # the flag is still what the sender said.
    vars(frame)["fatal"] = f.fatal
    return frame


def _tts_speak_to_pipecat(f: Any) -> pf.Frame:
    append = True if f.append_to_context is None else f.append_to_context
    return pf.TTSSpeakFrame(f.text, append_to_context=append)


def _tools_to_natsbus(f: Any) -> nf.Frame:
    if not isinstance(f.tools, list):
        raise UnsupportedValueError(
            f"LLMSetToolsFrame.tools is a {type(f.tools).__name__}: only a list of tool dicts"
            " has a wire form"
        )
    return nf.LLMSetToolsFrame(f.tools)


def _builtin_entries() -> list[_Entry]:
    """The pipecat frames that map onto natsbus's built-in (protobuf) frames."""
    rows: list[tuple[type[Any], type[Any], tuple[_ToNatsbus, _ToPipecat]]] = [
        (pf.EndFrame, nf.EndFrame, _copying(pf.EndFrame, nf.EndFrame, ("reason",))),
        (pf.CancelFrame, nf.CancelFrame, _copying(pf.CancelFrame, nf.CancelFrame, ("reason",))),
        (pf.StopFrame, nf.StopFrame, _copying(pf.StopFrame, nf.StopFrame, ())),
        (
            pf.InterruptionFrame,
            nf.InterruptionFrame,
            _copying(pf.InterruptionFrame, nf.InterruptionFrame, ()),
        ),
        (pf.TextFrame, nf.TextFrame, _copying(pf.TextFrame, nf.TextFrame, ("text",))),
        (
            pf.TranscriptionFrame,
            nf.TranscriptionFrame,
            _transcription(pf.TranscriptionFrame, nf.TranscriptionFrame),
        ),
        (
            pf.InterimTranscriptionFrame,
            nf.InterimTranscriptionFrame,
            _transcription(pf.InterimTranscriptionFrame, nf.InterimTranscriptionFrame),
        ),
        (
            pf.TTSSpeakFrame,
            nf.TTSSpeakFrame,
            (
                lambda f: nf.TTSSpeakFrame(f.text, append_to_context=f.append_to_context),
                _tts_speak_to_pipecat,
            ),
        ),
        (
            pf.LLMSetToolsFrame,
            nf.LLMSetToolsFrame,
            (_tools_to_natsbus, lambda f: pf.LLMSetToolsFrame(f.tools)),
        ),
    ]
    copied: list[tuple[type[Any], type[Any], tuple[str, ...]]] = [
        (pf.StartFrame, nf.StartFrame, ("audio_in_sample_rate", "audio_out_sample_rate")),
        (pf.OutputTransportMessageFrame, nf.OutputTransportMessageFrame, ("message",)),
        (pf.OutputTransportMessageUrgentFrame, nf.OutputTransportMessageUrgentFrame, ("message",)),
    ]
    audio = ("audio", "sample_rate", "num_channels")
    copied += [
        (pf.InputAudioRawFrame, nf.InputAudioRawFrame, audio),
        (pf.OutputAudioRawFrame, nf.OutputAudioRawFrame, audio),
        (pf.TTSAudioRawFrame, nf.TTSAudioRawFrame, audio),
    ]
    image = ("image", "size", "format")
    copied += [
        (pf.InputImageRawFrame, nf.InputImageRawFrame, image),
        (pf.OutputImageRawFrame, nf.OutputImageRawFrame, image),
    ]
    rows += [(pc, nb, _copying(pc, nb, names)) for pc, nb, names in copied]
    entries = [_Entry(pc, nb, *conv) for pc, nb, conv in rows]
    error = (lambda f: nf.ErrorFrame(f.error, fatal=bool(vars(f)["fatal"])), _error_to_pipecat)
    entries.append(_Entry(pf.ErrorFrame, nf.ErrorFrame, *error))
    # pipecat's deprecated FatalErrorFrame arrives as what replaces it: ErrorFrame(fatal=True).
    entries.append(_Entry(pf.FatalErrorFrame, nf.ErrorFrame, *error))
    return entries


# pipecat frames natsbus has no built-in for, carried as twins under these wire names (and the
# fields that cross: PipelineFlushFrame's asyncio.Event stays in its process).
_PIPECAT_TWINS: Final[tuple[tuple[str, type[pf.Frame], tuple[str, ...] | None], ...]] = (
    ("pipecat.LLMMessagesAppendFrame", pf.LLMMessagesAppendFrame, None),
    ("pipecat.LLMMessagesUpdateFrame", pf.LLMMessagesUpdateFrame, None),
    ("pipecat.LLMRunFrame", pf.LLMRunFrame, None),
    ("pipecat.LLMTextFrame", pf.LLMTextFrame, ("text",)),
    ("pipecat.PipelineFlushFrame", pf.PipelineFlushFrame, ("returning", "origin", "flush_id")),
)


def _twin_base(cls: type[pf.Frame]) -> type[nf.Frame]:
    """The natsbus frame kind of a pipecat frame class (system frames keep their lane)."""
    if issubclass(cls, pf.SystemFrame):
        return nf.SystemFrame
    if issubclass(cls, pf.ControlFrame):
        return nf.ControlFrame
    return nf.DataFrame


class FrameMap:
    """The closed table of pipecat frame classes that cross the bus, and their conversions.

    Args:
        registry: The codec registry twins are registered in (the default codec's).
    """

    def __init__(self, registry: MessageRegistry = default_registry) -> None:
        self._registry = registry
        self._to_natsbus: dict[type, _Entry] = {}
        self._to_pipecat: dict[type, _Entry] = {}
        for entry in _builtin_entries():
            self._to_natsbus[entry.pipecat] = entry
            # ErrorFrame and FatalErrorFrame share natsbus's ErrorFrame: the first row decides.
            self._to_pipecat.setdefault(entry.natsbus, entry)
        for wire_name, cls, fields in _PIPECAT_TWINS:
            self.register(wire_name, cls, fields=fields)
        # An LLMContext is an object: its frame travels as the values it is made of.
        self._register_twin(
            "pipecat.LLMContextFrame",
            pf.LLMContextFrame,
            CONTEXT_FIELDS,
            lambda twin: (context_to_natsbus(twin), context_from_natsbus),
        )

    def register(
        self, wire_name: str, cls: type[pf.Frame], *, fields: Iterable[str] | None = None
    ) -> type[nf.Frame]:
        """Let a pipecat frame class cross the bus under an explicit wire name.

        A natsbus frame dataclass (its *twin*) with the same fields is made and registered in
        the codec's registry under ``wire_name``; a natsbus worker reads and sends the frame as
        that twin (or as its own class registered under the same wire name with the same
        fields). The fields' values must be payload values (None, bool, int, float, str,
        bytes, list, dict).

        Args:
            wire_name: The name the frame travels under, e.g. ``"acme.VisemeFrame"``.
            cls: A pipecat ``Frame`` dataclass; subclasses are not covered by their base's
                registration.
            fields: The fields that cross (default: every ``__init__`` field of ``cls``).

        Returns:
            The natsbus twin class.

        Raises:
            RegistrationError: The class is not a pipecat frame dataclass, is already mapped, a
                field is unknown, or the wire name is invalid or taken.
        """
        if not isinstance(cls, type) or not issubclass(cls, pf.Frame):
            raise RegistrationError(f"{cls!r} is not a pipecat Frame subclass")
        if not dataclasses.is_dataclass(cls):
            raise RegistrationError(f"{cls.__qualname__} is not a dataclass")
        if cls in self._to_natsbus:
            raise RegistrationError(f"pipecat frame {cls.__qualname__} is already mapped")
        init = {
            f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in _PIPECAT_BASE
        }
        names = tuple(init) if fields is None else tuple(fields)
        unknown = [n for n in names if n not in init]
        if unknown:
            raise RegistrationError(f"{cls.__qualname__} has no init field(s) {unknown}")
        return self._register_twin(wire_name, cls, names, lambda twin: _copying(cls, twin, names))

    def _register_twin(
        self,
        wire_name: str,
        cls: type[pf.Frame],
        names: tuple[str, ...],
        conversions: Callable[[type[nf.Frame]], tuple[_ToNatsbus, _ToPipecat]],
    ) -> type[nf.Frame]:
        """Make the twin of ``cls`` with fields ``names``, register it, add the row."""
        twin = dataclasses.make_dataclass(
            cls.__name__,
            [(n, Any, dataclasses.field(default=None)) for n in names],
            bases=(_twin_base(cls),),
            namespace={"__doc__": f"natsbus twin of pipecat's {cls.__qualname__} ({wire_name})."},
        )
        twin.__module__ = __name__
        self._registry.register_frame_type(wire_name, twin)
        entry = _Entry(cls, twin, *conversions(twin))
        self._to_natsbus[cls] = entry
        self._to_pipecat[twin] = entry
        return twin

    def mapped(self) -> tuple[type[pf.Frame], ...]:
        """Every pipecat frame class that crosses the bus."""
        return tuple(self._to_natsbus)

    def to_natsbus(self, frame: pf.Frame) -> nf.Frame:
        """Convert a pipecat frame to its natsbus frame.

        Raises:
            EncodeError: The frame's class is not in the table.
            UnsupportedValueError: A value has no wire form.
        """
        entry = self._to_natsbus.get(type(frame))
        if entry is None:
            raise EncodeError(
                f"pipecat frame class {type(frame).__module__}.{type(frame).__qualname__} has no"
                " natsbus wire form: map it with natsbus.pipecat.register_frame_type("
                f"'yourapp.{type(frame).__name__}', {type(frame).__name__})"
            )
        out = entry.to_natsbus(frame)
        out.id = str(frame.id)
        out.name = frame.name
        out.pts = frame.pts
        out.metadata = frame.metadata
        return out

    def to_pipecat(self, frame: nf.Frame) -> pf.Frame:
        """Convert a natsbus frame (decoded off the wire) to its pipecat frame.

        Raises:
            UnknownMessageTypeError: The natsbus frame class has no pipecat counterpart here
                (a natsbus application frame that this process did not map).
        """
        entry = self._to_pipecat.get(type(frame))
        if entry is None:
            wire_name = self._registry.frame_wire_name_of(type(frame))
            raise UnknownMessageTypeError(wire_name or type(frame).__qualname__)
        out = entry.to_pipecat(frame)
        if frame.id.isdigit():  # a pipecat sender's id; natsbus's own ids are not ints
            out.id = int(frame.id)
        out.name = frame.name
        out.pts = frame.pts
        out.metadata = frame.metadata
        return out


# The same numbers on both sides; looked up rather than built, for every frame message.
_DIRECTIONS: Final = {d: nf.FrameDirection(d.value) for d in PipecatDirection}
_DIRECTIONS_BACK: Final = {v: k for k, v in _DIRECTIONS.items()}
direction_to_natsbus: Final = _DIRECTIONS.__getitem__
"""Return pipecat's FrameDirection as natsbus's."""
direction_to_pipecat: Final = _DIRECTIONS_BACK.__getitem__
"""Return natsbus's FrameDirection as pipecat's."""


default_frames: Final = FrameMap()
"""The process-wide table that :func:`natsbus.pipecat.register_frame_type` extends."""
