"""Two tenants on one nats-server see nothing of each other.

Two ways, both on a real server whose users have the permissions ``natsbus permissions``
generates: each tenant in an account of its own (full isolation, even with the same channel,
worker names and streams, and even for a user with every permission in its account), or two
deployments in one account, each with its own ``prefix`` and ``stream``, whose generated sets
cannot subscribe to, consume or fetch from the other's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
from nats.js.api import ConsumerConfig

from natsbus import permissions
from natsbus.bus.nats import JetStreamOptions, NatsBus
from natsbus.messages import BusTTSSpeakMessage
from natsbus.testing import NatsServer

from helpers.auth import configured_server, login, raw_connection, server_config
from helpers.workers import Requester, Tool, running, within

CHANNEL = "shop"
SECRET = "acme-secret-7731"


@contextlib.asynccontextmanager
async def acme_trading(
    server: NatsServer, runner_user: str, buyer_user: str, **bus: Any
) -> AsyncIterator[None]:
    """Acme's payments worker and buyer, exchanging a job and a frame that carry SECRET."""
    shop, bob = Tool("payments"), Requester("bob")
    shop_bus = NatsBus(connect_options=login(server, runner_user), channel=CHANNEL, **bus)
    bob_bus = NatsBus(connect_options=login(server, buyer_user), channel=CHANNEL, **bus)
    async with running(shop, bus=shop_bus), running(bob, bus=bob_bus) as runner:
        await within(runner.registry.wait_ready(["payments"]), 10)
        async with bob.job("payments", name="echo", payload={"card": SECRET}) as job:
            pass
        assert job.response == {"echo": {"card": SECRET}}
        await bob.send_bus_message(BusTTSSpeakMessage(SECRET, source="bob", target="payments"))
        yield


async def test_tenants_in_two_accounts_share_nothing_even_with_every_permission(
    tmp_path: Path,
) -> None:
    acme = {
        "acme-payments": permissions(channel=CHANNEL, names=["payments"], role="runner"),
        "acme-bob": permissions(channel=CHANNEL, names=["bob"], role="requester"),
    }
    config = server_config(accounts={"ACME": acme, "GLOBEX": {"eve": None}})
    async with configured_server(tmp_path, config) as server:
        eve, _ = await raw_connection(server, "eve")
        heard: list[bytes] = []

        async def listen(msg: Any) -> None:
            heard.append(msg.data)

        await eve.subscribe(">", cb=listen)  # every subject of her account
        # Eve's own deployment, with the very same channel, names and streams.
        eve_shop = Tool("payments")
        eve_bus = NatsBus(connect_options=login(server, "eve"), channel=CHANNEL)
        try:
            async with running(eve_shop, bus=eve_bus):
                async with acme_trading(server, "acme-payments", "acme-bob"):
                    await asyncio.sleep(0.3)
                js = eve.jetstream()
                for stream in ("NATSBUS_JOBS", "NATSBUS_JOBS_REQUESTS"):
                    # Her account's streams hold only her own messages: read them all.
                    state = (await js.stream_info(stream)).state
                    for sequence in range(max(state.first_seq, 1), state.last_seq + 1):
                        with contextlib.suppress(nats.js.errors.NotFoundError):
                            heard.append((await js.get_msg(stream, sequence)).data or b"")
            assert eve_shop.ran == []  # acme's job never reached eve's payments worker
            assert heard and not any(SECRET.encode() in data for data in heard)
        finally:
            await eve.close()


def deployment(tenant: str, names: list[str], role: str) -> Any:
    return permissions(
        channel=CHANNEL, names=names, role=role, prefix=tenant, stream=f"{tenant.upper()}_JOBS"
    )


async def test_two_deployments_in_one_account_cannot_read_each_other(tmp_path: Path) -> None:
    sets = {
        "acme-payments": deployment("acme", ["payments"], "runner"),
        "acme-bob": deployment("acme", ["bob"], "requester"),
        "globex-payments": deployment("globex", ["payments"], "runner"),
    }
    config = server_config(sets)
    globex_set = sets["globex-payments"]
    async with configured_server(tmp_path, config) as server:
        spy, errors = await raw_connection(
            server, "globex-payments", inbox_prefix=globex_set.inbox_prefix
        )
        heard: list[bytes] = []

        async def listen(msg: Any) -> None:
            heard.append(msg.data)

        # Everything the generated set lets globex subscribe to...
        for subject in globex_set.subscribe:
            await spy.subscribe(subject, cb=listen)
        # ...and what it may not: acme's subjects, every inbox.
        for subject in ("acme.>", "_INBOX.>", ">"):
            await spy.subscribe(subject, cb=listen)
        await spy.flush()
        js = spy.jetstream(timeout=1.0)
        acme_bus = {"prefix": "acme", "jetstream_options": JetStreamOptions(stream="ACME_JOBS")}
        async with acme_trading(server, "acme-payments", "acme-bob", **acme_bus):
            await asyncio.sleep(0.3)
            # A consumer of its own on acme's streams, and a direct read: both refused.
            for stream in ("ACME_JOBS", "ACME_JOBS_REQUESTS"):
                with contextlib.suppress(nats.errors.TimeoutError):
                    await js.add_consumer(stream, ConsumerConfig(name="peek", filter_subject=">"))
                with contextlib.suppress(nats.errors.TimeoutError, nats.js.errors.Error):
                    heard.append((await js.get_msg(stream, 1)).data or b"")
        await spy.close()
    assert not any(SECRET.encode() in data for data in heard)
    refused = " ".join(errors)
    for subject in ("acme.>", "_inbox.>", ">"):
        assert f'subscription to "{subject}"' in refused
    assert "$js.api.consumer.create.acme_jobs" in refused
    assert "$js.api.stream.msg.get.acme_jobs" in refused
