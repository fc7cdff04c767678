"""Built-in message classes <-> envelope bodies (part of the codec).

One :class:`Builtin` per class of :mod:`natsbus.messages` that may cross a network: the
envelope's ``body`` field that carries it, a function that fills that field from a message,
and one that builds the message back from it. Envelope metadata (id, send time, trace
context) is handled by the codec; ``source`` and ``target`` are passed to the decoders so that
each message is built in one constructor call.

Encoders write straight into the envelope's body (``env.job_request.job_id = ...``): setting
attributes in place is about twice as cheap as building sub-messages with keyword arguments
and copying them in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from natsbus._codec_values import decode_payload, encode_payload
from natsbus._proto.v1 import messages_pb2 as _pb_messages
from natsbus._proto.v1.envelope_pb2 import Envelope as PB2Envelope
from natsbus.errors import MalformedMessageError, UnsupportedValueError
from natsbus.messages import (
    BusActivateWorkerMessage,
    BusCancelMessage,
    BusCancelWorkerMessage,
    BusDeactivateWorkerMessage,
    BusEndMessage,
    BusEndWorkerMessage,
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobResponseUrgentMessage,
    BusJobStreamDataMessage,
    BusJobStreamEndMessage,
    BusJobStreamStartMessage,
    BusJobUpdateMessage,
    BusJobUpdateRequestMessage,
    BusJobUpdateUrgentMessage,
    BusMessage,
    BusTTSSpeakMessage,
    BusWorkerErrorMessage,
    BusWorkerReadyMessage,
    BusWorkerRegistryMessage,
    JobStatus,
    WorkerRegistryEntry,
)

__all__ = ["BUILTINS", "BUILTIN_WIRE_PREFIX", "BodyDecoder", "BodyEncoder", "Builtin"]

BUILTIN_WIRE_PREFIX: Final = "natsbus."
"""Wire names of built-in types are this prefix plus their envelope body field name."""

BodyEncoder = Callable[[Any, PB2Envelope], None]
"""Fills the envelope's body from a message (metadata is the codec's job)."""
BodyDecoder = Callable[[Any, str, "str | None"], BusMessage]
"""Builds a message from a body message, the envelope's source and its target."""


@dataclass(frozen=True, slots=True)
class Builtin:
    """How one built-in class travels.

    Attributes:
        field: The envelope ``body`` field that carries it.
        cls: The message class.
        encode: Fills the body from a message.
        decode: Builds the message back from the body.
    """

    field: str
    cls: type[BusMessage]
    encode: BodyEncoder
    decode: BodyDecoder

    @property
    def wire_name(self) -> str:
        """The type's wire name, e.g. ``natsbus.job_request``."""
        return BUILTIN_WIRE_PREFIX + self.field


_STATUS_TO_WIRE: Final[dict[str, int]] = {
    JobStatus.COMPLETED: _pb_messages.JOB_STATUS_COMPLETED,
    JobStatus.CANCELLED: _pb_messages.JOB_STATUS_CANCELLED,
    JobStatus.FAILED: _pb_messages.JOB_STATUS_FAILED,
    JobStatus.ERROR: _pb_messages.JOB_STATUS_ERROR,
}
_STATUS_FROM_WIRE: Final[dict[int, JobStatus]] = {
    v: JobStatus(k) for k, v in _STATUS_TO_WIRE.items()
}


def _status_to_wire(status: object) -> int:
    wire = _STATUS_TO_WIRE.get(status) if isinstance(status, str) else None
    if wire is None:
        raise UnsupportedValueError(f"status {status!r} is not a JobStatus")
    return wire


def _status_from_wire(wire: int) -> JobStatus:
    status = _STATUS_FROM_WIRE.get(wire)
    if status is None:
        raise MalformedMessageError(f"unknown job status number {wire}")
    return status


# --- Shapes shared by several classes ----------------------------------------------------------


def _reason(field: str, cls: type[Any]) -> Builtin:
    """Classes with one ``reason: str | None`` field (end and cancel, session and worker)."""

    def encode(message: Any, env: PB2Envelope) -> None:
        body = getattr(env, field)
        body.SetInParent()
        if message.reason is not None:
            body.reason = message.reason

    def decode(body: Any, source: str, target: str | None) -> BusMessage:
        reason = body.reason if body.HasField("reason") else None
        return cls(reason=reason, source=source, target=target)  # type: ignore[no-any-return]

    return Builtin(field, cls, encode, decode)


