"""The sessions of ``bench/sessions.py``: a microphone that sends 20 ms audio frames to an ear."""

from __future__ import annotations

import asyncio
import time

from natsbus.frames import FrameDirection, OutputAudioRawFrame
from natsbus.messages import BusFrameMessage, BusJobRequestMessage, BusMessage, Payload
from natsbus.workers import BaseWorker, job

FRAME = b"\x00" * 640  # 20 ms of 16 kHz mono 16-bit PCM


class Mic(BaseWorker):
    """Sends one frame to the ear every 20 ms once asked to stream."""

    @job(name="stream")
    async def stream(self, message: BusJobRequestMessage) -> Payload:
        self.spawn(self._send())
        return {}

    async def _send(self) -> None:
        frame = OutputAudioRawFrame(audio=FRAME, sample_rate=16000, num_channels=1)
        next_at = time.monotonic()
        while True:
            await self.send_bus_message(
                BusFrameMessage(frame, FrameDirection.DOWNSTREAM, source=self.name, target="ear")
            )
            next_at += 0.020
            await asyncio.sleep(max(next_at - time.monotonic(), 0))


class Ear(BaseWorker):
    """Records each frame's send -> handler latency; ``stats`` returns and clears them."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._latencies: list[float] = []

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, BusFrameMessage):
            self._latencies.append(time.time() - message.sent_at)
            return
        await super().on_bus_message(message)

    @job(name="stats")
    async def stats(self, message: BusJobRequestMessage) -> Payload:
        latencies, self._latencies = self._latencies, []
        return {"latencies": latencies}


def make_session(args: Payload) -> list[BaseWorker]:
    """Two workers per session: ``mic`` and ``ear``."""
    return [Mic("mic"), Ear("ear")]
