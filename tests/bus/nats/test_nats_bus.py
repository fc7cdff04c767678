"""NatsBus on a real nats-server: routing, isolation, jobs on JetStream, and bad input."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import nats
import pytest

from natsbus.bus.nats import NatsBus
from natsbus.bus.nats.intake import MSG_ID_HEADER, REPLY_TO_HEADER
from natsbus.codec import Codec, encode
from natsbus.errors import MessageTooLargeError
from natsbus.messages import (
    BusActivateWorkerMessage,
    BusAddWorkerMessage,
    BusCancelMessage,
    BusCancelWorkerMessage,
    BusDeactivateWorkerMessage,
    BusEndMessage,
    BusEndWorkerMessage,
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobUpdateRequestMessage,
    BusMessage,
    BusSystemMessage,
    BusTTSSpeakMessage,
    BusWorkerErrorMessage,
    BusWorkerReadyMessage,
    BusWorkerRegistryMessage,
    JobStatus,
    Lane,
    WorkerRegistryEntry,
)
from natsbus.testing import NatsServer

from helpers.nats import running_bus
from helpers.process import bus_peer
from helpers.recorders import Inbox
from peers.bus_peer import job_replies

_JOB_TO_WORKER = (BusJobCancelMessage, BusJobUpdateRequestMessage)

PAYLOAD = {
    "int": 2**62 + 1,
    "neg": -(2**63),
    "float": 0.1,
    "text": "héllo ✓",
    "flag": True,
    "none": None,
    "raw": b"\x00\x01\xff",
    "list": [1, "two", [3.0, False]],
    "map": {"nested": {"deep": [None]}},
}


def core_samples(to: str, me: str) -> list[BusMessage]:
    """One message of every core (non-job) class, targeted at ``to``."""
    return [
        BusActivateWorkerMessage({"mode": "fast", **PAYLOAD}, source=me, target=to),
        BusDeactivateWorkerMessage(source=me, target=to),
        BusEndMessage("done for today", source=me, target=to),
        BusEndWorkerMessage(None, source=me, target=to),
        BusCancelMessage("now", source=me, target=to),
        BusCancelWorkerMessage("", source=me, target=to),
        BusWorkerErrorMessage("it broke: ✗", source=me, target=to),
        BusWorkerReadyMessage(
            "runner-1",
            parent="boss",
            active=True,
            bridged=True,
            started_at=1.5,
            source=me,
            target=to,
        ),
        BusWorkerRegistryMessage(
            "runner-1",
            [WorkerRegistryEntry("a"), WorkerRegistryEntry("b", "a", True, False, 2.25)],
            source=me,
            target=to,
        ),
        BusTTSSpeakMessage("say this", append_to_context=False, source=me, target=to),
    ]


async def test_two_processes_exchange_every_message_type(nats_url: str) -> None:
    channel = f"pair-{uuid.uuid4().hex[:8]}"
    peer = bus_peer("--url", nats_url, "--channel", channel, "--name", "peer")
    await peer.start()
    try:
        parent = Inbox("parent")
        async with running_bus(nats_url, parent, channel=channel) as bus:
            sent = core_samples("peer", "parent")
            sent += [
                BusJobCancelMessage("job-x", "changed my mind", source="parent", target="peer"),
                BusJobUpdateRequestMessage("job-x", source="parent", target="peer"),
            ]
            for message in sent:
                await bus.send(message)
            request = BusJobRequestMessage(
                "job-1", "summarise", PAYLOAD, source="parent", target="peer"
            )
            await bus.send(request)
            replies = job_replies(request, "peer")
            await parent.wait_until(
                lambda: (
                    sum(m.target == "parent" for m in parent.received) == len(sent) + len(replies)
                )
            )
        # Echoes keep their source; the two lanes may interleave, so compare as multisets.
        expected_echoes = [dataclasses.replace(m, target="parent") for m in sent]
        echoes = [m for m in parent.received if m.source == "parent" and m.target == "parent"]
        assert sorted(echoes, key=repr) == sorted(expected_echoes, key=repr)
        # Core messages also reach the sender's own local subscribers, once each.
        own = [m for m in parent.received if m.target == "peer"]
        own_sent = [m for m in sent if not isinstance(m, _JOB_TO_WORKER)]
        assert sorted(own, key=repr) == sorted(own_sent, key=repr)
        # Job replies: urgent ones may overtake, the data ones keep the peer's order.
        from_peer = [m for m in parent.received if m.source == "peer"]
        assert sorted(from_peer, key=repr) == sorted(replies, key=repr)
        data_replies = [m for m in replies if not isinstance(m, BusSystemMessage)]
        assert [m for m in from_peer if not isinstance(m, BusSystemMessage)] == data_replies
    finally:
        assert await peer.stop() == 0


async def test_targeted_message_reaches_only_its_target_bus(nats_url: str) -> None:
    a, b, c = Inbox("a"), Inbox("b"), Inbox("c")
    async with (
        running_bus(nats_url, a) as bus_a,
        running_bus(nats_url, b),
        running_bus(nats_url, c),
    ):
        await bus_a.send(BusTTSSpeakMessage("for b only", source="a", target="b"))
        await bus_a.send(BusCancelMessage("for b only", source="a", target="b"))
        # A broadcast sent after them: once every bus has it, the targeted ones have landed.
        await bus_a.send(BusTTSSpeakMessage("everyone", source="a"))
        for inbox in (b, c):
            await inbox.wait_until(
                lambda inbox=inbox: any(
                    isinstance(m, BusTTSSpeakMessage) and m.text == "everyone"
                    for m in inbox.received
                )
            )
        await b.wait_until(lambda: len(b.received) == 3)
        assert [m.target for m in c.received] == [None]
        # The sender's own local subscriber sees what it sent, once each.
        assert len(a.received) == 3


async def test_channels_are_isolated(nats_url: str) -> None:
    red, blue = Inbox("worker"), Inbox("worker")
    async with (
        running_bus(nats_url, red, channel="red") as red_bus,
        running_bus(nats_url, blue, channel="blue") as blue_bus,
    ):
        await red_bus.send(BusTTSSpeakMessage("red", source="x", target="worker"))
        await red_bus.send(BusTTSSpeakMessage("red-all", source="x"))
        await red_bus.send(BusJobRequestMessage("red-job", source="x", target="worker"))
        await blue_bus.send(BusTTSSpeakMessage("blue-all", source="x"))
        await red.wait_until(lambda: len(red.received) == 3)
        await blue.wait_until(lambda: len(blue.received) == 1)
        await red_bus.flush(timeout=5)
        await asyncio.sleep(0.3)  # give a leak the chance to show
        assert [m.text for m in blue.of_type(BusTTSSpeakMessage)] == ["blue-all"]
        assert blue.of_type(BusJobRequestMessage) == []


@pytest.mark.parametrize(
    "name", ["dotted.worker.name", "with space", "star*", "gt>", "ünï-çødé ✓", "a.*.>", "%41"]
)
async def test_awkward_worker_names_work(nats_url: str, name: str) -> None:
    worker, other, client = Inbox(name), Inbox("a"), Inbox("client")
    async with (
        running_bus(nats_url, worker),
        running_bus(nats_url, other),
        running_bus(nats_url, client) as client_bus,
    ):
        await client_bus.send(BusTTSSpeakMessage("hi", source="client", target=name))
        await client_bus.send(BusJobRequestMessage("j", source="client", target=name))
        await worker.wait_until(lambda: len(worker.received) == 2)
        assert other.received == []


async def test_job_request_is_handled_once_among_three_buses(nats_url: str) -> None:
    handled: list[tuple[int, str]] = []
    buses: list[NatsBus] = []

    def make_worker(index: int) -> Inbox:
        async def answer(message: BusMessage) -> None:
            if isinstance(message, BusJobRequestMessage):
                handled.append((index, message.job_id))
                await buses[index].send(
                    BusJobResponseMessage(
                        message.job_id,
                        JobStatus.COMPLETED,
                        {"by": index},
                        source="w",
                        target=message.source,
                    )
                )

        return Inbox("w", behaviour=answer)

    client = Inbox("client")
    async with (
        running_bus(nats_url, make_worker(0)) as b0,
        running_bus(nats_url, make_worker(1)) as b1,
        running_bus(nats_url, make_worker(2)) as b2,
        running_bus(nats_url, client) as client_bus,
    ):
        buses.extend([b0, b1, b2])
        jobs = [f"job-{i}" for i in range(60)]
        for job_id in jobs:
            await client_bus.send(BusJobRequestMessage(job_id, source="client", target="w"))
        await client.wait_until(lambda: len(client.received) == len(jobs))
        await asyncio.sleep(0.3)  # a second handling would show up now
    assert sorted(job for _, job in handled) == sorted(jobs)
    assert sorted(m.job_id for m in client.of_type(BusJobResponseMessage)) == sorted(jobs)


async def test_killed_bus_has_its_job_redelivered_to_another(nats_url: str) -> None:
    channel = f"kill-{uuid.uuid4().hex[:8]}"
    args = ("--url", nats_url, "--channel", channel, "--name", "w", "--mode", "worker")
    doomed = bus_peer(*args, "--job-seconds", "60", "--ack-wait", "1")
    await doomed.start()
    client = Inbox("client")
    try:
        async with running_bus(nats_url, client, channel=channel, ack_wait=1.0) as bus:
            await bus.send(BusJobRequestMessage("precious", source="client", target="w"))
            await doomed.wait_for("TOOK precious")
            await doomed.kill()
            survivor = bus_peer(*args, "--job-seconds", "0", "--ack-wait", "1")
            await survivor.start()
            try:
                await client.wait_until(lambda: len(client.received) == 1)
                assert survivor.count("TOOK precious") == 1
            finally:
                assert await survivor.stop() == 0
    finally:
        await doomed.stop()
    [response] = client.of_type(BusJobResponseMessage)
    assert response.status is JobStatus.COMPLETED
    assert response.response is not None and response.response["pid"] == survivor.pid


async def test_duplicate_publish_with_the_same_id_is_handled_once(nats_url: str) -> None:
    worker = Inbox("w")
    async with running_bus(nats_url, worker) as bus:
        request = BusJobRequestMessage("dup", source="client", target="w")
        bus.stamp(request)
        data = encode(request)
        headers = {MSG_ID_HEADER: request.id, REPLY_TO_HEADER: "nobody"}
        client = await nats.connect(nats_url)
        try:
            js = client.jetstream()
            subject = bus.layout.job_requests("w", "client")
            first = await js.publish(subject, data, headers=dict(headers))
            second = await js.publish(subject, data, headers=dict(headers))
            assert second.duplicate and not first.duplicate
            await bus.send(BusJobRequestMessage("after", source="client", target="w"))
            await worker.wait_until(lambda: len(worker.received) == 2)
        finally:
            await client.close()
    assert [m.job_id for m in worker.received] == ["dup", "after"]


async def test_jobs_survive_a_server_restart(nats_server: NatsServer) -> None:
    url = nats_server.url
    handled: list[str] = []
    core: list[str] = []
    worker_bus_ref: list[NatsBus] = []

    async def answer(message: BusMessage) -> None:
        if isinstance(message, BusJobRequestMessage):
            handled.append(message.job_id)
            await worker_bus_ref[0].send(
                BusJobResponseMessage(
                    message.job_id, JobStatus.COMPLETED, source="w", target=message.source
                )
            )
        elif isinstance(message, BusTTSSpeakMessage):
            core.append(message.text)

    worker = Inbox("w", behaviour=answer)
    client = Inbox("client")
    async with running_bus(url, worker) as worker_bus, running_bus(url, client) as client_bus:
        worker_bus_ref.append(worker_bus)
        before = [f"before-{i}" for i in range(20)]
        for job_id in before:
            await client_bus.send(BusJobRequestMessage(job_id, source="client", target="w"))
        await nats_server.stop()
        during = [f"during-{i}" for i in range(20)]
        for job_id in during:
            await client_bus.send(BusJobRequestMessage(job_id, source="client", target="w"))
        await asyncio.sleep(0.5)
        await nats_server.start()
        await client.wait_until(
            lambda: len(client.of_type(BusJobResponseMessage)) == 40, timeout=30
        )

        # Core messages flow again once both connections are back.
        async def core_flows() -> None:
            while "after" not in core:
                await client_bus.send(BusTTSSpeakMessage("after", source="client", target="w"))
                await asyncio.sleep(0.2)

        await asyncio.wait_for(core_flows(), 15)
        await asyncio.sleep(0.5)  # a late duplicate would show up now
    assert sorted(handled) == sorted(before + during)
    responses = [m.job_id for m in client.of_type(BusJobResponseMessage)]
    assert sorted(responses) == sorted(before + during)


async def test_system_message_overtakes_queued_data_across_the_network(nats_url: str) -> None:
    seen: list[BusMessage] = []

    async def slow(message: BusMessage) -> None:
        seen.append(message)
        if isinstance(message, BusTTSSpeakMessage):
            await asyncio.sleep(0)  # a data handler that yields, as real ones do

    receiver = Inbox("rx", behaviour=slow)
    async with running_bus(nats_url, receiver), running_bus(nats_url, Inbox("tx")) as tx:
        for seq in range(20_000):
            await tx.send(BusTTSSpeakMessage(str(seq), source="tx", target="rx"))
        await tx.send(BusCancelMessage("stop!", source="tx", target="rx"))
        await receiver.wait_until(lambda: len(receiver.received) == 20_001, timeout=60)
    position = next(i for i, m in enumerate(seen) if isinstance(m, BusCancelMessage))
    # It overtook at least 99.9% of the data messages sent ahead of it.
    assert position <= 20, f"cancel handled after {position} of 20,000 data messages"


async def test_garbage_on_every_subject_leaves_the_bus_serving(nats_url: str) -> None:
    worker = Inbox("w")
    async with running_bus(nats_url, worker) as bus, running_bus(nats_url, Inbox("c")) as sender:
        layout = bus.layout
        client = await nats.connect(nats_url)
        try:
            subjects = [
                layout.broadcast(Lane.SYSTEM, "x"),
                layout.broadcast(Lane.DATA, "x"),
                layout.targeted(Lane.SYSTEM, "w", "x"),
                layout.targeted(Lane.DATA, "w", "x"),
            ]
            for subject in subjects:
                await client.publish(subject, b"\xff\x00garbage")
            js = client.jetstream()
            for subject in (
                layout.job_requests("w", "x"),
                layout.job_control("w", "x"),
                layout.job_replies(bus.instance_id, Lane.DATA, "x"),
            ):
                await js.publish(
                    subject,
                    b"\x08\x96\x01 not an envelope",
                    headers={MSG_ID_HEADER: uuid.uuid4().hex},
                )
            await client.flush()
        finally:
            await client.close()
        await sender.send(BusTTSSpeakMessage("still here?", source="c", target="w"))
        await sender.send(BusJobRequestMessage("j", source="c", target="w"))
        await worker.wait_until(lambda: len(worker.received) == 2)
        await asyncio.sleep(0.2)
        network = bus.statistics().network
        assert network is not None
        assert network.counts.decode_errors == {"malformed": 7}


async def test_message_over_the_server_max_payload_is_refused_at_send(nats_url: str) -> None:
    bus = NatsBus(servers=nats_url, codec=Codec(max_message_bytes=8 * 1024 * 1024))
    async with bus:
        big = BusTTSSpeakMessage("x" * (2 * 1024 * 1024), source="me")
        with pytest.raises(MessageTooLargeError) as raised:
            await bus.send(big)
        assert raised.value.limit == 1024 * 1024
        # Still serving.
        inbox = Inbox("me", targets=None)
        await bus.subscribe(inbox)
        await bus.send(BusTTSSpeakMessage("small", source="me"))
        await inbox.wait_until(lambda: len(inbox.received) == 1)


async def test_local_only_messages_never_leave_the_process(nats_url: str) -> None:
    local, remote = Inbox("here", targets=None), Inbox("there", targets=None)
    async with running_bus(nats_url, local) as bus, running_bus(nats_url, remote):
        await bus.send(BusAddWorkerMessage(worker=object(), source="here"))
        await bus.send(BusTTSSpeakMessage("marker", source="here"))
        await remote.wait_until(lambda: len(remote.received) == 1)
        await local.wait_until(lambda: len(local.received) == 2)
    assert [type(m) for m in remote.received] == [BusTTSSpeakMessage]


async def test_unanswered_job_ends_as_an_error_after_max_attempts(nats_url: str) -> None:
    client = Inbox("client")
    async with running_bus(nats_url, client, max_attempts=2) as client_bus:
        await client_bus.send(BusJobRequestMessage("doomed", source="client", target="w"))
        for _ in range(2):
            # A bus takes the job and stops without answering: the job is released.
            taker = Inbox("w")
            async with running_bus(nats_url, taker, max_attempts=2):
                await taker.wait_until(lambda taker=taker: len(taker.received) == 1)
        last = Inbox("w")
        async with running_bus(nats_url, last, max_attempts=2):
            await client.wait_until(lambda: len(client.received) == 1)
    [response] = client.of_type(BusJobResponseMessage)
    assert response.job_id == "doomed"
    assert response.status is JobStatus.ERROR
    assert response.response is not None and "2 deliveries" in response.response["error"]
    assert last.received == []


async def test_paused_bus_takes_no_new_job_and_another_bus_does(nats_url: str) -> None:
    paused_worker, other_worker, client = Inbox("w"), Inbox("w"), Inbox("client")
    async with running_bus(nats_url, paused_worker) as paused, running_bus(nats_url, client) as bus:
        await paused.pause_jobs()
        await bus.send(BusJobRequestMessage("after-pause", source="client", target="w"))
        await bus.flush(timeout=5)
        async with running_bus(nats_url, other_worker):
            await other_worker.wait_until(lambda: len(other_worker.received) == 1)
        # Cancels still reach the paused bus: only new requests stop.
        await bus.send(BusJobCancelMessage("after-pause", source="client", target="w"))
        await paused_worker.wait_until(lambda: len(paused_worker.received) == 1)
    assert [type(m) for m in paused_worker.received] == [BusJobCancelMessage]


async def test_job_answered_then_bus_stopped_is_not_redelivered(nats_url: str) -> None:
    buses: list[NatsBus] = []

    async def answer(message: BusMessage) -> None:
        if isinstance(message, BusJobRequestMessage):
            await buses[0].send(
                BusJobResponseMessage(
                    message.job_id, JobStatus.COMPLETED, source="w", target=message.source
                )
            )
            await buses[0].stop()  # at once: the response is still on its way to the stream

    client = Inbox("client")
    async with running_bus(nats_url, client, ack_wait=1.0) as client_bus:
        first = NatsBus(servers=nats_url, channel="test")
        buses.append(first)
        await first.subscribe(Inbox("w", behaviour=answer))
        await first.start()
        await client_bus.send(BusJobRequestMessage("once", source="client", target="w"))
        await client.wait_until(lambda: len(client.received) == 1)
        # A second bus for "w" would get a redelivery after ack_wait (1 s) if it was not acked.
        late = Inbox("w")
        async with running_bus(nats_url, late, ack_wait=1.0):
            await asyncio.sleep(2.0)
        assert late.received == []


async def test_an_observer_sees_messages_targeted_at_other_buses(nats_url: str) -> None:
    observer, worker = Inbox("monitor", targets=None), Inbox("w")
    async with (
        running_bus(nats_url, observer),
        running_bus(nats_url, worker),
        running_bus(nats_url, Inbox("c")) as sender,
    ):
        await sender.send(BusTTSSpeakMessage("for w", source="c", target="w"))
        await sender.send(BusCancelMessage("for w", source="c", target="w"))
        await worker.wait_until(lambda: len(worker.received) == 2)
        await observer.wait_until(lambda: len(observer.received) == 2)
    assert {m.target for m in observer.received} == {"w"}
