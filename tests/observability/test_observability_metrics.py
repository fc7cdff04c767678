"""Metrics: after a scripted exchange, /metrics shows every metric with the expected values."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import nats
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from natsbus.bus import AsyncQueueBus, BusSubscriber
from natsbus.bus.nats import JetStreamOptions, NatsBus
from natsbus.bus.tally import DECODE_ERROR_REASONS, DROP_REASONS
from natsbus.messages import (
    BusCancelMessage,
    BusJobRequestMessage,
    BusMessage,
    BusSystemMessage,
    BusTTSSpeakMessage,
    BusWorkerErrorMessage,
    BusWorkerLocalErrorMessage,
    Payload,
)
from natsbus.observability import METRIC_NAMES, BusMetrics, ObservabilityServer
from natsbus.testing import NatsServer
from natsbus.workers import BaseWorker, job

from helpers.observability import Scrape, scrape
from helpers.workers import running, within


class Recorder(BusSubscriber):
    """Counts what it handles; raises on a system message (a failing system handler)."""

    def __init__(self, name: str, expected: int, *, takes_jobs: bool = False) -> None:
        self._name = name
        self.expected = expected
        self.takes_jobs = takes_jobs
        self.handled = 0
        self.done = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    @property
    def bus_job_targets(self) -> frozenset[str]:
        return frozenset((self._name,)) if self.takes_jobs else frozenset()

    async def on_bus_message(self, message: BusMessage) -> None:
        self.handled += 1
        if self.handled >= self.expected:
            self.done.set()
        if isinstance(message, BusSystemMessage):
            raise RuntimeError("this handler fails on purpose")


class Echo(BaseWorker):
    @job(name="echo")
    async def echo(self, message: BusJobRequestMessage) -> Payload:
        return {"echo": message.payload}

    @job(name="boom")
    async def boom(self, message: BusJobRequestMessage) -> Payload:
        raise ValueError("kaput")


def test_every_name_is_a_natsbus_name_with_a_base_unit() -> None:
    for name in METRIC_NAMES:
        assert name.startswith("natsbus_")
        assert name.endswith(("_seconds", "_total", "_depth", "_up", "_messages")), name


def test_one_bus_metrics_per_registry() -> None:
    registry = CollectorRegistry()
    BusMetrics(registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        BusMetrics(registry=registry)


async def test_metrics_off_counts_nothing() -> None:
    bus = AsyncQueueBus()
    assert bus.tally is None


async def test_local_exchange_shows_in_metrics(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    metrics = BusMetrics(registry=registry)
    recorder = Recorder("recorder", expected=7)
    async with (
        AsyncQueueBus(metrics=metrics) as bus,
        ObservabilityServer(host="127.0.0.1", port=0, metrics=metrics) as server,
    ):
        await bus.subscribe(recorder)
        for i in range(3):
            await bus.send(BusTTSSpeakMessage(f"hello {i}", source="test"))
        for _ in range(2):
            await bus.send(BusCancelMessage("stop", source="test"))
        # Local-only, sent once: published once and received once (not once per path).
        await bus.send(BusWorkerLocalErrorMessage("oops", source="test"))
        # Handed to the lanes without a send: received, never published.
        bus.on_message_received(BusWorkerLocalErrorMessage("direct", source="test"))
        await within(recorder.done.wait())
        result = await scrape(server.port)

    speak = {"bus": "local", "lane": "data", "type": "BusTTSSpeakMessage"}
    cancel = {"bus": "local", "lane": "system", "type": "BusCancelMessage"}
    assert result.value("natsbus_messages_published_total", **speak) == 3
    assert result.value("natsbus_messages_published_total", **cancel) == 2
    assert result.value("natsbus_messages_received_total", **speak) == 3
    assert result.value("natsbus_messages_received_total", **cancel) == 2
    local_error = {"bus": "local", "lane": "system", "type": "BusWorkerLocalErrorMessage"}
    assert result.value("natsbus_messages_published_total", **local_error) == 1
    assert result.value("natsbus_messages_received_total", **local_error) == 2
    # One histogram observation per dispatch, on each lane.
    assert result.value("natsbus_dispatch_latency_seconds_count", **speak) == 3
    assert result.value("natsbus_dispatch_latency_seconds_count", **cancel) == 2
    assert result.value("natsbus_dispatch_latency_seconds_bucket", le="+Inf", **speak) == 3
    assert result.value("natsbus_dispatch_latency_seconds_bucket", le="0.0001", **speak) is not None
    assert result.value("natsbus_handler_duration_seconds_count", **cancel) == 2
    assert result.value("natsbus_handler_errors_total", **cancel) == 2
    assert result.value("natsbus_handler_errors_total", **speak) == 0  # there, from the start
    for lane in ("system", "data"):
        depth = result.value(
            "natsbus_subscriber_queue_depth", bus="local", subscriber="recorder", lane=lane
        )
        assert depth == 0


async def test_histograms_count_every_dispatch_of_a_sampled_backlog() -> None:
    registry = CollectorRegistry()
    recorder = Recorder("recorder", expected=1000)
    async with AsyncQueueBus(metrics=BusMetrics(registry=registry)) as bus:
        await bus.subscribe(recorder)
        # AsyncQueueBus.send never suspends: all 1,000 are queued before the lane runs.
        for i in range(1000):
            await bus.send(BusTTSSpeakMessage(f"hello {i}", source="test"))
        assert bus.statistics().subscribers["recorder"].data.queued == 1000
        await within(recorder.done.wait())
    result = Scrape_of(registry)
    speak = {"bus": "local", "lane": "data", "type": "BusTTSSpeakMessage"}
    assert result.value("natsbus_messages_received_total", **speak) == 1000
    # One message in SAMPLE_EVERY is timed and weighs for the ones it stands for, so the
    # histograms count every dispatch of a backlog that drains to its end.
    assert result.value("natsbus_dispatch_latency_seconds_count", **speak) == 1000
    assert result.value("natsbus_handler_duration_seconds_count", **speak) == 1000
    latency_sum = result.value("natsbus_dispatch_latency_seconds_sum", **speak)
    assert latency_sum is not None and 0 < latency_sum / 1000 < 5


def nats_bus(url: str, channel: str, metrics: BusMetrics, **js: Any) -> NatsBus:
    return NatsBus(
        servers=url,
        channel=channel,
        metrics=metrics,
        jetstream_options=JetStreamOptions(**js) if js else None,
    )


async def test_nats_exchange_jobs_and_bad_input_show_in_metrics(nats_url: str) -> None:
    channel = f"obs-{uuid.uuid4().hex[:8]}"
    registry = CollectorRegistry()
    metrics = BusMetrics(registry=registry)
    echo = Echo("echo")
    receiver = Recorder("receiver", expected=4)
    sender_bus = nats_bus(nats_url, channel, metrics)
    async with (
        running(echo, bus=nats_bus(nats_url, channel, metrics)) as runner,
        sender_bus,
        ObservabilityServer(
            host="127.0.0.1", port=0, metrics=metrics, consumer_refresh=0.1
        ) as server,
    ):
        await runner.bus.subscribe(receiver)
        for i in range(3):
            await sender_bus.send(BusTTSSpeakMessage(f"x{i}", source="test", target="receiver"))
        # A system message the runner on that bus only logs (a cancel would end its workers).
        await sender_bus.send(BusWorkerErrorMessage("oops", source="test", target="receiver"))
        await within(receiver.done.wait())
        # Garbage on the receiving bus's subject: counted as a decode error, and dropped.
        raw = await nats.connect(nats_url)
        await raw.publish(
            runner.bus.layout.targeted("data", "receiver", "garbage"), b"\xff not protobuf"
        )
        await raw.flush()
        await raw.close()

        requester = Recorder("requester", expected=2)
        await sender_bus.subscribe(requester)
        await sender_bus.send(
            BusJobRequestMessage("j1", "echo", {"n": 1}, source="requester", target="echo")
        )
        await sender_bus.send(
            BusJobRequestMessage("j2", "boom", None, source="requester", target="echo")
        )
        await within(requester.done.wait(), 10)

        async def decoded_error_seen() -> Scrape:
            while True:
                result = await scrape(server.port)
                workers = result.labels("natsbus_jetstream_consumer_pending_messages", "worker")
                # The consumer numbers are refreshed in the background: wait for them. Only
                # the worker has a request consumer (the recorders take no jobs).
                # The instance consumers acknowledge at the end of a loop turn: wait until
                # the refreshed numbers have seen it (they must, or this times out).
                settled = all(
                    result.value(
                        "natsbus_jetstream_consumer_ack_pending_messages",
                        role="instance",
                        lane=lane,
                    )
                    == 0
                    for lane in ("system", "data")
                )
                if result.sum("natsbus_decode_errors_total") >= 1 and "echo" in workers and settled:
                    assert not workers & {"receiver", "requester"}
                    return result
                await asyncio.sleep(0.05)

        result = await within(decoded_error_seen())

    speak = {"bus": "nats", "lane": "data", "type": "BusTTSSpeakMessage"}
    error = {"bus": "nats", "lane": "system", "type": "BusWorkerErrorMessage"}
    # Both buses count into one tally: 3 sent, 3 handed to the receiving bus's subscribers
    # (plus 3 on the sending bus, which hands core messages to its own subscribers too).
    assert result.value("natsbus_messages_published_total", **speak) == 3
    assert result.value("natsbus_messages_received_total", **speak) == 6
    assert result.value("natsbus_messages_received_total", **error) == 2
    assert result.value("natsbus_dispatch_latency_seconds_count", **error) >= 1
    assert result.value("natsbus_dispatch_latency_seconds_count", **speak) >= 3
    assert result.value("natsbus_handler_errors_total", **error) == 1
    assert result.value("natsbus_decode_errors_total", bus="nats", reason="malformed") == 1
    assert result.value("natsbus_messages_dropped_total", bus="nats", reason="malformed") == 1
    assert result.value("natsbus_jobs_total", worker="echo", status="completed") == 1
    assert result.value("natsbus_jobs_total", worker="echo", status="error") == 1
    assert (
        result.value("natsbus_job_duration_seconds_count", worker="echo", status="completed") == 1
    )
    assert result.value("natsbus_connection_up", bus="nats", connection="system") == 1
    assert result.value("natsbus_connection_up", bus="nats", connection="data") == 1
    assert result.value("natsbus_reconnects_total", bus="nats", connection="data") == 0
    assert result.value("natsbus_job_redeliveries_total", bus="nats") == 0
    assert result.value("natsbus_jobs_dead_lettered_total", bus="nats") == 0
    assert (
        result.value(
            "natsbus_jetstream_consumer_pending_messages", role="job_requests", worker="echo"
        )
        == 0
    )
    for lane in ("system", "data"):
        assert (
            result.value(
                "natsbus_jetstream_consumer_ack_pending_messages", role="instance", lane=lane
            )
            == 0
        )
    assert result.labels("natsbus_jetstream_consumer_pending_messages", "role") == {
        "job_requests",
        "instance",
    }
    # A request consumer for the worker only (plain subscribers and the runner take no
    # jobs); the instance consumers have no worker.
    assert result.labels("natsbus_jetstream_consumer_pending_messages", "worker") == {"echo", ""}
    assert {s.name for s in result.samples} >= {
        "natsbus_subscriber_queue_depth",
        "natsbus_handler_duration_seconds_bucket",
    }


async def test_redeliveries_and_dead_letters_are_counted(nats_url: str) -> None:
    channel = f"obs-{uuid.uuid4().hex[:8]}"
    registry = CollectorRegistry()
    metrics = BusMetrics(registry=registry)
    client = Recorder("client", expected=1)
    async with nats_bus(nats_url, channel, metrics, max_attempts=2) as client_bus:
        await client_bus.subscribe(client)
        await client_bus.send(BusJobRequestMessage("doomed", source="client", target="w"))
        for _ in range(2):
            # A bus takes the job and stops without answering: the job is released.
            taker = Recorder("w", expected=1, takes_jobs=True)
            async with nats_bus(nats_url, channel, metrics, max_attempts=2) as bus:
                await bus.subscribe(taker)
                await within(taker.done.wait())
        async with nats_bus(nats_url, channel, metrics, max_attempts=2) as bus:
            await bus.subscribe(Recorder("w", expected=1, takes_jobs=True))
            await within(client.done.wait(), 10)
        result = Scrape(generate_latest(registry).decode())
    assert result.value("natsbus_job_redeliveries_total", bus="nats") == 2
    assert result.value("natsbus_jobs_dead_lettered_total", bus="nats") == 1


def Scrape_of(registry: CollectorRegistry) -> Scrape:
    from prometheus_client import generate_latest

    return Scrape(generate_latest(registry).decode())


async def test_error_and_drop_series_exist_before_the_first_event(nats_url: str) -> None:
    registry = CollectorRegistry()
    metrics = BusMetrics(registry=registry)
    receiver = Recorder("receiver", expected=1)
    bus = nats_bus(nats_url, f"obs-{uuid.uuid4().hex[:8]}", metrics)
    await bus.subscribe(receiver)
    async with bus:
        await bus.send(BusTTSSpeakMessage("hi", source="test", target="receiver"))
        await within(receiver.done.wait())
        result = Scrape(generate_latest(registry).decode())
    for reason in DROP_REASONS:
        assert result.value("natsbus_messages_dropped_total", bus="nats", reason=reason) == 0
    for reason in DECODE_ERROR_REASONS:
        assert result.value("natsbus_decode_errors_total", bus="nats", reason=reason) == 0
    speak = {"bus": "nats", "lane": "data", "type": "BusTTSSpeakMessage"}
    assert result.value("natsbus_handler_errors_total", **speak) == 0


async def test_metrics_answer_at_once_while_the_server_is_away(nats_server: NatsServer) -> None:
    metrics = BusMetrics(registry=CollectorRegistry())
    bus = nats_bus(nats_server.url, f"away-{uuid.uuid4().hex[:8]}", metrics)
    await bus.subscribe(Echo("echo"))
    async with (
        bus,
        ObservabilityServer(
            host="127.0.0.1", port=0, metrics=metrics, consumer_refresh=0.1
        ) as server,
    ):
        for _ in range(100):  # the first refresh
            if (await scrape(server.port)).labels(
                "natsbus_jetstream_consumer_pending_messages", "role"
            ):
                break
            await asyncio.sleep(0.05)
        await nats_server.kill()
        try:
            await asyncio.sleep(0.3)  # refreshes now wait for answers that never come
            began = time.monotonic()
            for _ in range(5):
                result = await scrape(server.port)
            # Asking the server would take the consumer timeout (1 s) per consumer.
            assert time.monotonic() - began < 1.0
            assert result.value("natsbus_connection_up", bus="nats", connection="data") == 0
            pending = result.labels("natsbus_jetstream_consumer_pending_messages", "role")
            assert pending == {"instance"}  # the last numbers known
        finally:
            await nats_server.start()
