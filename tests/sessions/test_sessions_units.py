"""Session pieces that need no server: metrics, the service runner's rule, names, the CLI."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from natsbus.cli import main
from natsbus.messages import BusCancelMessage, BusEndMessage, BusEndWorkerLocalMessage
from natsbus.sessions import (
    SESSION_METRIC_NAMES,
    Outcome,
    ServiceRunner,
    SessionMetrics,
    session_channel,
)
from natsbus.workers import WorkerRunner


def test_every_session_series_exists_from_the_start() -> None:
    registry = CollectorRegistry()
    SessionMetrics("voice", 8, registry=registry)
    value = registry.get_sample_value
    assert value("natsbus_sessions_running", {"group": "voice"}) == 0
    assert value("natsbus_session_slots_free", {"group": "voice"}) == 8
    assert value("natsbus_session_slots", {"group": "voice"}) == 8
    assert value("natsbus_session_requests_waiting", {"group": "voice"}) == 0
    assert value("natsbus_session_start_seconds_count", {"group": "voice"}) == 0
    for outcome in Outcome:
        labels = {"group": "voice", "outcome": outcome.value}
        assert value("natsbus_sessions_ended_total", labels) == 0
    exported = {metric.name for metric in registry.collect()}
    assert {name.removesuffix("_total") for name in SESSION_METRIC_NAMES} == exported


def test_session_metrics_follow_what_happens() -> None:
    registry = CollectorRegistry()
    metrics = SessionMetrics("voice", 8, registry=registry)
    metrics.running(3, taking=True)
    metrics.started(0.2)
    metrics.ended(Outcome.CANCELLED)
    value = registry.get_sample_value
    assert value("natsbus_sessions_running", {"group": "voice"}) == 3
    assert value("natsbus_session_slots_free", {"group": "voice"}) == 5
    assert value("natsbus_session_start_seconds_sum", {"group": "voice"}) == pytest.approx(0.2)
    ended = {"group": "voice", "outcome": "cancelled"}
    assert value("natsbus_sessions_ended_total", ended) == 1
    metrics.running(3, taking=False)  # draining: no free slot to offer
    assert value("natsbus_session_slots_free", {"group": "voice"}) == 0


def test_a_service_runner_admits_only_local_and_authorised_ends() -> None:
    runner = ServiceRunner(end_from=["ops"], handle_signals=False)
    assert runner.admits_end(BusEndWorkerLocalMessage("SIGTERM", source="r", target="tts"))
    assert runner.admits_end(BusEndMessage("maintenance", source="ops"))
    assert not runner.admits_end(BusEndMessage("done", source="client-1"))
    assert not runner.admits_end(BusCancelMessage("bye", source="talker"))
    assert runner.refused_ends == 2
    assert WorkerRunner(handle_signals=False).admits_end(BusEndMessage("x", source="anyone"))


def test_a_session_channel_is_one_token_for_any_group_name() -> None:
    from natsbus.bus.nats.layout import SubjectLayout

    root = SubjectLayout(session_channel("voice.eu west", "abc")).root
    assert root.count(".") == 1 and root.startswith("natsbus.")


def test_serve_refuses_bad_arguments_with_a_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "serve",
            "tests.peers.session_apps:make_session",
            "--group=v",
            "--slots=0",
            "--nats-url=nats://127.0.0.1:1",
        ]
    )
    assert code == 2
    assert "--slots must be >= 1" in capsys.readouterr().err
    code = main(["serve", "no_such_module:make", "--group=v", "--nats-url=nats://127.0.0.1:1"])
    assert code == 2
