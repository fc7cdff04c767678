"""pipecat apps in separate OS processes on natsbus.pipecat.NatsBus: frames, jobs, a SIGKILL.

Every peer is tests/peers/pipecat_peer.py: pipecat's own WorkerRunner, PipelineWorker,
BusBridgeProcessor and BaseWorker, with the bus swapped for natsbus.pipecat.NatsBus.
"""

from __future__ import annotations

import asyncio
import json

from helpers.pipecat import PipecatPeers


async def test_frames_cross_between_two_pipecat_pipeline_workers_in_order(
    peers: PipecatPeers,
) -> None:
    listener = await peers.start("listener")
    await listener.wait_for("READY", 30)
    sender = await peers.start("sender", "--count", "5")
    await sender.wait_for("SENT", 30)
    await listener.wait_for("FRAME OutputAudioRawFrame 320|16000|1|b'\\x04'", 20)
    expected = []
    for i in range(5):
        expected += [
            f"FRAME TranscriptionFrame heard {i}|user-1|en-US",
            f"FRAME TextFrame text {i}",
            f"FRAME OutputAudioRawFrame 320|16000|1|{bytes([i])!r}",
        ]
    assert listener.found("FRAME") == expected
    # Each TextFrame came back upstream through the listener's bridge, in order.
    await sender.wait_for("BACK TextFrame echo: text 4", 20)
    assert sender.found("BACK") == [f"BACK TextFrame echo: text {i}" for i in range(5)]


async def test_a_pipecat_job_with_updates_and_a_stream_is_answered_across_processes(
    peers: PipecatPeers,
) -> None:
    worker = await peers.start("worker")
    await worker.wait_for("READY", 30)
    requester = await peers.start("requester")
    response = await requester.wait_for("RESPONSE", 30)
    assert requester.found("EVENT") == [
        'EVENT update {"big": 1099511627776, "progress": 0.5}',
        'EVENT stream_start {"kind": "words"}',
        'EVENT stream_data {"word": "HELLO"}',
        'EVENT stream_data {"word": "BIG"}',
        'EVENT stream_data {"word": "WORLD"}',
        f'EVENT stream_end {{"pid": {worker.pid}, "text": "HELLO BIG WORLD"}}',
    ]
    assert json.loads(response.removeprefix("RESPONSE ")) == {
        "pid": worker.pid,
        "text": "HELLO BIG WORLD",
    }


async def test_a_pipecat_worker_sigkilled_mid_job_has_the_job_redelivered_to_its_replica(
    peers: PipecatPeers,
) -> None:
    fast = ("--ack-wait", "2")
    doomed = await peers.start("worker", *fast, "--slow-seconds", "60")
    await doomed.wait_for("READY", 30)
    requester = await peers.start("slow-requester", *fast)
    started = await doomed.wait_for("STARTED", 30)
    replica = await peers.start("worker", *fast, "--slow-seconds", "0.2")
    await replica.wait_for("READY", 30)
    await doomed.kill()
    job_id = started.split()[1]
    assert (await replica.wait_for("STARTED", 30)).split()[1] == job_id
    response = await requester.wait_for("RESPONSE", 30)
    assert json.loads(response.removeprefix("RESPONSE ")) == {"pid": replica.pid}
    assert requester.count("RESPONSE") == 1


async def test_a_cancelled_pipecat_job_is_answered_cancelled_and_never_runs_again(
    peers: PipecatPeers,
) -> None:
    fast = ("--ack-wait", "1")
    worker = await peers.start("worker", *fast, "--slow-seconds", "60", ready="READY")
    canceller = await peers.start("canceller", *fast)
    job_id = (await worker.wait_for("STARTED", 30)).split()[1]
    assert (await canceller.wait_for("CANCEL_SENT", 30)).split()[1] == job_id
    assert await canceller.wait_for("ANSWER", 30) == f"ANSWER {job_id} cancelled"
    # The cancelled answer acknowledged the request: the worker's process dies, and its
    # replica is never handed the job (an unacknowledged one would be, an ack wait later).
    await worker.kill()
    replica = await peers.start("worker", *fast, "--slow-seconds", "60", ready="READY")
    await asyncio.sleep(3.5)
    assert replica.count("STARTED") == 0
    assert canceller.count("ANSWER") == 1
