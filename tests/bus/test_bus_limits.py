"""Every queue of a bus has a bound the user sets and sees, and a full one behaves as documented."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid

import nats
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from natsbus import BusTTSSpeakMessage, BusWorkerErrorMessage, Codec, QueueLimits
from natsbus.bus import AsyncQueueBus, NetworkCounts
from natsbus.bus.nats import NatsBus
from natsbus.messages import (
    BusEndWorkerMessage,
    BusJobResponseMessage,
    BusJobUpdateMessage,
    JobStatus,
    Lane,
)
from natsbus.observability import BusMetrics

from helpers.recorders import Inbox


def speak(i: int) -> BusTTSSpeakMessage:
    return BusTTSSpeakMessage(str(i), source="tx", target="rx")


def test_limits_are_positive_ints() -> None:
    assert QueueLimits().data_lane == 100_000
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="data_lane"):
            QueueLimits(data_lane=bad)  # type: ignore[arg-type]


async def test_a_full_data_lane_drops_its_oldest_and_reports_the_subscriber_slow_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    limits = QueueLimits(data_lane=5)
    bus = AsyncQueueBus(limits=limits, metrics=BusMetrics(registry=registry))
    recorder = Inbox("rx")
    await bus.subscribe(recorder)
    caplog.set_level(logging.INFO, "natsbus.bus.dispatch")
    for i in range(8):  # the bus is not started: they wait in the lane
        await bus.send(speak(i))
    lane = bus.statistics().subscribers["rx"].data
    assert bus.statistics().limits is limits
    assert (lane.limit, lane.queued, lane.dropped, lane.slow, lane.slow_episodes) == (
        5,
        5,
        3,
        True,
        1,
    )
    slow = [r for r in caplog.records if "is slow" in r.getMessage()]
    assert len(slow) == 1 and "dropping the oldest" in slow[0].getMessage()
    async with bus:
        for _ in range(100):
            if len(recorder.received) == 5:
                break
            await asyncio.sleep(0.01)
    assert [m.text for m in recorder.received] == ["3", "4", "5", "6", "7"]  # type: ignore[attr-defined]
    lane = bus.statistics().subscribers["rx"].data
    assert not lane.slow and lane.slow_episodes == 1
    assert any("caught up" in r.getMessage() for r in caplog.records)
    families = {f.name: f for f in text_string_to_metric_families(_text(registry))}
    dropped = {s.labels["reason"]: s.value for s in families["natsbus_messages_dropped"].samples}
    assert dropped["lane_full"] == 3
    slow_series = {
        s.labels["lane"]: s.value
        for s in families["natsbus_slow_consumers"].samples
        if s.name.endswith("_total")
    }
    assert slow_series == {"data": 1, "system": 0}  # both lanes present from the start


async def test_a_full_system_lane_keeps_every_message() -> None:
    bus = AsyncQueueBus(limits=QueueLimits(system_lane=3))
    recorder = Inbox("rx")
    await bus.subscribe(recorder)
    for i in range(6):
        await bus.send(BusWorkerErrorMessage(f"e{i}", source="tx", target="rx"))
    lane = bus.statistics().subscribers["rx"].system
    assert (lane.queued, lane.dropped, lane.slow) == (6, 0, True)
    async with bus:
        for _ in range(100):
            if len(recorder.received) == 6:
                break
            await asyncio.sleep(0.01)
    assert len(recorder.received) == 6


async def test_a_burst_faster_than_decoding_waits_in_the_socket_and_loses_nothing(
    nats_url: str,
) -> None:
    channel = f"limits-{uuid.uuid4().hex[:8]}"
    bus = NatsBus(servers=nats_url, channel=channel)
    recorder = Inbox("rx")
    await bus.subscribe(recorder)
    async with bus:
        raw = await nats.connect(nats_url)
        try:
            # Published by raw nats-py in one burst, faster than the bus decodes: nothing is
            # held or dropped by the client, the rest waits to be read.
            codec = Codec()
            subject = bus.layout.targeted(Lane.DATA, "rx", speak(0).source)
            for i in range(5_000):
                await raw.publish(subject, codec.encode(speak(i)))
            await raw.flush()
        finally:
            await raw.close()
        await recorder.wait_until(lambda: len(recorder.received) == 5_000)
        network = bus.statistics().network
        assert network is not None
        assert network.counts.slow_consumer_drops == 0
        assert [m.text for m in recorder.received] == [speak(i).text for i in range(5_000)]


async def test_every_network_count_is_exported(nats_url: str) -> None:
    registry = CollectorRegistry()
    metrics = BusMetrics(registry=registry)
    bus = NatsBus(servers=nats_url, channel="exported", metrics=metrics)
    counts = NetworkCounts()
    # A distinct value for every field, as a bus that is gone would leave them.
    exported = {
        "dropped_disconnected": ("natsbus_messages_dropped_total", {"reason": "disconnected"}),
        "sent_disconnected": ("natsbus_messages_sent_disconnected_total", {}),
        "slow_consumer_drops": ("natsbus_messages_dropped_total", {"reason": "slow_consumer"}),
        "decode_errors": ("natsbus_decode_errors_total", {"reason": "malformed"}),
        "reconnects": ("natsbus_reconnects_total", {"connection": "data"}),
        "redelivered": ("natsbus_job_redeliveries_total", {}),
        "dead_lettered": ("natsbus_jobs_dead_lettered_total", {}),
        "duplicates": ("natsbus_messages_dropped_total", {"reason": "duplicate"}),
        "fast_copies": ("natsbus_fast_copies_total", {}),
        "duplicate_job_ids": ("natsbus_job_anomalies_total", {"kind": "duplicate_job_id"}),
        "unrouted_replies": ("natsbus_job_anomalies_total", {"kind": "unrouted_reply"}),
        "publish_retries": ("natsbus_job_anomalies_total", {"kind": "publish_retry"}),
        "answered_elsewhere": ("natsbus_job_anomalies_total", {"kind": "answered_elsewhere"}),
        "forged_source": ("natsbus_messages_dropped_total", {"reason": "forged_source"}),
        "unexpected_answers": ("natsbus_messages_dropped_total", {"reason": "unexpected_answer"}),
        "unexpected_controls": (
            "natsbus_messages_dropped_total",
            {"reason": "unexpected_control"},
        ),
        "permission_denials": ("natsbus_permission_denials_total", {}),
    }
    names = [spec.name for spec in dataclasses.fields(NetworkCounts)]
    assert sorted(exported) == sorted(names), "a count without an exported series"
    for value, name in enumerate(names, start=11):
        if name == "decode_errors":
            counts.decode_errors["malformed"] = value
        elif name == "reconnects":
            counts.reconnects[Lane.DATA] = value
        else:
            setattr(counts, name, value)
    metrics.tally_for(bus).retired_network.add(counts)
    samples = [s for f in text_string_to_metric_families(_text(registry)) for s in f.samples]
    for value, name in enumerate(names, start=11):
        metric, labels = exported[name]
        found = [
            s.value
            for s in samples
            if s.name == metric
            and s.labels.get("bus") == "nats"
            and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        assert found == [value], f"{name}: {metric}{labels} -> {found}"


def _text(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


async def test_a_full_data_lane_never_drops_a_job_or_lifecycle_message() -> None:
    bus = AsyncQueueBus(limits=QueueLimits(data_lane=3))
    recorder = Inbox("rx")
    await bus.subscribe(recorder)
    answer = BusJobResponseMessage("j1", JobStatus.COMPLETED, source="w", target="rx")
    end = BusEndWorkerMessage(source="boss", target="rx")
    await bus.send(answer)
    await bus.send(end)
    await bus.send(speak(0))
    await bus.send(speak(1))  # full: the oldest that may go is frame 0, behind the two
    lane = bus.statistics().subscribers["rx"].data
    assert (lane.queued, lane.dropped) == (3, 1)
    update = BusJobUpdateMessage("j1", {"p": 1}, source="w", target="rx")
    await bus.send(update)  # full again: frame 1 goes
    await bus.send(speak(2))  # nothing else may go: the new frame is the one dropped
    await bus.send(BusJobUpdateMessage("j1", {"p": 2}, source="w", target="rx"))  # kept, over
    lane = bus.statistics().subscribers["rx"].data
    assert (lane.queued, lane.dropped) == (4, 3)
    async with bus:
        for _ in range(100):
            if len(recorder.received) == 4:
                break
            await asyncio.sleep(0.01)
    assert [type(m).__name__ for m in recorder.received] == [
        "BusJobResponseMessage",
        "BusEndWorkerMessage",
        "BusJobUpdateMessage",
        "BusJobUpdateMessage",
    ]
