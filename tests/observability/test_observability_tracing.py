"""Tracing: producer and consumer spans, W3C context in the envelope, one trace per job."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from natsbus.bus import AsyncQueueBus, BusSubscriber
from natsbus.bus.nats import NatsBus
from natsbus.messages import (
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobUpdateMessage,
    BusMessage,
    BusTTSSpeakMessage,
    Payload,
)
from natsbus.observability import BusTracing
from natsbus.observability.tracing import _current_context_getter
from natsbus.workers import BaseWorker, job

from helpers.process import Peer
from helpers.workers import running, within


class Inbox(BusSubscriber):
    def __init__(self, name: str, expected: int) -> None:
        self._name = name
        self.expected = expected
        self.received: list[BusMessage] = []
        self.done = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    async def on_bus_message(self, message: BusMessage) -> None:
        if message.target == self._name:
            self.received.append(message)
            if len(self.received) >= self.expected:
                self.done.set()


class Worker(BaseWorker):
    @job(name="work")
    async def work(self, message: BusJobRequestMessage) -> Payload:
        await self.send_job_update(message.job_id, {"progress": 0.5})
        return {"done": True}


def tracing() -> tuple[BusTracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return BusTracing(tracer_provider=provider), exporter


def by_name(spans: Any) -> dict[str, Any]:
    named: dict[str, Any] = {}
    for span in spans:
        assert span["name"] not in named, f"two spans named {span['name']}"
        named[span["name"]] = span
    return named


def as_dict(span: ReadableSpan) -> dict[str, Any]:
    assert span.context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
        "parent_id": None if span.parent is None else f"{span.parent.span_id:016x}",
        "attributes": dict(span.attributes or {}),
    }


def assert_one_job_trace(spans: dict[str, Any], system: str) -> None:
    """request -> handler -> update and response -> the requester's consumer spans."""
    send_request = spans["send BusJobRequestMessage"]
    process_request = spans["process BusJobRequestMessage"]
    send_update = spans["send BusJobUpdateMessage"]
    send_response = spans["send BusJobResponseMessage"]
    process_update = spans["process BusJobUpdateMessage"]
    process_response = spans["process BusJobResponseMessage"]
    assert len({s["trace_id"] for s in spans.values()}) == 1
    assert send_request["parent_id"] is None  # the job starts the trace
    assert process_request["parent_id"] == send_request["span_id"]
    assert send_update["parent_id"] == process_request["span_id"]
    assert send_response["parent_id"] == process_request["span_id"]
    assert process_update["parent_id"] == send_update["span_id"]
    assert process_response["parent_id"] == send_response["span_id"]
    for span in spans.values():
        attributes = span["attributes"]
        assert attributes["messaging.system"] == system
        kind = "send" if span["name"].startswith("send") else "process"
        assert attributes["messaging.operation.type"] == kind
        assert span["kind"] == ("PRODUCER" if kind == "send" else "CONSUMER")
        assert attributes["messaging.destination.name"]
        assert attributes["messaging.message.id"]
    assert (
        process_request["attributes"]["messaging.message.id"]
        == send_request["attributes"]["messaging.message.id"]
    )


def test_the_current_context_is_read_as_the_api_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    current = _current_context_getter()
    assert current() is otel_context.get_current()
    with TracerProvider().get_tracer("test").start_as_current_span("outer"):
        assert current() is otel_context.get_current()
        assert trace.get_current_span(current()).get_span_context().is_valid
    assert current() is otel_context.get_current()
    # Another runtime context than the API's default: go through the API itself.
    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", object())
    assert _current_context_getter() is otel_context.get_current


async def test_untraced_data_messages_make_no_spans_and_carry_no_context() -> None:
    tracer, exporter = tracing()
    inbox = Inbox("inbox", expected=1)
    async with AsyncQueueBus(observer=tracer) as bus:
        await bus.subscribe(inbox)
        message = BusTTSSpeakMessage("hi", source="me", target="inbox")
        await bus.send(message)
        await within(inbox.done.wait())
    assert message.trace_context is None
    assert exporter.get_finished_spans() == ()


