"""natsbus.pipecat's closed tables: pipecat frames and messages through natsbus's codec, app
types registered under explicit wire names, unmapped ones refused at the sender (counted)."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pipecat.bus.messages as pm
import pipecat.frames.frames as pf
import pytest
import pytest_asyncio
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import AdapterType, ToolsSchema
from pipecat.bus.bus import WorkerBus as PipecatWorkerBus
from pipecat.pipeline.job_context import JobStatus
from pipecat.processors.aggregators.llm_context import LLMContext, LLMSpecificMessage
from pipecat.processors.frame_processor import FrameDirection
from pipecat.registry.types import WorkerRegistryEntry
from pipecat.transcriptions.language import Language
from pipecat.utils.types import is_given
from prometheus_client import CollectorRegistry

import natsbus.frames as nf
from natsbus import NatsBus as CoreNatsBus
from natsbus import codec
from natsbus import messages as nm
from natsbus.bus.subscriber import BusSubscriber
from natsbus.errors import EncodeError, RegistrationError
from natsbus.observability import BusMetrics
from natsbus.pipecat import (
    NatsBus,
    default_messages,
    mapped_frame_types,
    register_frame_type,
    register_message_type,
)

from helpers.pipecat import Recorder

FATAL = pf.ErrorFrame("fatal boom")
vars(FATAL)["fatal"] = True  # pipecat warns when told fatal=True (deprecated since 1.8)

SAMPLE_FRAMES: list[pf.Frame] = [
    pf.StartFrame(audio_in_sample_rate=8000, audio_out_sample_rate=48000),
    pf.EndFrame(reason="bye"),
    pf.CancelFrame(reason="stop"),
    pf.StopFrame(),
    pf.InterruptionFrame(),
    pf.ErrorFrame("boom"),
    FATAL,
    pf.OutputTransportMessageFrame({"k": [1, 2**40]}),
    pf.OutputTransportMessageUrgentFrame({"urgent": True}),
    pf.TextFrame("hello"),
    pf.LLMTextFrame("token"),
    pf.TranscriptionFrame("hi", "user-1", "2026-12-02T00:00:00Z", language=Language.EN_US),
    pf.InterimTranscriptionFrame("h", "user-1", "2026-12-02T00:00:00Z"),
    pf.TTSSpeakFrame("say this", append_to_context=False),
    pf.LLMMessagesAppendFrame([{"role": "user", "content": "hi"}], run_llm=True),
    pf.LLMMessagesUpdateFrame([{"role": "system", "content": "be brief"}]),
    pf.LLMRunFrame(),
    pf.LLMSetToolsFrame([{"type": "function", "function": {"name": "f"}}]),
    pf.InputAudioRawFrame(b"\x00\x01" * 160, 16000, 1),
    pf.OutputAudioRawFrame(b"\x02\x03" * 160, 24000, 2),
    pf.TTSAudioRawFrame(b"\x04" * 320, 24000, 1),
    pf.InputImageRawFrame(b"\x89PNG", (640, 480), "PNG"),
    pf.OutputImageRawFrame(b"\xff\xd8", (2, 2), "JPEG"),
]


def crossed(message: pm.BusMessage) -> pm.BusMessage:
    """A pipecat message as the receiving process gets it: through the bytes of the wire."""
    data = codec.encode(default_messages.to_natsbus(message))
    return default_messages.to_pipecat(codec.decode(data))


def fields(obj: object) -> dict[str, object]:
    skip = {"id", "name", "event"}
    return {k: v for k, v in vars(obj).items() if k not in skip and not k.startswith("_")}


@pytest.mark.parametrize("frame", SAMPLE_FRAMES, ids=lambda f: type(f).__name__)
def test_every_mapped_pipecat_frame_crosses_with_its_class_and_fields(frame: pf.Frame) -> None:
    frame.pts = 123
    frame.metadata = {"turn": 7}
    message = pm.BusFrameMessage(
        source="a", target="b", frame=frame, direction=FrameDirection.UPSTREAM, bridge="x"
    )
    back = crossed(message)
    assert isinstance(back, pm.BusFrameMessage)
    assert (back.source, back.target, back.direction, back.bridge) == (
        "a",
        "b",
        FrameDirection.UPSTREAM,
        "x",
    )
    assert type(back.frame) is type(frame)
    assert (back.frame.id, back.frame.name) == (frame.id, frame.name)
    assert fields(back.frame) == fields(frame)


def test_the_sample_covers_every_frame_of_the_table() -> None:
    covered = {type(f) for f in SAMPLE_FRAMES} | {
        pf.PipelineFlushFrame,  # its asyncio.Event stays home: see the flush probe test
        pf.FatalErrorFrame,  # deprecated: it warns when made
        pf.LLMContextFrame,  # see its own test
    }
    assert covered == set(mapped_frame_types()) - {
        c for c in mapped_frame_types() if c.__module__ != pf.__name__
    }


def test_pipecat_messages_cross_with_their_fields() -> None:
    samples: list[pm.BusMessage] = [
        pm.BusActivateWorkerMessage(source="r", target="w", args={"n": 2**40}),
        pm.BusEndWorkerMessage(source="r", target="w", reason="done"),
        pm.BusCancelWorkerMessage(source="r", target="w", reason="now"),
        pm.BusWorkerReadyMessage(source="w", runner="r", parent="p", active=True, started_at=1.5),
        pm.BusWorkerRegistryMessage(
            source="r", runner="r", workers=[WorkerRegistryEntry(name="w", active=True)]
        ),
        pm.BusJobRequestMessage(source="c", target="w", job_id="j", job_name="n", payload={}),
        pm.BusJobResponseMessage(source="w", target="c", job_id="j", status=JobStatus.FAILED),
        pm.BusJobStreamDataMessage(source="w", target="c", job_id="j", data={"b": b"\x00"}),
        pm.BusTTSSpeakMessage(source="w", text="hi"),
        pm.BusFlushProgressMessage(source="w", target="c", flush_id=9),
    ]
    for message in samples:
        back = crossed(message)
        assert type(back) is type(message)
        assert fields(back) == fields(message)
    status = crossed(samples[6])
    assert isinstance(status, pm.BusJobResponseMessage)
    assert type(status.status) is JobStatus


def test_an_unmapped_frame_or_message_is_refused_with_a_clear_error() -> None:
    @dataclass
    class VisemeFrame(pf.DataFrame):
        viseme: int = 0

    message = pm.BusFrameMessage(
        source="a", frame=VisemeFrame(3), direction=FrameDirection.DOWNSTREAM
    )
    with pytest.raises(EncodeError, match=r"VisemeFrame has no natsbus wire form.*register_frame"):
        default_messages.to_natsbus(message)

    @dataclass
    class Custom(pm.BusDataMessage):
        value: int = 0

    with pytest.raises(EncodeError, match=r"Custom has no natsbus wire form.*register_message"):
        default_messages.to_natsbus(Custom(source="a"))
    with pytest.raises(RegistrationError, match="already mapped"):
        register_frame_type("test.again", pf.TextFrame)
    with pytest.raises(RegistrationError, match="no init field"):
        register_frame_type(f"test.{uuid.uuid4().hex}", VisemeFrame, fields=["nope"])


class NatsbusRecorder(BusSubscriber):
    def __init__(self) -> None:
        self.messages: list[nm.BusMessage] = []
        self.arrived = asyncio.Event()

    @property
    def name(self) -> str:
        return "natsbus-recorder"

    async def on_bus_message(self, message: nm.BusMessage) -> None:
        self.messages.append(message)
        self.arrived.set()


@pytest_asyncio.fixture
async def metrics() -> BusMetrics:
    return BusMetrics(registry=CollectorRegistry())


@pytest_asyncio.fixture
async def buses(nats_url: str, metrics: BusMetrics) -> AsyncIterator[tuple[NatsBus, CoreNatsBus]]:
    channel = f"pc-{uuid.uuid4().hex[:8]}"
    sender = NatsBus(servers=nats_url, channel=channel, metrics=metrics)
    receiver = CoreNatsBus(servers=nats_url, channel=channel)
    await receiver.start()
    await sender.start()
    yield sender, receiver
    await sender.stop()
    await receiver.stop()


def dropped(metrics: BusMetrics, reason: str) -> float:
    assert metrics.registry is not None
    value = metrics.registry.get_sample_value(
        "natsbus_messages_dropped_total", {"bus": "nats", "reason": reason}
    )
    return value or 0.0


async def test_an_unregistered_frame_is_refused_at_the_sender_and_counted_and_crosses_registered(
    buses: tuple[NatsBus, CoreNatsBus], metrics: BusMetrics
) -> None:
    sender, receiver = buses
    assert isinstance(sender, PipecatWorkerBus)
    watcher = NatsbusRecorder()
    await receiver.subscribe(watcher)

    @dataclass
    class VisemeFrame(pf.DataFrame):
        viseme: int = 0
        weights: list[float] = dataclasses.field(default_factory=list)

    def frame_message(frame: pf.Frame) -> pm.BusFrameMessage:
        return pm.BusFrameMessage(source="lips", frame=frame, direction=FrameDirection.DOWNSTREAM)

    with pytest.raises(EncodeError, match="VisemeFrame has no natsbus wire form"):
        await sender.send(frame_message(VisemeFrame(4, [0.5])))
    assert dropped(metrics, "unmapped_type") == 1

    wire_name = f"test.Viseme{uuid.uuid4().hex[:6]}"
    twin = register_frame_type(wire_name, VisemeFrame)
    await sender.send(frame_message(VisemeFrame(4, [0.5])))
    await asyncio.wait_for(watcher.arrived.wait(), 10)
    [got] = watcher.messages
    assert isinstance(got, nm.BusFrameMessage)
    assert type(got.frame) is twin
    assert isinstance(got.frame, nf.DataFrame)
    assert (got.frame.viseme, got.frame.weights) == (4, [0.5])  # type: ignore[attr-defined]
    assert codec.default_registry.frame_wire_name_of(twin) == wire_name


async def test_a_natsbus_message_without_a_pipecat_counterpart_is_dropped_and_counted(
    buses: tuple[NatsBus, CoreNatsBus], metrics: BusMetrics
) -> None:
    sender, receiver = buses  # here the pipecat bus receives, the natsbus bus sends
    recorder, other = Recorder("pc-recorder"), Recorder("pc-other")
    await sender.subscribe(recorder)
    await sender.subscribe(other)

    @dataclass(kw_only=True)
    class NatsbusOnly(nm.BusDataMessage):
        value: int = 0

    codec.register_message_type(f"test.only{uuid.uuid4().hex[:6]}", NatsbusOnly)
    await receiver.send(NatsbusOnly(source="nb", value=1))
    await receiver.send(nm.BusEndMessage(source="nb", reason="after"))
    await recorder.next_message()
    await other.next_message()
    assert [type(m) for m in recorder.messages] == [pm.BusEndMessage]
    assert other.messages == recorder.messages
    assert dropped(metrics, "unknown_type") == 1  # once, however many subscribers had it


def test_registering_an_app_message_type_makes_a_twin_of_the_same_priority() -> None:
    @dataclass
    class Urgent(pm.BusSystemMessage):
        level: int = 0

    twin = register_message_type(f"test.urgent{uuid.uuid4().hex[:6]}", Urgent)
    assert issubclass(twin, nm.BusSystemMessage)
    back = crossed(Urgent(source="a", level=3))
    assert type(back) is Urgent
    assert back.level == 3  # type: ignore[attr-defined]
    with pytest.raises(RegistrationError, match="local-only"):
        register_message_type("test.local", pm.BusAddWorkerMessage)


def test_natsbus_itself_never_imports_pipecat_and_the_extra_is_named_when_missing() -> None:
    core = (
        "import sys, natsbus, natsbus.bus.nats, natsbus.pipeline, natsbus.workers;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pipecat'))"
    )
    out = subprocess.run([sys.executable, "-c", core], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    missing = "import sys; sys.modules['pipecat'] = None; import natsbus.pipecat"
    run = subprocess.run([sys.executable, "-c", missing], capture_output=True, text=True)
    assert run.returncode != 0
    assert "pip install 'natsbus[pipecat]'" in run.stderr


def test_an_llm_context_frame_crosses_as_its_messages_tools_and_tool_choice() -> None:
    tools = ToolsSchema(
        standard_tools=[
            FunctionSchema(
                name="weather",
                description="Today's weather",
                properties={"city": {"type": "string"}},
                required=["city"],
            )
        ],
        custom_tools={AdapterType.GEMINI: [{"google_search": {}}]},
    )
    messages = [
        {"role": "system", "content": "be brief"},
        LLMSpecificMessage(llm="openai", message={"role": "developer", "content": "x"}),
    ]
    context = LLMContext(messages=messages, tools=tools, tool_choice="auto")
    frame = pf.LLMContextFrame(context, speculation=True)
    message = pm.BusFrameMessage(source="a", frame=frame, direction=FrameDirection.DOWNSTREAM)
    back = crossed(message)
    assert isinstance(back, pm.BusFrameMessage)
    got = back.frame
    assert isinstance(got, pf.LLMContextFrame)
    assert got.speculation is True
    assert got.context.messages == messages
    assert got.context.tool_choice == "auto"
    assert isinstance(got.context.tools, ToolsSchema)
    [weather] = got.context.tools.standard_tools
    assert weather.to_default_dict() == tools.standard_tools[0].to_default_dict()
    assert got.context.tools.custom_tools == {AdapterType.GEMINI: [{"google_search": {}}]}

    bare = crossed(
        pm.BusFrameMessage(
            source="a", frame=pf.LLMContextFrame(LLMContext()), direction=FrameDirection.DOWNSTREAM
        )
    )
    assert isinstance(bare, pm.BusFrameMessage)
    assert not is_given(bare.frame.context.tools)  # type: ignore[attr-defined]
    assert not is_given(bare.frame.context.tool_choice)  # type: ignore[attr-defined]
