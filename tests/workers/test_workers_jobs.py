"""Jobs on the in-process bus: answers, events, cancel, timeouts, groups, odd requests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from natsbus.messages import (
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    JobStatus,
    Payload,
)
from natsbus.workers import (
    BaseWorker,
    JobError,
    JobEventKind,
    JobGroupError,
    JobGroupResult,
    JobParams,
    JobTimeoutError,
    job,
)
from natsbus.workers.executor import LEGACY_DEADLINE_KEY

from helpers.workers import Client, Tool, running, within


@pytest.fixture
async def pair() -> Any:
    tool, client = Tool(), Client()
    async with running(tool, client):
        yield tool, client


async def test_response_updates_and_stream_arrive_in_order(pair: Any) -> None:
    _, client = pair
    async with client.job("tool", name="progress", timeout=5) as j:
        events = [(e.kind, e.worker, e.data) async for e in j]
    assert events == [
        (JobEventKind.UPDATE, "tool", {"progress": 0}),
        (JobEventKind.UPDATE, "tool", {"progress": 1}),
        (JobEventKind.UPDATE, "tool", {"progress": 2}),
        (JobEventKind.STREAM_START, "tool", {"type": "text/plain"}),
        (JobEventKind.STREAM_DATA, "tool", {"chunk": "a"}),
        (JobEventKind.STREAM_DATA, "tool", {"chunk": "b"}),
        (JobEventKind.STREAM_DATA, "tool", {"chunk": "c"}),
        (JobEventKind.STREAM_END, "tool", {"done": True, "chunks": 3}),
    ]
    assert j.status is JobStatus.COMPLETED
    assert j.response == {"done": True, "chunks": 3}


async def test_named_and_unnamed_handlers(pair: Any) -> None:
    _, client = pair
    async with client.job("tool", name="echo", payload={"n": 2**62, "b": b"\x00"}) as j:
        pass
    assert j.response == {"echo": {"n": 2**62, "b": b"\x00"}}
    async with client.job("tool") as j:
        pass
    assert j.response == {"unnamed": True}


async def test_handler_exception_answers_error(pair: Any) -> None:
    _, client = pair
    with pytest.raises(JobError) as caught:
        async with client.job("tool", name="boom"):
            pass
    assert caught.value.status is JobStatus.ERROR
    assert caught.value.response == {"error": "kaput"}
    assert caught.value.worker == "tool"
    assert "kaput" in str(caught.value)


async def test_failed_answer_raises_job_error(pair: Any) -> None:
    _, client = pair
    with pytest.raises(JobError) as caught:
        async with client.job("tool", name="fail"):
            pass
    assert caught.value.status is JobStatus.FAILED
    assert caught.value.response == {"why": "no stock"}


async def test_unknown_job_name_answers_error(pair: Any) -> None:
    _, client = pair
    with pytest.raises(JobError, match="no handler"):
        async with client.job("tool", name="nope"):
            pass


async def test_cancelled_job_cancels_the_handler_and_answers_cancelled(pair: Any) -> None:
    tool, client = pair
    with pytest.raises(JobError) as caught:
        async with client.job("tool", name="slow") as j:
            await within(tool._event(tool.started, j.job_id).wait())
            await j.cancel("changed my mind")
    assert caught.value.status is JobStatus.CANCELLED
    assert caught.value.response == {"reason": "changed my mind"}
    assert tool.cancelled[j.job_id].is_set()
    assert tool.hook_cancels == [j.job_id]
    assert tool.running_jobs == {}


async def test_timeout_raises_and_cancels_the_handler(pair: Any) -> None:
    tool, client = pair
    started = time.monotonic()
    with pytest.raises(JobTimeoutError) as caught:
        async with client.job("tool", name="slow", timeout=0.2):
            pass
    assert time.monotonic() - started < 2
    assert isinstance(caught.value, TimeoutError)
    job_id = caught.value.job_id
    await within(tool._event(tool.cancelled, job_id).wait())


async def test_timeout_waiting_for_a_worker_that_never_comes(pair: Any) -> None:
    _, client = pair
    with pytest.raises(JobTimeoutError, match="not ready"):
        async with client.job("nobody", timeout=0.1):
            pass


async def test_block_failure_cancels_the_job(pair: Any) -> None:
    tool, client = pair
    with pytest.raises(RuntimeError, match="caller broke"):
        async with client.job("tool", name="slow") as j:
            await within(tool._event(tool.started, j.job_id).wait())
            raise RuntimeError("caller broke")
    await within(tool._event(tool.cancelled, j.job_id).wait())


async def test_group_cancel_on_error_cancels_the_others() -> None:
    class Mixed(Tool):
        @job(name="work")
        async def work(self, message: BusJobRequestMessage) -> Payload:
            if self.name == "bad":
                await within(good._event(good.started, message.job_id).wait())
                raise ValueError("bad input")
            return await self.slow(message)

    good, bad, client = Mixed("good"), Mixed("bad"), Client()
    async with running(good, bad, client):
        with pytest.raises(JobGroupError) as caught:
            async with client.job_group("good", "bad", name="work", timeout=5):
                pass
        error = caught.value
        assert error.worker == "bad"
        assert error.status is JobStatus.ERROR
        assert error.statuses == {"bad": JobStatus.ERROR}
        await within(good._event(good.cancelled, error.job_id).wait())
        assert client.errors == ["bad"]


async def test_group_without_cancel_on_error_collects_every_answer() -> None:
    one, two, client = Tool("one"), Tool("two"), Client()
    async with running(one, two, client):
        async with client.job_group("one", "two", name="echo", payload={"x": 1}) as group:
            pass
        assert group.responses == {"one": {"echo": {"x": 1}}, "two": {"echo": {"x": 1}}}
        async with client.job_group("one", "two", name="boom", cancel_on_error=False) as group:
            pass
        assert group.statuses == {"one": JobStatus.ERROR, "two": JobStatus.ERROR}


async def test_request_job_fires_the_hooks(pair: Any) -> None:
    _, client = pair
    job_id = await client.request_job("tool", name="echo", payload={"k": "v"})
    await client.changed.until(lambda: bool(client.completed))
    assert client.completed == [
        JobGroupResult(
            job_id,
            statuses={"tool": JobStatus.COMPLETED},
            responses={"tool": {"echo": {"k": "v"}}},
        )
    ]


async def test_request_job_update_reaches_the_handler(pair: Any) -> None:
    tool, client = pair
    async with client.job("tool", name="slow", payload={"seconds": 0.3}) as j:
        await within(tool._event(tool.started, j.job_id).wait())
        await j.request_update()
        first = await within(j.__anext__())
    assert (first.kind, first.data) == (JobEventKind.UPDATE, {"asked": True})
    assert j.response == {"slept": True}


async def test_urgent_update_and_response(pair: Any) -> None:
    _, client = pair
    async with client.job("tool", name="urgent") as j:
        events = [e async for e in j]
    assert [(e.kind, e.urgent) for e in events] in ([(JobEventKind.UPDATE, True)], [])
    assert j.response == {"fast": True}


async def test_sequential_handler_runs_one_at_a_time(pair: Any) -> None:
    tool, client = pair

    async def one() -> None:
        async with client.job("tool", name="one-at-a-time"):
            pass

    await within(asyncio.gather(*(one() for _ in range(5))))
    assert tool.max_concurrent == 1


async def test_repeated_job_id_is_refused_and_the_running_handler_goes_on(pair: Any) -> None:
    tool, client = pair
    request = BusJobRequestMessage(
        "dup-1", "slow", {"seconds": 0.2}, source="client", target="tool"
    )
    await client.send_bus_message(request)
    await within(tool._event(tool.started, "dup-1").wait())
    await client.send_bus_message(
        BusJobRequestMessage("dup-1", "slow", None, source="client", target="tool")
    )
    await client.changed.until(lambda: len(client.of(BusJobResponseMessage)) == 2)
    first, second = client.of(BusJobResponseMessage)
    assert first.status is JobStatus.ERROR and "running" in first.response["error"]
    assert second.status is JobStatus.COMPLETED and second.response == {"slept": True}
    assert tool.ran == ["dup-1"]


async def test_cancel_before_the_request_answers_cancelled_without_running(pair: Any) -> None:
    tool, client = pair
    await client.send_bus_message(
        BusJobCancelMessage("early", "no", source="client", target="tool")
    )
    # A cancel for a job it is not running is not answered...
    await client.send_bus_message(
        BusJobRequestMessage("early", "echo", None, source="client", target="tool")
    )
    await client.changed.until(lambda: bool(client.of(BusJobResponseMessage)))
    (response,) = client.of(BusJobResponseMessage)
    assert response.status is JobStatus.CANCELLED
    assert tool.ran == []


async def test_request_past_its_deadline_is_cancelled_without_running(pair: Any) -> None:
    tool, client = pair
    with pytest.raises(JobError) as caught:
        async with client.job("tool", params=JobParams(name="echo", deadline=time.time() - 1)):
            pass
    assert caught.value.status is JobStatus.CANCELLED
    assert caught.value.response == {"reason": "deadline passed"}
    assert tool.ran == []


async def test_the_deadline_travels_in_the_envelope_not_the_payload(pair: Any) -> None:
    tool, client = pair
    async with client.job("tool", name="echo", payload={"a": 1}, timeout=5) as j:
        pass
    assert j.response == {"echo": {"a": 1}}
    # A request from a natsbus before 0.2 carried it in the payload: honoured, then removed.
    legacy = BusJobRequestMessage(
        "old-1", "echo", {"a": 2, LEGACY_DEADLINE_KEY: time.time() - 1}, source="c", target="tool"
    )
    await tool.on_bus_message(legacy)
    await asyncio.sleep(0.05)  # the answer (cancelled: past its deadline) is sent meanwhile
    assert legacy.payload == {"a": 2} and "old-1" not in tool.ran


async def test_on_job_request_fallback_and_explicit_answers() -> None:
    class Legacy(BaseWorker):
        async def on_job_request(self, message: BusJobRequestMessage) -> Payload | None:
            await self.send_job_response(message.job_id, {"legacy": message.job_name})
            return None

    legacy, client = Legacy("legacy"), Client()
    async with running(legacy, client):
        async with client.job("legacy", name="anything") as j:
            pass
        assert j.response == {"legacy": "anything"}


async def test_replies_for_an_unknown_job_raise() -> None:
    worker = Tool()
    with pytest.raises(RuntimeError, match="no active job"):
        await worker.send_job_update("nope")


async def test_requester_hooks_fire_with_the_messages() -> None:
    class Hooked(Client):
        def __init__(self) -> None:
            super().__init__("hooked")
            self.hooked: list[tuple[str, Any]] = []

        async def on_job_update(self, message: Any) -> None:
            self.hooked.append(("update", message.update))

        async def on_job_stream_start(self, message: Any) -> None:
            self.hooked.append(("stream_start", message.data))

        async def on_job_stream_data(self, message: Any) -> None:
            self.hooked.append(("stream_data", message.data))

        async def on_job_stream_end(self, message: Any) -> None:
            self.hooked.append(("stream_end", message.data))

        async def on_job_response(self, message: Any) -> None:
            self.hooked.append(("response", (message.source, message.status, message.response)))

    tool, client = Tool(), Hooked()
    async with running(tool, client):
        job_id = await client.request_job("tool", name="progress")
        await client.changed.until(lambda: bool(client.completed))
    assert client.hooked == [
        ("update", {"progress": 0}),
        ("update", {"progress": 1}),
        ("update", {"progress": 2}),
        ("stream_start", {"type": "text/plain"}),
        ("stream_data", {"chunk": "a"}),
        ("stream_data", {"chunk": "b"}),
        ("stream_data", {"chunk": "c"}),
        ("stream_end", {"done": True, "chunks": 3}),  # the answer: no response follows
    ]
    assert client.completed[0].job_id == job_id
