"""Pipeline frames: what flows through a pipeline and, in a ``BusFrameMessage``, between workers.

A frame is a dataclass. Every frame carries, besides its own fields, four keyword-only base
fields that travel on the wire with it:

- ``id``: unique across processes, made when the frame is (``natsbus._ids.new_id``);
- ``name``: ``"<class>#<n>"`` by default, for logs;
- ``pts``: presentation timestamp in nanoseconds, or None;
- ``metadata``: a payload dict (the lossless types of :data:`natsbus.messages.Payload`).

Frames compare equal by value: ``id`` and ``name`` are made automatically and take no part in
equality (as a message's envelope metadata does not), while ``pts`` and ``metadata`` do. A
decoded frame keeps the sender's ``id`` and ``name``.

``bus_source`` is set on a frame that arrived over the bus (the sending worker's name). It is
not carried on the wire and takes no part in equality; a bridged worker never sends a frame
that arrived over the bus back onto it (see ``docs/frames.md``).

Categories follow the usual real-time pipeline model: :class:`SystemFrame` (urgent, out of
band), :class:`DataFrame` (content, in order) and :class:`ControlFrame` (in-band control).
The built-in frames all have a wire form (``proto/natsbus/v1/frames.proto``); an application
registers its own frame classes with ``natsbus.codec.register_frame_type``.
"""

from __future__ import annotations

import enum
import itertools
from collections import defaultdict
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Final

from natsbus._ids import new_id

__all__ = [
    "LIFECYCLE_FRAMES",
    "AudioRawFrame",
    "CancelFrame",
    "ControlFrame",
    "DataFrame",
    "EndFrame",
    "ErrorFrame",
    "Frame",
    "FrameDirection",
    "ImageRawFrame",
    "InputAudioRawFrame",
    "InputImageRawFrame",
    "InterimTranscriptionFrame",
    "InterruptionFrame",
    "LLMMessagesFrame",
    "LLMSetToolsFrame",
    "OutputAudioRawFrame",
    "OutputImageRawFrame",
    "OutputTransportMessageFrame",
    "OutputTransportMessageUrgentFrame",
    "StartFrame",
    "StopFrame",
    "SystemFrame",
    "TTSAudioRawFrame",
    "TTSSpeakFrame",
    "TextFrame",
    "TranscriptionFrame",
]

_counters: defaultdict[str, itertools.count[int]] = defaultdict(itertools.count)


class FrameDirection(enum.IntEnum):
    """The way a frame travels through a pipeline."""

    DOWNSTREAM = 1
    """From the input (a transport's microphone) towards the output (its speaker)."""
    UPSTREAM = 2
    """Back towards the input (an interruption, an error)."""


@dataclass
class Frame:
    """Base class of every frame.

    Attributes:
        pts: Presentation timestamp in nanoseconds, or None.
        metadata: Application data that travels with the frame (payload values only).
        id: Unique id, made with the frame; kept across the bus; no part in equality.
        name: Name for logs, ``"<class>#<n>"`` unless given; no part in equality.
        bus_source: The worker the frame came from over the bus, None for a frame made in
            this process. Set by the receiving bridge; never on the wire; no part in equality.
    """

    _: KW_ONLY
    pts: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_id, compare=False, repr=False)
    name: str = field(default="", compare=False)
    bus_source: str | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.name:
            cls = type(self).__name__
            self.name = f"{cls}#{next(_counters[cls])}"


@dataclass
class SystemFrame(Frame):
    """An urgent frame: lifecycle, interruptions, errors, input media."""


@dataclass
class DataFrame(Frame):
    """A content frame, processed in order: text, output audio and images, LLM context."""


@dataclass
class ControlFrame(Frame):
    """An in-band control frame, processed in order with data frames (an end, a stop)."""


# --- Lifecycle ----------------------------------------------------------------------------------


@dataclass
class StartFrame(SystemFrame):
    """The first frame through a pipeline: processors start when they see it.

    Attributes:
        audio_in_sample_rate: Sample rate of input audio, in Hz.
        audio_out_sample_rate: Sample rate of output audio, in Hz.
    """

    audio_in_sample_rate: int = 16000
    audio_out_sample_rate: int = 24000


@dataclass
class EndFrame(ControlFrame):
    """Ends a pipeline gracefully, after the frames queued before it.

    Attributes:
        reason: Why, for logs.
    """

    reason: str | None = None


@dataclass
class CancelFrame(SystemFrame):
    """Cancels a pipeline at once; queued frames are abandoned.

    Attributes:
        reason: Why, for logs.
    """

    reason: str | None = None


