"""The JetStream consumers a NatsBus keeps: few per bus, and none left behind for good."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import nats
import pytest
from nats.errors import Error as NatsError
from nats.js.api import RetentionPolicy, StreamConfig
from nats.js.errors import NotFoundError

from natsbus.bus import BusSubscriber
from natsbus.bus.nats import NatsBus
from natsbus.bus.nats.jetstream import instance_consumer_config, resume_consumer
from natsbus.bus.nats.layout import SubjectLayout
from natsbus.bus.nats.options import JetStreamOptions, NatsConnectOptions
from natsbus.messages import (
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusMessage,
    JobStatus,
    Lane,
)
from natsbus.testing import NatsServer
from natsbus.workers import WorkerRunner

from helpers.nats import running_bus
from helpers.recorders import Inbox
from helpers.workers import Client, Tool, running, within


async def consumers_of(url: str, stream: str) -> dict[str, list[str]]:
    """Every consumer of ``stream``, with the subjects it reads."""
    client = await nats.connect(url)
    try:
        found = {}
        for info in await client.jetstream().consumers_info(stream):
            config = info.config
            subjects = config.filter_subjects or [config.filter_subject or ">"]
            assert info.name is not None
            found[info.name] = list(subjects)
        return found
    finally:
        await client.close()


async def consumer_count(url: str, stream: str) -> int:
    """How many consumers ``stream`` has (the consumer list comes in pages of 256)."""
    client = await nats.connect(url)
    try:
        return (await client.jetstream().stream_info(stream)).state.consumer_count
    finally:
        await client.close()


def answering(bus: NatsBus, name: str) -> Inbox:
    """A subscriber that answers each job request it gets ``completed``."""

    async def answer(message: BusMessage) -> None:
        if isinstance(message, BusJobRequestMessage) and message.target == name:
            await bus.send(
                BusJobResponseMessage(
                    message.job_id, JobStatus.COMPLETED, None, source=name, target=message.source
                )
            )

    return Inbox(name, behaviour=answer)


async def test_a_bus_has_two_instance_consumers_whatever_it_hosts(nats_url: str) -> None:
    channel = f"few-{uuid.uuid4().hex[:8]}"
    workers = [Inbox(f"w{i}") for i in range(5)]
    runner = WorkerRunner(bus=NatsBus(servers=nats_url, channel=channel), handle_signals=False)
    bus = runner.bus
    assert isinstance(bus, NatsBus)
    for worker in workers:
        await bus.subscribe(worker)
    await bus.subscribe(runner)  # as a runner does: it takes no job itself
    async with bus:
        layout = bus.layout
        instance = await consumers_of(nats_url, layout.stream)
        assert sorted(instance) == sorted(
            layout.instance_consumer(bus.instance_id, lane) for lane in (Lane.SYSTEM, Lane.DATA)
        )
        system = instance[layout.instance_consumer(bus.instance_id, Lane.SYSTEM)]
        targets = [w.name for w in workers]  # a runner listens to broadcasts only
        assert sorted(system) == sorted(
            [layout.job_replies(bus.instance_id, Lane.SYSTEM)]
            + [layout.job_control(w.name) for w in workers]
            + [layout.lifecycle(Lane.SYSTEM, None)]
            + [layout.lifecycle(Lane.SYSTEM, target) for target in targets]
        )
        data = instance[layout.instance_consumer(bus.instance_id, Lane.DATA)]
        assert sorted(data) == sorted(
            [layout.job_replies(bus.instance_id, Lane.DATA), layout.lifecycle(Lane.DATA, None)]
            + [layout.lifecycle(Lane.DATA, target) for target in targets]
        )
        requests = await consumers_of(nats_url, layout.request_stream)
        assert sorted(requests) == sorted(layout.job_consumer(w.name) for w in workers)
        assert layout.job_consumer(runner.name) not in requests

        # A worker leaving: its controls are no longer read here, a moment later (a bus
        # stopping deletes its consumers before that, with no update first).
        await bus.unsubscribe(workers[0])
        system_consumer = layout.instance_consumer(bus.instance_id, Lane.SYSTEM)
        assert (
            layout.job_control("w0")
            in (await consumers_of(nats_url, layout.stream))[system_consumer]
        )
        for _ in range(100):
            system = (await consumers_of(nats_url, layout.stream))[system_consumer]
            if layout.job_control("w0") not in system:
                break
            await asyncio.sleep(0.05)
        assert layout.job_control("w0") not in system
        assert layout.lifecycle(Lane.SYSTEM, "w0") not in system
        assert bus.not_ready_reasons() == []
    # Stopped: the instance's consumers are gone; the shared request consumers stay.
    assert await consumers_of(nats_url, layout.stream) == {}
    assert len(await consumers_of(nats_url, layout.request_stream)) == 5


async def test_a_subscriber_that_takes_no_jobs_costs_no_job_consumer(nats_url: str) -> None:
    class Listener(BusSubscriber):
        name = "listener"

    channel = f"plain-{uuid.uuid4().hex[:8]}"
    async with running_bus(nats_url, Listener(), Inbox("taker"), channel=channel) as bus:
        requests = await consumers_of(nats_url, bus.layout.request_stream)
        assert sorted(requests) == [bus.layout.job_consumer("taker")]
        assert bus.not_ready_reasons() == []


async def test_a_worker_that_joins_a_started_bus_gets_its_jobs_and_cancels(nats_url: str) -> None:
    channel = f"late-{uuid.uuid4().hex[:8]}"
    client = Inbox("client")
    async with (
        running_bus(nats_url, Inbox("early"), channel=channel) as bus,
        running_bus(nats_url, client, channel=channel) as client_bus,
    ):
        late = answering(bus, "late")
        await bus.subscribe(late)
        await client_bus.send(BusJobRequestMessage("j1", source="client", target="late"))
        await client_bus.send(BusJobCancelMessage("j1", "no", source="client", target="late"))
        await late.wait_until(lambda: len(late.of_type(BusJobCancelMessage)) == 1)
        await client.wait_until(lambda: len(client.of_type(BusJobResponseMessage)) == 1)
        assert [m.job_id for m in late.of_type(BusJobRequestMessage)] == ["j1"]


async def test_an_expired_request_consumer_comes_back_with_only_the_unanswered_jobs(
    nats_url: str,
) -> None:
    channel = f"expiry-{uuid.uuid4().hex[:8]}"
    options = {"job_consumer_inactive_threshold": 1.0}
    client = Inbox("client")
    async with running_bus(nats_url, client, channel=channel, **options) as client_bus:
        layout = client_bus.layout
        bus = NatsBus(
            servers=nats_url, channel=channel, jetstream_options=JetStreamOptions(**options)
        )
        await bus.subscribe(answering(bus, "w"))
        async with bus:
            await client_bus.send(BusJobRequestMessage("done-1", source="client", target="w"))
            await client.wait_until(lambda: len(client.of_type(BusJobResponseMessage)) == 1)
        # Nobody hosts "w" now: a request waits in the stream, and the consumer expires.
        await client_bus.send(BusJobRequestMessage("waiting-2", source="client", target="w"))
        await client_bus.flush(5)
        probe = await nats.connect(nats_url)
        try:
            js = probe.jetstream()
            for _ in range(100):
                try:
                    await js.consumer_info(layout.request_stream, layout.job_consumer("w"))
                except NotFoundError:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the request consumer of 'w' did not expire")
            # Work-queue retention: the answered request left the stream when acknowledged.
            stream = await js.stream_info(layout.request_stream)
            assert stream.state.messages == 1
        finally:
            await probe.close()

        again = Inbox("w")
        async with running_bus(nats_url, again, channel=channel, **options):
            await again.wait_until(lambda: len(again.of_type(BusJobRequestMessage)) == 1)
            await asyncio.sleep(0.3)  # anything else would have come by now
        assert [m.job_id for m in again.of_type(BusJobRequestMessage)] == ["waiting-2"]


async def test_a_job_stream_of_an_earlier_version_is_narrowed(nats_url: str) -> None:
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        await js.add_stream(StreamConfig(name="NATSBUS_JOBS", subjects=["natsbus.*.job.>"]))
        inbox = Inbox("w")
        async with running_bus(nats_url, inbox, channel="old") as bus:
            await bus.send(BusJobRequestMessage("j", source="w", target="w"))
            await inbox.wait_until(lambda: len(inbox.of_type(BusJobRequestMessage)) == 1)
        jobs = await js.stream_info("NATSBUS_JOBS")
        assert jobs.config.subjects == SubjectLayout.stream_subjects()
        requests = await js.stream_info("NATSBUS_JOBS_REQUESTS")
        assert requests.config.subjects == SubjectLayout.request_stream_subjects()
        assert requests.config.retention == RetentionPolicy.WORK_QUEUE
    finally:
        await client.close()


async def test_max_consumers_is_set_on_both_streams(nats_url: str) -> None:
    async with running_bus(nats_url, Inbox("w"), max_consumers=5000) as bus:
        client = await nats.connect(nats_url)
        try:
            js = client.jetstream()
            for stream in (bus.layout.stream, bus.layout.request_stream):
                assert (await js.stream_info(stream)).config.max_consumers == 5000
        finally:
            await client.close()


async def test_more_sessions_than_the_old_consumers_per_bus_allowed(nats_url: str) -> None:
    # 130 sessions of three workers would have taken 8 consumers a bus, 1,040 in one stream:
    # past nats-server 2.15's default limit of 1,000 per stream. Now: 2 a bus in the job
    # stream, and one a worker in the request stream.
    system, data = await nats.connect(nats_url), await nats.connect(nats_url)
    buses = []
    try:
        for session in range(130):
            bus = NatsBus(channel=f"session-{session}", clients=(system, data))
            for worker in ("a", "b", "c"):
                await bus.subscribe(Inbox(worker))
            try:
                await bus.start()
            except NatsError as error:
                pytest.fail(f"session {session} could not start: {error!r}")
            buses.append(bus)
        layout = buses[0].layout
        assert await consumer_count(nats_url, layout.stream) == 260
        assert await consumer_count(nats_url, layout.request_stream) == 390
        assert all(bus.not_ready_reasons() == [] for bus in buses)
    finally:
        for bus in buses:
            await bus.stop()
        await system.close()
        await data.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("job_consumer_inactive_threshold", 0.0),
        ("instance_inactive_threshold", -1.0),
        ("max_consumers", 0),
    ],
)
def test_jetstream_options_refuse_nonsense(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        JetStreamOptions(**{field: value})


async def test_a_lost_instance_consumer_comes_back_from_the_message_after_the_last_read(
    nats_url: str,
) -> None:
    client = await nats.connect(nats_url)
    try:
        jetstream = client.jetstream()
        await jetstream.add_stream(StreamConfig(name="R", subjects=["r.>"]))
        config = instance_consumer_config("inst", ["r.mine"], JetStreamOptions())
        await jetstream.add_consumer("R", config)
        for n in range(3):
            await jetstream.publish("r.mine", f"{n}".encode())
        await jetstream.publish("r.other", b"not mine")
        pulled = await jetstream.pull_subscribe_bind("inst", "R")
        read = await pulled.fetch(2, timeout=5)
        last = read[-1].metadata.sequence.stream
        await pulled.unsubscribe()
        # Still there: left as it is.
        assert await resume_consumer(jetstream, "R", config, last) is config
        await jetstream.delete_consumer("R", "inst")
        await jetstream.publish("r.mine", b"3")  # stored while it is gone
        resumed = await resume_consumer(jetstream, "R", config, last)
        pulled = await jetstream.pull_subscribe_bind("inst", "R")
        assert [m.data for m in await pulled.fetch(5, timeout=2)] == [b"2", b"3"]
        assert resumed.opt_start_seq == last + 1
        info = await jetstream.consumer_info("R", "inst")
        assert info.config.mem_storage  # made with its state in memory, as at first
    finally:
        await client.close()


async def test_a_job_answered_across_a_server_restart_reaches_its_requester(
    tmp_path: Path,
) -> None:
    # Instance consumers keep their state in memory: the restart loses them. The worker is
    # back first and stores its answer; the requester, back later, makes its consumer again
    # from where it stopped reading, so the answer still reaches it.
    async with NatsServer(store_dir=tmp_path / "s") as server:
        channel = f"restart-{uuid.uuid4().hex[:8]}"
        options = JetStreamOptions(ack_wait=5)
        tool, client = Tool(), Client()
        worker_bus = NatsBus(servers=server.url, channel=channel, jetstream_options=options)
        client_bus = NatsBus(
            servers=server.url,
            channel=channel,
            jetstream_options=options,
            connect_options=NatsConnectOptions(reconnect_time_wait=2.0),
        )
        async with running(tool, bus=worker_bus), running(client, bus=client_bus):
            async with client.job("tool", name="slow", payload={"seconds": 0.5}, timeout=30) as j:
                await within(tool._event(tool.started, j.job_id).wait(), 10)
                await server.restart()
            assert j.response == {"slept": True}
