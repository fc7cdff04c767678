"""A serving process for the sessions tests: ``natsbus serve`` on ``tests.peers.session_apps``.

Prints ``READY <host id>`` once it takes sessions; SIGTERM drains, as the CLI does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from natsbus.bus.nats import NatsConnectOptions
from natsbus.sessions import ServeOptions, SessionServer
from tests.peers.session_apps import make_session


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--group", default="voice")
    parser.add_argument("--slots", type=int, default=30)
    parser.add_argument("--grace-period", type=float, default=30.0)
    parser.add_argument("--heartbeat", type=float, default=0.5)
    args = parser.parse_args()
    server = SessionServer(
        make_session,
        ServeOptions(
            group=args.group,
            slots=args.slots,
            grace_period=args.grace_period,
            heartbeat=args.heartbeat,
        ),
        connect_options=NatsConnectOptions(servers=(args.url,)),
    )

    @server.runner.event_handler("on_ready")
    async def ready(runner: object) -> None:
        print(f"READY {server.host.host_id}", flush=True)

    await server.run()
    print("EXITED", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
