"""One place says what a message class is: its lane, and for a job message its role."""

from __future__ import annotations

import inspect

from natsbus import messages
from natsbus.bus.nats import NatsBus
from natsbus.messages import (
    JOB_MESSAGE_TYPES,
    BusJobMessage,
    BusMessage,
    BusSystemMessage,
    JobRole,
    Lane,
)

ROLES = {
    "BusJobRequestMessage": JobRole.REQUEST,
    "BusJobCancelMessage": JobRole.CONTROL,
    "BusJobUpdateRequestMessage": JobRole.CONTROL,
    "BusJobUpdateMessage": JobRole.UPDATE,
    "BusJobUpdateUrgentMessage": JobRole.UPDATE,
    "BusJobStreamStartMessage": JobRole.STREAM,
    "BusJobStreamDataMessage": JobRole.STREAM,
    "BusJobResponseMessage": JobRole.ANSWER,
    "BusJobResponseUrgentMessage": JobRole.ANSWER,
    "BusJobStreamEndMessage": JobRole.ANSWER,
}


def test_every_message_class_says_its_lane_and_job_role() -> None:
    classes = [
        cls
        for _, cls in inspect.getmembers(messages, inspect.isclass)
        if issubclass(cls, BusMessage) and cls.__name__ not in ("BusMessage", "BusJobMessage")
    ]
    for cls in classes:
        expected_lane = Lane.SYSTEM if issubclass(cls, BusSystemMessage) else Lane.DATA
        assert cls.lane is expected_lane, cls
        assert cls.job_role is ROLES.get(cls.__name__), cls
        assert issubclass(cls, BusJobMessage) == (cls.__name__ in ROLES), cls
    assert {cls.__name__ for cls in JOB_MESSAGE_TYPES} == set(ROLES)


def test_the_nats_bus_names_each_messages_subject() -> None:
    bus = NatsBus(servers="nats://127.0.0.1:1", channel="c")
    request = messages.BusJobRequestMessage("j", source="a", target="w")
    cancel = messages.BusJobCancelMessage("j", source="a", target="w")
    answer = messages.BusJobResponseUrgentMessage("j", messages.JobStatus.COMPLETED, source="w")
    stored = messages.BusCancelMessage(source="a")
    ended = messages.BusEndWorkerMessage(source="a", target="w")
    core = messages.BusTTSSpeakMessage("hi", source="a", target="w")
    assert bus.destination_of(request) == "natsbus.c.job.req.w.a"
    assert bus.destination_of(cancel) == "natsbus.c.job.ctl.w.a"
    assert bus.destination_of(answer) == "natsbus.c.job.rsp.*.sys.w"
    assert bus.destination_of(stored) == "natsbus.c.life.sys.all.a"
    assert bus.destination_of(ended) == "natsbus.c.life.data.to.w.a"
    assert bus.destination_of(core) == "natsbus.c.data.to.w.a"
