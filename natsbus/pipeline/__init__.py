"""Pipelines of frame processors, and the bridge that carries their frames over the bus.

- :class:`FrameProcessor`: one link; :class:`IdentityFilter`: one that passes every frame
  on; :class:`Pipeline`: processors in a row.
- :class:`PipelineWorker`: a worker that runs a pipeline; ``bridged=True`` tees the frames
  leaving its pipeline onto the bus and takes frames from it. An ``EndFrame`` (or
  ``CancelFrame``) queued into it ends (or cancels) the pipeline and then the worker.
- :class:`BusBridgeProcessor`: placed in a transport worker's pipeline, it sends the frames
  that reach it to the bus and pushes the frames other workers send.

The frames themselves live in :mod:`natsbus.frames` (re-exported here) and travel in a
:class:`~natsbus.messages.BusFrameMessage`. See ``docs/frames.md``.
"""

from natsbus.frames import (
    LIFECYCLE_FRAMES,
    AudioRawFrame,
    CancelFrame,
    ControlFrame,
    DataFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    FrameDirection,
    ImageRawFrame,
    InputAudioRawFrame,
    InputImageRawFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMMessagesFrame,
    LLMSetToolsFrame,
    OutputAudioRawFrame,
    OutputImageRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    StartFrame,
    StopFrame,
    SystemFrame,
    TextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
)
from natsbus.messages import BusFrameMessage
from natsbus.pipeline.bridge import EARLY_FRAME_LIMIT, BusBridgeProcessor, BusEdgeProcessor
from natsbus.pipeline.pipeline import Pipeline
from natsbus.pipeline.processor import FrameProcessor, FrameProcessorSetup, IdentityFilter
from natsbus.pipeline.worker import PipelineWorker

__all__ = [
    "EARLY_FRAME_LIMIT",
    "LIFECYCLE_FRAMES",
    "AudioRawFrame",
    "BusBridgeProcessor",
    "BusEdgeProcessor",
    "BusFrameMessage",
    "CancelFrame",
    "ControlFrame",
    "DataFrame",
    "EndFrame",
    "ErrorFrame",
    "Frame",
    "FrameDirection",
    "FrameProcessor",
    "FrameProcessorSetup",
    "IdentityFilter",
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
    "Pipeline",
    "PipelineWorker",
    "StartFrame",
    "StopFrame",
    "SystemFrame",
    "TTSAudioRawFrame",
    "TTSSpeakFrame",
    "TextFrame",
    "TranscriptionFrame",
]
