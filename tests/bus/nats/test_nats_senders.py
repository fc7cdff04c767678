"""The sender rules on their own: subject tokens, answers from the worker asked, refusals read.

The same rules on a real server with users and permissions are in test_nats_permissions.py.
"""

from __future__ import annotations

import pytest

from natsbus import BusPermissionError, permissions
from natsbus.bus.nats.layout import SubjectLayout, sent_by
from natsbus.bus.nats.senders import AskedJobs, SenderCheck, sender_name
from natsbus.bus.nats.watch import permission_denied
from natsbus.bus.statistics import NetworkCounts
from natsbus.messages import (
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobUpdateMessage,
    BusTTSSpeakMessage,
    BusWorkerRegistryMessage,
    JobStatus,
    Lane,
    WorkerRegistryEntry,
)

LAYOUT = SubjectLayout("c")


def response(job_id: str, source: str) -> BusJobResponseMessage:
    return BusJobResponseMessage(job_id, JobStatus.COMPLETED, {}, source=source, target="me")


def update(job_id: str, source: str) -> BusJobUpdateMessage:
    return BusJobUpdateMessage(job_id, {}, source=source, target="me")


def test_a_subject_names_its_sender_in_its_last_token() -> None:
    subject = LAYOUT.targeted(Lane.DATA, "w", "my worker.v2")
    assert subject == "natsbus.c.data.to.w.my%20worker%2Ev2"
    assert sent_by(subject, "my worker.v2")
    assert not sent_by(subject, "worker.v2")  # a suffix of the token is not the token
    assert not sent_by(subject, "w")
    assert LAYOUT.targeted(Lane.DATA, "w") == "natsbus.c.data.to.w.*"  # listening: anyone


def test_answers_are_accepted_only_from_the_workers_asked() -> None:
    asked = AskedJobs()
    asked.asked("j1", "a")
    asked.asked("j1", "b")  # a group of two
    assert not asked.admits(response("j1", "mallory"))
    assert not asked.admits(response("unknown", "a"))
    assert asked.admits(update("j1", "a"))
    assert asked.admits(response("j1", "a"))
    assert len(asked) == 1  # b has not answered yet
    assert asked.admits(update("j1", "a"))  # an update an urgent answer overtook
    assert asked.admits(response("j1", "b"))
    assert len(asked) == 0
    assert not asked.admits(update("j1", "mallory"))


def test_the_jobs_waiting_for_answers_are_bounded() -> None:
    asked = AskedJobs(capacity=3, finished=2)
    for i in range(5):
        asked.asked(f"j{i}", "w")
    assert len(asked) == 3
    assert not asked.admits(response("j0", "w"))  # forgotten, the oldest
    assert asked.admits(response("j4", "w"))


def test_the_check_counts_each_rule_it_applies() -> None:
    counts = NetworkCounts()
    check = SenderCheck(counts=counts, requester=lambda worker, job: None, name="bus")
    speech = BusTTSSpeakMessage("hi", source="bob", target="w")
    assert check.admits(speech, LAYOUT.targeted(Lane.DATA, "w", "bob"))
    assert not check.admits(speech, LAYOUT.targeted(Lane.DATA, "w", "alice"))
    check.sending(BusJobRequestMessage("j", source="me", target="w"))
    assert check.admits(response("j", "w"), LAYOUT.job_replies("i", Lane.DATA, "w"))
    assert not check.admits(response("j", "x"), LAYOUT.job_replies("i", Lane.DATA, "x"))
    assert (counts.forged_source, counts.unexpected_answers) == (1, 1)


def test_a_registry_snapshot_goes_out_under_its_first_workers_token() -> None:
    entry = WorkerRegistryEntry("payments", None, True, False, 1.0)
    snapshot = BusWorkerRegistryMessage("pod-7f9c", [entry], source="pod-7f9c")
    assert sender_name(snapshot) == "payments"
    counts = NetworkCounts()
    check = SenderCheck(counts=counts, requester=lambda worker, job: None, name="bus")
    assert check.admits(snapshot, LAYOUT.lifecycle(Lane.SYSTEM, None, "payments"))
    assert not check.admits(snapshot, LAYOUT.lifecycle(Lane.SYSTEM, None, "refunds"))
    assert sender_name(BusWorkerRegistryMessage("r", [], source="r")) == "r"


def test_a_refusal_reported_in_lowercase_is_spelled_as_sent() -> None:
    error = Exception(
        "nats: permissions violation for publish to "
        '"$js.api.consumer.create.natsbus_jobs_requests.jobs_shop_a_1.natsbus.shop.job.req.a.*"'
    )
    denial = permission_denied(error, ["NATSBUS_JOBS_REQUESTS", "natsbus", "shop"])
    assert isinstance(denial, BusPermissionError)
    assert denial.operation == "publish"
    assert denial.subject == (
        "$JS.API.CONSUMER.CREATE.NATSBUS_JOBS_REQUESTS.jobs_shop_a_1.natsbus.shop.job.req.a.*"
    )
    subscribe = permission_denied(Exception('permissions violation for subscription to "x.>"'))
    assert subscribe is not None and subscribe.operation == "subscribe"
    assert permission_denied(Exception("nats: timeout")) is None


def test_the_roles_differ_in_what_they_may_do() -> None:
    worker = permissions(channel="c", names=["w"], role="worker")
    runner = permissions(channel="c", names=["w"], role="runner")
    requester = permissions(channel="c", names=["w"], role="requester")
    observer = permissions(channel="c", names=[], role="observer")
    assert set(runner.publish) - set(worker.publish) == {
        f"$JS.API.STREAM.{verb}.{stream}"
        for verb in ("CREATE", "UPDATE")
        for stream in ("NATSBUS_JOBS", "NATSBUS_JOBS_REQUESTS")
    }
    assert "natsbus.c.job.rsp.*.*.w" in worker.publish
    assert "natsbus.c.job.rsp.*.*.w" not in requester.publish  # answers nothing
    assert not any("REQUESTS." in subject for subject in requester.publish if "CONSUMER" in subject)
    assert not any(subject.startswith("natsbus.") for subject in observer.publish)
    assert "natsbus.c.data.>" in observer.subscribe
    assert all(subject.endswith(".w") or "$JS" in subject for subject in worker.publish)
    with pytest.raises(ValueError, match="--name"):
        permissions(channel="c", names=[], role="worker")
    with pytest.raises(ValueError):
        permissions(channel="c", names=["w"], role="admin")