@dataclass
class StopFrame(ControlFrame):
    """Stops a pipeline without ending it: processors keep their connections open."""


LIFECYCLE_FRAMES: Final[tuple[type[Frame], ...]] = (StartFrame, EndFrame, CancelFrame, StopFrame)
"""Frames that belong to one pipeline's life: they never cross the bus."""


# --- System -------------------------------------------------------------------------------------


@dataclass
class InterruptionFrame(SystemFrame):
    """The user interrupted the bot: drop what is queued for output."""


@dataclass
class ErrorFrame(SystemFrame):
    """Reports an error, usually upstream.

    Attributes:
        error: Description of the error.
        fatal: Whether the pipeline cannot go on.
    """

    error: str
    fatal: bool = False


@dataclass
class OutputTransportMessageUrgentFrame(SystemFrame):
    """A message for the transport's client, sent ahead of queued output.

    A bridge lets it through locally rather than onto the bus: it has to reach the transport
    even when no other worker is active yet.

    Attributes:
        message: The message (a payload value: dict, list, str, number, bool, bytes or None).
    """

    message: Any


# --- Data ---------------------------------------------------------------------------------------


@dataclass
class OutputTransportMessageFrame(DataFrame):
    """A message for the transport's client, in order with the output.

    Attributes:
        message: The message (a payload value: dict, list, str, number, bool, bytes or None).
    """

    message: Any


@dataclass
class TextFrame(DataFrame):
    """A chunk of text (an LLM's output, say).

    Attributes:
        text: The text.
    """

    text: str


@dataclass
class TranscriptionFrame(TextFrame):
    """A final transcription of what a user said.

    Attributes:
        user_id: Who said it.
        timestamp: When, as an ISO 8601 string.
        language: The language code, if known.
    """

    user_id: str
    timestamp: str
    language: str | None = None


@dataclass
class InterimTranscriptionFrame(TextFrame):
    """An interim (not yet final) transcription.

    Attributes:
        user_id: Who is speaking.
        timestamp: When, as an ISO 8601 string.
        language: The language code, if known.
    """

    user_id: str
    timestamp: str
    language: str | None = None


@dataclass
class TTSSpeakFrame(DataFrame):
    """Asks the TTS service to speak a text.

    Attributes:
        text: The text to speak.
        append_to_context: Whether the text is also appended to the conversation context
            (None: the service's default).
    """

    text: str
    append_to_context: bool | None = None


@dataclass
class LLMMessagesFrame(DataFrame):
    """A list of LLM messages (``{"role": ..., "content": ...}`` dicts) to run.

    Attributes:
        messages: The messages; each a payload dict.
    """

    messages: list[dict[str, Any]]


@dataclass
class LLMSetToolsFrame(DataFrame):
    """Sets the tools the LLM may call.

    Attributes:
        tools: The tool schemas; each a payload dict.
    """

    tools: list[dict[str, Any]]


# --- Media --------------------------------------------------------------------------------------


@dataclass
class AudioRawFrame:
    """Mixin: raw PCM audio (16-bit signed, little-endian, interleaved channels).

    Attributes:
        audio: The PCM bytes.
        sample_rate: Samples per second, per channel.
        num_channels: Number of channels.
    """

    audio: bytes = field(repr=False)
    sample_rate: int
    num_channels: int

    @property
    def num_frames(self) -> int:
        """Number of audio frames (samples per channel) in :attr:`audio`."""
        return len(self.audio) // (self.num_channels * 2) if self.num_channels else 0


@dataclass
class InputAudioRawFrame(SystemFrame, AudioRawFrame):
    """Audio from a transport's input (a user's microphone)."""


@dataclass
class OutputAudioRawFrame(DataFrame, AudioRawFrame):
    """Audio for a transport's output."""


@dataclass
class TTSAudioRawFrame(OutputAudioRawFrame):
    """Audio made by a TTS service."""


@dataclass
class ImageRawFrame:
    """Mixin: a raw image.

    Attributes:
        image: The image bytes (raw pixels or an encoded image, see ``format``).
        size: Width and height in pixels.
        format: The pixel or file format (``"RGB"``, ``"JPEG"``...), if known.
    """

    image: bytes = field(repr=False)
    size: tuple[int, int]
    format: str | None = None


@dataclass
class InputImageRawFrame(SystemFrame, ImageRawFrame):
    """An image from a transport's input (a camera)."""


@dataclass
class OutputImageRawFrame(DataFrame, ImageRawFrame):
    """An image for a transport's output."""
