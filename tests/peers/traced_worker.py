"""A traced worker in its own process, for the cross-process tracing test.

Run as ``python -m tests.peers.traced_worker --url URL --channel C``. It hosts
the worker ``traced`` (job ``work``: one update, then the response) on a NatsBus traced into
an in-memory exporter, prints ``READY`` once the worker is ready, and on SIGTERM drains, then
prints one ``SPAN <json>`` line per finished span and ``EXIT``.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from natsbus.bus.nats import NatsBus
from natsbus.messages import BusJobRequestMessage, Payload
from natsbus.observability import BusTracing
from natsbus.workers import BaseWorker, WorkerRunner, job


class Traced(BaseWorker):
    @job(name="work")
    async def work(self, message: BusJobRequestMessage) -> Payload:
        await self.send_job_update(message.job_id, {"progress": 0.5})
        return {"done": True}


def span_json(span: object) -> str:
    context = span.context  # type: ignore[attr-defined]
    parent = span.parent  # type: ignore[attr-defined]
    return json.dumps(
        {
            "name": span.name,  # type: ignore[attr-defined]
            "kind": span.kind.name,  # type: ignore[attr-defined]
            "trace_id": f"{context.trace_id:032x}",
            "span_id": f"{context.span_id:016x}",
            "parent_id": None if parent is None else f"{parent.span_id:016x}",
            "attributes": dict(span.attributes or {}),  # type: ignore[attr-defined]
        }
    )


async def main(url: str, channel: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    bus = NatsBus(servers=url, channel=channel, observer=BusTracing(tracer_provider=provider))
    runner = WorkerRunner(bus=bus, grace_period=5.0)
    await runner.add_workers(Traced("traced"))
    task = asyncio.create_task(runner.run())
    await runner.registry.wait_ready(["traced"])
    print("READY", flush=True)
    await task
    for span in exporter.get_finished_spans():
        print(f"SPAN {span_json(span)}", flush=True)
    print("EXIT", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--channel", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.channel))