def _job_response(field: str, cls: type[Any]) -> Builtin:
    """BusJobResponseMessage and its urgent twin."""

    def encode(message: Any, env: PB2Envelope) -> None:
        body = getattr(env, field)
        body.job_id = message.job_id
        body.status = _status_to_wire(message.status)
        if message.response is not None:
            encode_payload(message.response, body.response)

    def decode(body: Any, source: str, target: str | None) -> BusMessage:
        return cls(  # type: ignore[no-any-return]
            job_id=body.job_id,
            status=_status_from_wire(body.status),
            response=decode_payload(body.response) if body.HasField("response") else None,
            source=source,
            target=target,
        )

    return Builtin(field, cls, encode, decode)


def _job_update(field: str, cls: type[Any]) -> Builtin:
    """BusJobUpdateMessage and its urgent twin."""

    def encode(message: Any, env: PB2Envelope) -> None:
        body = getattr(env, field)
        body.job_id = message.job_id
        if message.update is not None:
            encode_payload(message.update, body.update)

    def decode(body: Any, source: str, target: str | None) -> BusMessage:
        return cls(  # type: ignore[no-any-return]
            job_id=body.job_id,
            update=decode_payload(body.update) if body.HasField("update") else None,
            source=source,
            target=target,
        )

    return Builtin(field, cls, encode, decode)


def _job_stream(field: str, cls: type[Any]) -> Builtin:
    """The three job stream messages (start, data, end)."""

    def encode(message: Any, env: PB2Envelope) -> None:
        body = getattr(env, field)
        body.job_id = message.job_id
        if message.data is not None:
            encode_payload(message.data, body.data)

    def decode(body: Any, source: str, target: str | None) -> BusMessage:
        return cls(  # type: ignore[no-any-return]
            job_id=body.job_id,
            data=decode_payload(body.data) if body.HasField("data") else None,
            source=source,
            target=target,
        )

    return Builtin(field, cls, encode, decode)


# --- Classes with a shape of their own ---------------------------------------------------------


def _encode_activate(message: BusActivateWorkerMessage, env: PB2Envelope) -> None:
    body = env.activate_worker
    body.SetInParent()
    if message.args is not None:
        encode_payload(message.args, body.args)


def _decode_activate(
    body: _pb_messages.ActivateWorker, source: str, target: str | None
) -> BusMessage:
    args = decode_payload(body.args) if body.HasField("args") else None
    return BusActivateWorkerMessage(args=args, source=source, target=target)


def _encode_deactivate(message: BusDeactivateWorkerMessage, env: PB2Envelope) -> None:
    env.deactivate_worker.SetInParent()


def _decode_deactivate(
    body: _pb_messages.DeactivateWorker, source: str, target: str | None
) -> BusMessage:
    return BusDeactivateWorkerMessage(source=source, target=target)


def _encode_worker_error(message: BusWorkerErrorMessage, env: PB2Envelope) -> None:
    env.worker_error.error = message.error


def _decode_worker_error(
    body: _pb_messages.WorkerError, source: str, target: str | None
) -> BusMessage:
    return BusWorkerErrorMessage(error=body.error, source=source, target=target)


def _encode_worker_ready(message: BusWorkerReadyMessage, env: PB2Envelope) -> None:
    body = env.worker_ready
    body.runner = message.runner
    if message.parent is not None:
        body.parent = message.parent
    body.active = message.active
    body.bridged = message.bridged
    if message.started_at is not None:
        body.started_at = message.started_at


def _decode_worker_ready(
    body: _pb_messages.WorkerReady, source: str, target: str | None
) -> BusMessage:
    return BusWorkerReadyMessage(
        runner=body.runner,
        parent=body.parent if body.HasField("parent") else None,
        active=body.active,
        bridged=body.bridged,
        started_at=body.started_at if body.HasField("started_at") else None,
        source=source,
        target=target,
    )


def _encode_worker_registry(message: BusWorkerRegistryMessage, env: PB2Envelope) -> None:
    body = env.worker_registry
    body.runner = message.runner
    add = body.workers.add
    for worker in message.workers:
        entry = add()
        entry.name = worker.name
        if worker.parent is not None:
            entry.parent = worker.parent
        entry.active = worker.active
        entry.bridged = worker.bridged
        if worker.started_at is not None:
            entry.started_at = worker.started_at


