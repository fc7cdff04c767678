"""A job whose result cannot travel still ends with exactly one answer: an error saying why."""

from __future__ import annotations

import datetime
import uuid

import pytest

from natsbus import UnsupportedValueError
from natsbus.bus.nats import NatsBus
from natsbus.messages import BusJobRequestMessage, JobStatus, Payload
from natsbus.workers import BaseWorker, JobError, job

from helpers.workers import Client, running


class Careless(BaseWorker):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.raised: list[BaseException] = []

    @job(name="when")
    async def when(self, message: BusJobRequestMessage) -> Payload:
        return {"at": datetime.datetime.now(tz=datetime.UTC)}  # no lossless wire form

    @job(name="explicit")
    async def explicit(self, message: BusJobRequestMessage) -> None:
        try:
            await self.send_job_response(message.job_id, {"tags": {"a", "b"}})
        except UnsupportedValueError as error:
            self.raised.append(error)


async def test_a_result_the_wire_cannot_carry_is_answered_error(nats_url: str) -> None:
    channel = f"unsendable-{uuid.uuid4().hex[:8]}"
    careless, client = Careless("careless"), Client()
    async with (
        running(careless, bus=NatsBus(servers=nats_url, channel=channel)),
        running(client, bus=NatsBus(servers=nats_url, channel=channel)),
    ):
        for name in ("when", "explicit"):
            with pytest.raises(JobError) as caught:
                async with client.job("careless", name=name, timeout=10):
                    pass
            assert caught.value.status is JobStatus.ERROR
            assert "the job's result cannot be sent" in str(caught.value.response)
        # The handler that answered itself heard why its answer could not go.
        assert len(careless.raised) == 1
