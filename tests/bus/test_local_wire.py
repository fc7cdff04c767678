"""AsyncQueueBus(check_wire=True): what NatsBus refuses is refused in process too."""

from __future__ import annotations

import datetime

import pytest

from natsbus import AsyncQueueBus, BusJobRequestMessage, BusTTSSpeakMessage, JobStatus
from natsbus.errors import UnsupportedValueError
from natsbus.messages import BusEndWorkerLocalMessage
from natsbus.workers import BaseWorker, JobError, job

from helpers.recorders import Inbox
from helpers.workers import Client, running, within


class Sloppy(BaseWorker):
    @job(name="when")
    async def when(self, message: BusJobRequestMessage) -> dict[str, object]:
        return {"at": datetime.datetime(2026, 12, 2)}  # no lossless wire form


async def test_a_payload_natsbus_refuses_is_refused_at_send() -> None:
    bus = AsyncQueueBus(check_wire=True)
    inbox = Inbox("rx")
    await bus.subscribe(inbox)
    async with bus:
        with pytest.raises(UnsupportedValueError, match="set"):
            await bus.send(BusJobRequestMessage("j", "x", {"tags": {"a"}}, source="t", target="rx"))
        sent = BusTTSSpeakMessage("hi", source="t", target="rx")
        await bus.send(sent)
        await inbox.wait_until(lambda: len(inbox.received) == 1)
        (got,) = inbox.received
        assert got == sent and got is not sent  # a decoded copy, as from the network
        local = BusEndWorkerLocalMessage("bye", source="t", target="rx")
        await bus.send(local)  # never leaves the process: delivered as it is
        await inbox.wait_until(lambda: len(inbox.received) == 2)
        assert inbox.received[1] is local
    assert bus.checks_wire and not AsyncQueueBus().checks_wire


async def test_a_handler_result_natsbus_cannot_carry_answers_error() -> None:
    bus = AsyncQueueBus(check_wire=True)
    client = Client()
    async with running(Sloppy("sloppy"), client, bus=bus):
        with pytest.raises(JobError) as raised:
            async with client.job("sloppy", name="when"):
                pass
    assert raised.value.status is JobStatus.ERROR
    assert "cannot be sent" in str(raised.value.response) and "datetime" in str(
        raised.value.response
    )
    await within(bus.stop())