def _decode_worker_registry(
    body: _pb_messages.WorkerRegistry, source: str, target: str | None
) -> BusMessage:
    workers = [
        WorkerRegistryEntry(
            name=entry.name,
            parent=entry.parent if entry.HasField("parent") else None,
            active=entry.active,
            bridged=entry.bridged,
            started_at=entry.started_at if entry.HasField("started_at") else None,
        )
        for entry in body.workers
    ]
    return BusWorkerRegistryMessage(
        runner=body.runner, workers=workers, source=source, target=target
    )


def _encode_tts_speak(message: BusTTSSpeakMessage, env: PB2Envelope) -> None:
    body = env.tts_speak
    body.text = message.text
    if message.append_to_context is not None:
        body.append_to_context = message.append_to_context


def _decode_tts_speak(body: _pb_messages.TtsSpeak, source: str, target: str | None) -> BusMessage:
    return BusTTSSpeakMessage(
        text=body.text,
        append_to_context=body.append_to_context if body.HasField("append_to_context") else None,
        source=source,
        target=target,
    )


def _encode_job_request(message: BusJobRequestMessage, env: PB2Envelope) -> None:
    body = env.job_request
    body.job_id = message.job_id
    if message.job_name is not None:
        body.job_name = message.job_name
    if message.payload is not None:
        encode_payload(message.payload, body.payload)


def _decode_job_request(
    body: _pb_messages.JobRequest, source: str, target: str | None
) -> BusMessage:
    return BusJobRequestMessage(
        job_id=body.job_id,
        job_name=body.job_name if body.HasField("job_name") else None,
        payload=decode_payload(body.payload) if body.HasField("payload") else None,
        source=source,
        target=target,
    )


def _encode_job_update_request(message: BusJobUpdateRequestMessage, env: PB2Envelope) -> None:
    env.job_update_request.job_id = message.job_id


def _decode_job_update_request(
    body: _pb_messages.JobUpdateRequest, source: str, target: str | None
) -> BusMessage:
    return BusJobUpdateRequestMessage(job_id=body.job_id, source=source, target=target)


def _encode_job_cancel(message: BusJobCancelMessage, env: PB2Envelope) -> None:
    body = env.job_cancel
    body.job_id = message.job_id
    if message.reason is not None:
        body.reason = message.reason


def _decode_job_cancel(body: _pb_messages.JobCancel, source: str, target: str | None) -> BusMessage:
    return BusJobCancelMessage(
        job_id=body.job_id,
        reason=body.reason if body.HasField("reason") else None,
        source=source,
        target=target,
    )


BUILTINS: Final[tuple[Builtin, ...]] = (
    Builtin("activate_worker", BusActivateWorkerMessage, _encode_activate, _decode_activate),
    Builtin(
        "deactivate_worker", BusDeactivateWorkerMessage, _encode_deactivate, _decode_deactivate
    ),
    _reason("end", BusEndMessage),
    _reason("end_worker", BusEndWorkerMessage),
    _reason("cancel", BusCancelMessage),
    _reason("cancel_worker", BusCancelWorkerMessage),
    Builtin("worker_error", BusWorkerErrorMessage, _encode_worker_error, _decode_worker_error),
    Builtin("worker_ready", BusWorkerReadyMessage, _encode_worker_ready, _decode_worker_ready),
    Builtin(
        "worker_registry",
        BusWorkerRegistryMessage,
        _encode_worker_registry,
        _decode_worker_registry,
    ),
    Builtin("tts_speak", BusTTSSpeakMessage, _encode_tts_speak, _decode_tts_speak),
    Builtin("job_request", BusJobRequestMessage, _encode_job_request, _decode_job_request),
    _job_response("job_response", BusJobResponseMessage),
    _job_response("job_response_urgent", BusJobResponseUrgentMessage),
    _job_update("job_update", BusJobUpdateMessage),
    _job_update("job_update_urgent", BusJobUpdateUrgentMessage),
    Builtin(
        "job_update_request",
        BusJobUpdateRequestMessage,
        _encode_job_update_request,
        _decode_job_update_request,
    ),
    _job_stream("job_stream_start", BusJobStreamStartMessage),
    _job_stream("job_stream_data", BusJobStreamDataMessage),
    _job_stream("job_stream_end", BusJobStreamEndMessage),
    Builtin("job_cancel", BusJobCancelMessage, _encode_job_cancel, _decode_job_cancel),
)
"""Every built-in class that crosses the network, in envelope field order."""
