"""JobIntake and JobLedger on their own: what each JetStream delivery of a job request does.

A fake JetStream message stands in for the server, which adds nothing here: the intake only
reads a delivery's bytes, headers and metadata and calls ack, term or in_progress on it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from natsbus import Codec
from natsbus.bus.nats.inbound import InboundDecoder
from natsbus.bus.nats.intake import MSG_ID_HEADER, REPLY_TO_HEADER, JobIntake
from natsbus.bus.nats.ledger import JobLedger, TakenJob
from natsbus.bus.nats.senders import SenderCheck
from natsbus.bus.statistics import NetworkCounts
from natsbus.messages import BusJobCancelMessage, BusJobRequestMessage, BusMessage

CODEC = Codec()


@dataclass
class FakeDelivery:
    """What the intake reads of a JetStream message, and what it calls on it."""

    data: bytes
    headers: dict[str, str] | None = None
    delivered: int = 1
    sequence: int = 1
    subject: str = "natsbus.c.job.req.w.asker"
    calls: list[str] = field(default_factory=list)

    @property
    def metadata(self) -> Any:
        return SimpleNamespace(
            num_delivered=self.delivered, sequence=SimpleNamespace(stream=self.sequence)
        )

    async def ack(self) -> None:
        self.calls.append("ack")

    async def term(self) -> None:
        self.calls.append("term")

    async def in_progress(self) -> None:
        self.calls.append("in_progress")

    async def nak(self, delay: float | None = None) -> None:
        self.calls.append(f"nak {delay}")


def encoded(job_id: str, *, message_id: str = "", reply_to: str = "inst") -> bytes:
    request = BusJobRequestMessage(job_id, "echo", {"n": 1}, source="asker", target="w")
    request.id = message_id
    request.reply_to = reply_to
    return CODEC.encode(request)


class Scene:
    def __init__(self, max_attempts: int = 3) -> None:
        self.delivered: list[BusMessage] = []
        self.errors: list[tuple[str, str, str]] = []
        self.dead_letters: list[str] = []
        self.counts = NetworkCounts()
        self.answered_before: set[str] = set()  # request ids whose earlier answer is stored
        self.stream_away = False
        self.checks: list[tuple[str, int]] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.ledger = JobLedger(ack_wait=30, max_in_flight=10)
        self.senders = SenderCheck(counts=self.counts, requester=self.requester, name="bus")
        self.intake = JobIntake(
            ledger=self.ledger,
            decoder=InboundDecoder(CODEC),
            max_attempts=max_attempts,
            deliver=self.delivered.append,
            answer_error=lambda req, job, reason: self.errors.append(
                (req.job_id, job.reply_to, reason)
            ),
            store_dead_letter=lambda job: self.dead_letters.append(job.message_id),
            was_answered=self.was_answered,
            instance="me",
            counts=self.counts,
            spawn=lambda coroutine: self.tasks.append(asyncio.ensure_future(coroutine)),
            admits=self.senders.admits,
        )

    def requester(self, worker: str, job_id: str) -> str | None:
        job = self.ledger.get((worker, job_id))
        return None if job is None else job.requester

    async def was_answered(self, job: TakenJob) -> bool:
        self.checks.append((job.message_id, job.attempt))
        if self.stream_away:
            raise TimeoutError("no answer from the stream")
        return job.message_id in self.answered_before

    def take(self, delivery: FakeDelivery) -> None:
        self.intake.on_job_request("w", delivery)  # type: ignore[arg-type]

    async def settle(self) -> None:
        await asyncio.sleep(0)  # acknowledgements of routed deliveries go at the end of a turn
        await asyncio.gather(*self.tasks)


async def test_a_request_is_delivered_once_and_acknowledged_when_answered() -> None:
    scene = Scene()
    first = FakeDelivery(encoded("j1", message_id="m1"))
    scene.take(first)
    assert [m.job_id for m in scene.delivered] == ["j1"]  # type: ignore[attr-defined]
    assert scene.ledger.get(("w", "j1")).reply_to == "inst"  # type: ignore[union-attr] and scene.ledger.has_message("m1")
    # Redelivered while it runs here (ack_wait passed during an outage): kept alive only.
    again = FakeDelivery(encoded("j1", message_id="m1"), delivered=2)
    scene.take(again)
    await scene.settle()
    assert again.calls == ["in_progress"] and len(scene.delivered) == 1
    assert scene.intake.answered(("w", "j1")) is not None
    await scene.settle()
    assert first.calls == ["ack"] and len(scene.ledger) == 0
    # Delivered again after it was answered (its ack was lost): acknowledged, not run.
    late = FakeDelivery(encoded("j1", message_id="m1"), delivered=3)
    scene.take(late)
    await scene.settle()
    assert late.calls == ["ack"] and len(scene.delivered) == 1
    assert scene.counts.duplicates == 1


async def test_a_request_past_its_last_attempt_is_answered_error_not_run() -> None:
    scene = Scene(max_attempts=2)
    scene.take(FakeDelivery(encoded("j2", message_id="m2"), delivered=3))
    await scene.settle()
    assert scene.checks == [("m2", 3)]  # an earlier delivery might have been answered
    assert scene.delivered == []
    assert scene.errors == [("j2", "inst", "job was not completed after 2 deliveries")]
    assert scene.counts.dead_lettered == 1
    assert scene.dead_letters == ["m2"]  # kept for natsbus dlq


async def test_a_job_id_already_running_for_the_worker_is_refused() -> None:
    scene = Scene()
    scene.take(FakeDelivery(encoded("j3", message_id="a")))
    scene.take(FakeDelivery(encoded("j3", message_id="b"), sequence=2))
    assert len(scene.delivered) == 1
    assert scene.errors == [("j3", "inst", "job id 'j3' is already running")]
    assert scene.counts.duplicate_job_ids == 1


async def test_garbage_is_terminated_and_counted() -> None:
    scene = Scene()
    garbage = FakeDelivery(b"\xff not an envelope")
    scene.take(garbage)
    await scene.settle()
    assert garbage.calls == ["term"] and scene.delivered == []


async def test_identity_and_routing_come_from_the_envelope_or_headers_or_the_sequence() -> None:
    scene = Scene()
    # No envelope id, no reply_to: the headers natsbus also sets are the fallback...
    headed = FakeDelivery(
        encoded("j4", reply_to=""), headers={MSG_ID_HEADER: "h4", REPLY_TO_HEADER: "old-inst"}
    )
    scene.take(headed)
    assert scene.ledger.has_message("h4") and scene.ledger.get(("w", "j4")).reply_to == "old-inst"  # type: ignore[union-attr]
    # ...and with neither, the stream sequence tells two requests apart.
    scene.take(FakeDelivery(encoded("j5", reply_to=""), sequence=7))
    scene.take(FakeDelivery(encoded("j6", reply_to=""), sequence=8))
    assert scene.ledger.has_message("seq-7") and scene.ledger.has_message("seq-8")
    assert scene.ledger.get(("w", "j5")).reply_to == ""  # type: ignore[union-attr]  # answered on the source's core subject
    assert [m.job_id for m in scene.delivered] == ["j4", "j5", "j6"]  # type: ignore[attr-defined]


async def test_a_redelivered_request_that_another_bus_answered_is_acknowledged_not_run() -> None:
    scene = Scene()
    scene.answered_before.add("m7")
    again = FakeDelivery(encoded("j7", message_id="m7"), delivered=2)
    scene.take(again)
    await scene.settle()
    assert again.calls == ["ack"] and scene.delivered == []
    assert scene.checks == [("m7", 2)] and scene.counts.answered_elsewhere == 1
    # Delivered once more (its ack was lost too): known here now, acknowledged at once.
    once_more = FakeDelivery(encoded("j7", message_id="m7"), delivered=3)
    scene.take(once_more)
    await scene.settle()
    assert once_more.calls == ["ack"] and len(scene.checks) == 1


async def test_a_redelivered_request_nobody_answered_runs_with_its_attempt() -> None:
    scene = Scene()
    scene.take(FakeDelivery(encoded("j8", message_id="m8"), delivered=2))
    await scene.settle()
    assert [m.attempt for m in scene.delivered] == [2]  # type: ignore[attr-defined]
    assert scene.ledger.get(("w", "j8")).attempt == 2  # type: ignore[union-attr]
    assert scene.counts.redelivered == 1 and scene.counts.answered_elsewhere == 0


async def test_a_redelivery_that_cannot_be_checked_is_handed_back_not_run() -> None:
    scene = Scene()
    scene.stream_away = True
    delivery = FakeDelivery(encoded("j9", message_id="m9"), delivered=2)
    scene.take(delivery)
    await scene.settle()
    assert scene.delivered == [] and delivery.calls == ["nak 1.0"]


async def test_a_stored_answer_that_was_a_duplicate_does_not_acknowledge_the_request() -> None:
    # The stream refused the answer as a duplicate: another bus may have claimed this delivery
    # and be running it again, so acknowledging could lose the job if that bus dies.
    scene = Scene()
    first = FakeDelivery(encoded("j10", message_id="m10"))
    scene.take(first)
    assert scene.intake.answered(("w", "j10"), duplicate=True) is not None
    await scene.settle()
    assert first.calls == [] and len(scene.ledger) == 0
    # Its next delivery is checked against the stream, not taken for answered here.
    scene.answered_before.add("m10")
    again = FakeDelivery(encoded("j10", message_id="m10"), delivered=2)
    scene.take(again)
    await scene.settle()
    assert again.calls == ["ack"] and scene.checks == [("m10", 2)]


async def test_a_request_under_another_senders_token_is_terminated_and_counted() -> None:
    scene = Scene()
    forged = FakeDelivery(encoded("j9", message_id="m9"), subject="natsbus.c.job.req.w.mallory")
    scene.take(forged)
    await scene.settle()
    assert forged.calls == ["term"] and scene.delivered == []
    assert scene.counts.forged_source == 1


async def test_a_cancel_is_accepted_only_from_the_jobs_requester() -> None:
    scene = Scene()
    scene.take(FakeDelivery(encoded("j10", message_id="m10")))  # requested by "asker"

    def cancel(source: str) -> FakeDelivery:
        data = CODEC.encode(BusJobCancelMessage("j10", source=source, target="w"))
        return FakeDelivery(data, {MSG_ID_HEADER: source}, subject=f"natsbus.c.job.ctl.w.{source}")

    other, own = cancel("mallory"), cancel("asker")
    read = scene.intake.routed_reader()
    read(other)  # type: ignore[arg-type]
    read(own)  # type: ignore[arg-type]
    await scene.settle()
    assert other.calls == ["term"] and own.calls == ["ack"]
    assert [type(m).__name__ for m in scene.delivered] == [
        "BusJobRequestMessage",
        "BusJobCancelMessage",
    ]
    assert scene.delivered[-1].source == "asker"
    assert scene.counts.unexpected_controls == 1 and scene.counts.forged_source == 0


async def test_replies_read_in_one_turn_are_acknowledged_once_by_the_last() -> None:
    # The instance consumers acknowledge all before the one acknowledged (AckPolicy.ALL).
    scene = Scene()
    read = scene.intake.routed_reader()
    bursts: list[list[FakeDelivery]] = [[], []]
    for burst in bursts:
        for index in range(3):
            control = BusJobCancelMessage(f"j{index}", source="asker", target="w")
            burst.append(
                FakeDelivery(
                    CODEC.encode(control),
                    {MSG_ID_HEADER: f"{id(burst)}-{index}"},
                    subject="natsbus.c.job.ctl.w.asker",
                )
            )
            read(burst[-1])  # type: ignore[arg-type]
        await scene.settle()
    assert [[d.calls for d in burst] for burst in bursts] == [[[], [], ["ack"]]] * 2
    assert len(scene.delivered) == 6
