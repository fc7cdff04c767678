"""Sessions whose NATS users have exactly the permissions natsbus generates for them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import natsbus
from natsbus.access import permissions, serve_permissions, session_requester_permissions
from natsbus.bus.nats import NatsBus
from natsbus.sessions import Outcome, ServeOptions, ServiceRunner, SessionServer
from tests.peers.session_apps import Tts, make_session

from helpers.auth import configured_server, login, server_config


def sets() -> dict[str, object]:
    return {
        "voice-serve": serve_permissions(
            channel="default", group="voice", names=["talker", "listener"]
        ),
        "tts-svc": permissions(channel="services", names=["tts"], role="runner"),
        "web": session_requester_permissions(channel="default", names=["web"]),
    }


def test_the_serve_set_pins_the_deployment_and_opens_session_channels_to_its_names() -> None:
    found = serve_permissions(channel="default", group="voice", names=["talker"])
    assert "natsbus.default.job.rsp.*.*.voice" in found.publish  # answers session requests
    assert "natsbus.*.job.rsp.*.*.talker" in found.publish  # a session's worker answers jobs
    assert "natsbus.services.job.req.*.sessions-voice" in found.publish  # asks the services
    assert not any(s.endswith(".listener") for s in found.publish)  # names not given: none
    assert found.inbox_prefix == "_INBOX.natsbus.default"
    assert [s for s in found.subscribe if s.startswith("_INBOX.")] == ["_INBOX.natsbus.default.>"]


async def test_a_session_and_a_service_run_with_exactly_their_sets(tmp_path: Path) -> None:
    config = server_config(sets())  # type: ignore[arg-type]
    async with configured_server(tmp_path, config) as server:
        tts = ServiceRunner(
            bus=NatsBus(connect_options=login(server, "tts-svc"), channel="services"),
            handle_signals=False,
        )
        await tts.add_workers(Tts())
        tts_task = asyncio.create_task(tts.run())
        serving = SessionServer(
            make_session,
            ServeOptions(group="voice", slots=4),
            connect_options=login(server, "voice-serve"),
            handle_signals=False,
        )
        serve_task = asyncio.create_task(serving.run())
        try:
            # The runners make the streams; a client may only read them.
            await asyncio.wait_for(tts.registry.wait_ready(["tts"]), 20)
            await asyncio.wait_for(serving.runner.registry.wait_ready(["voice"]), 20)
            async with natsbus.connect(
                server.url, name="web", connect_options=login(server, "web")
            ) as client:
                session = await client.start_session("voice", args={}, timeout=30)
                answer = await session.request("talker", "echo", {"x": 1}, timeout=20)
                assert answer is not None and answer["channel"] == session.channel
                spoken = await session.request("talker", "speak", {"text": "ok"}, timeout=20)
                assert spoken is not None and spoken["audio"] == "OK"
                await session.end("done")
                assert (await session.wait(20)).outcome is Outcome.ENDED
                await session.close()
        finally:
            await serving.stop()
            await asyncio.wait_for(serve_task, 30)
            await tts.end("test over")
            await asyncio.wait_for(tts_task, 30)