async def test_a_message_sent_inside_a_span_is_traced_between_untraced_ones() -> None:
    tracer, exporter = tracing()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    inbox = Inbox("inbox", expected=3)
    messages = [BusTTSSpeakMessage(f"hi {i}", source="me", target="inbox") for i in range(3)]
    async with AsyncQueueBus(observer=tracer) as bus:
        await bus.subscribe(inbox)
        await bus.send(messages[0])  # outside any span: the tracer remembers this context
        with provider.get_tracer("test").start_as_current_span("outer") as outer:
            await bus.send(messages[1])
        await bus.send(messages[2])  # outside again
        await within(inbox.done.wait())
    assert messages[0].trace_context is None and messages[2].trace_context is None
    assert messages[1].trace_context is not None
    trace_id = f"{outer.get_span_context().trace_id:032x}"
    assert messages[1].trace_context["traceparent"].split("-")[1] == trace_id
    names = sorted(span.name for span in exporter.get_finished_spans())
    assert names == ["outer", "process BusTTSSpeakMessage", "send BusTTSSpeakMessage"]


async def test_every_message_is_traced_with_new_traces_all() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    inbox = Inbox("inbox", expected=1)
    async with AsyncQueueBus(
        observer=BusTracing(tracer_provider=provider, new_traces="all")
    ) as bus:
        await bus.subscribe(inbox)
        message = BusTTSSpeakMessage("hi", source="me", target="inbox")
        await bus.send(message)
        await within(inbox.done.wait())
    assert message.trace_context is not None
    assert message.trace_context["traceparent"].startswith("00-")
    send, process = sorted(exporter.get_finished_spans(), key=lambda s: s.kind.value)
    assert process.kind is SpanKind.CONSUMER and send.kind is SpanKind.PRODUCER
    assert process.parent is not None and send.context is not None
    assert process.parent.span_id == send.context.span_id
    assert process.attributes is not None
    assert process.attributes["messaging.system"] == "natsbus"
    assert process.attributes["messaging.destination.name"] == "inbox"


async def test_no_sdk_means_no_spans_but_context_still_passes_on() -> None:
    inbox = Inbox("inbox", expected=1)
    async with AsyncQueueBus(observer=BusTracing()) as bus:  # the global no-op provider
        await bus.subscribe(inbox)
        request = BusJobRequestMessage("j", "work", None, source="me", target="inbox")
        await bus.send(request)
        await within(inbox.done.wait())
    assert request.trace_context is None  # nothing valid to carry


async def test_one_job_is_one_trace_in_process() -> None:
    tracer, exporter = tracing()
    requester = Inbox("requester", expected=2)
    async with running(Worker("worker"), bus=AsyncQueueBus(observer=tracer)) as runner:
        await runner.bus.subscribe(requester)
        await runner.bus.send(
            BusJobRequestMessage("job-1", "work", None, source="requester", target="worker")
        )
        await within(requester.done.wait())
    spans = by_name(as_dict(s) for s in exporter.get_finished_spans())
    assert_one_job_trace(spans, system="natsbus")


async def test_one_job_across_two_processes_is_one_trace(nats_url: str) -> None:
    channel = f"trace-{uuid.uuid4().hex[:8]}"
    peer = Peer("tests.peers.traced_worker", "--url", nats_url, "--channel", channel)
    tracer, exporter = tracing()
    requester = Inbox("requester", expected=2)
    try:
        await peer.start()
        async with NatsBus(servers=nats_url, channel=channel, observer=tracer) as bus:
            await bus.subscribe(requester)
            await bus.send(
                BusJobRequestMessage("job-x", "work", {"n": 1}, source="requester", target="traced")
            )
            await within(requester.done.wait(), 20)
        assert [type(m) for m in requester.received] == [BusJobUpdateMessage, BusJobResponseMessage]
        peer.signal(signal.SIGTERM)
        await peer.wait_for("EXIT")
        assert await peer.wait(10) == 0
    finally:
        await peer.close()
    theirs = [json.loads(line.removeprefix("SPAN ")) for line in peer.found("SPAN ")]
    ours = [as_dict(s) for s in exporter.get_finished_spans()]
    assert {s["name"] for s in ours} == {
        "send BusJobRequestMessage",
        "process BusJobUpdateMessage",
        "process BusJobResponseMessage",
    }
    assert {s["name"] for s in theirs} == {
        "process BusJobRequestMessage",
        "send BusJobUpdateMessage",
        "send BusJobResponseMessage",
    }
    spans = by_name(ours + theirs)
    assert_one_job_trace(spans, system="nats")
    destination = spans["send BusJobRequestMessage"]["attributes"]["messaging.destination.name"]
    assert ".job.req.traced." in destination  # then the sender's token
