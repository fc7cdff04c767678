"""OpenTelemetry tracing for natsbus: a producer span per send, a consumer span per dispatch.

Only the OpenTelemetry *API* is used here. Without an SDK (no ``TracerProvider`` set) the API
is a no-op: spans cost what the API's no-op costs, and a trace context that arrives is still
passed on, so a process that does not export keeps a trace whole.

How one job becomes one trace across processes:

1. ``send()`` of a message starts a PRODUCER span, a child of the current span, and writes its
   W3C trace context (``traceparent``, ``tracestate``) into ``message.trace_context``, which
   the codec carries in the envelope; a NatsBus also puts it in the NATS headers.
2. The receiving bus's dispatcher starts a CONSUMER span whose parent is that context, and
   makes it current while the subscriber's handler runs. A job handler runs in a task made
   from that context, so the updates and the response it sends are children of it, and so
   are the requester's consumer spans of those.

Which sends start a *new* trace when no span is current is a choice (``new_traces``): by
default only job requests do, so that a job is a trace from its requester on, while a stream
of data messages sent outside any span does not make a trace per message. Messages sent
inside a span (any handler of a traced message, or code of yours in a span) are always traced.

Spans follow the OpenTelemetry messaging conventions: ``messaging.system`` is ``nats`` on a
NatsBus (``natsbus`` in-process), ``messaging.operation.type`` is ``send`` or ``process``,
``messaging.destination.name`` the NATS subject (the target worker in-process), and
``messaging.message.id`` the envelope id. Span names are ``send <MessageClass>`` and
``process <MessageClass>``: the subject holds worker names, too many for span names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from contextvars import ContextVar
from typing import Final, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from natsbus.bus.base import WorkerBus
from natsbus.messages import BusJobMessage, BusJobRequestMessage, BusMessage, Lane

__all__ = ["BusTracer", "BusTracing", "HeadersGetter", "HeadersSetter", "NewTraces"]

logger = logging.getLogger(__name__)

NewTraces = Literal["jobs", "all", "none"]
"""Which sends may start a new trace when no span is current."""

_PROPAGATOR: Final = TraceContextTextMapPropagator()
# The messaging semantic-convention names natsbus uses, written out: the semconv package
# keeps them in a private ``_incubating`` module whose layout changes between releases.
MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
MESSAGING_DESTINATION_NAME: Final = "messaging.destination.name"
MESSAGING_MESSAGE_ID: Final = "messaging.message.id"
MESSAGING_CLIENT_ID: Final = "messaging.client.id"
MESSAGING_CONSUMER_GROUP_NAME: Final = "messaging.consumer.group.name"
_SEND: Final = "send"
_PROCESS: Final = "process"
_BROADCAST: Final = "(broadcast)"


class HeadersSetter(Setter[MutableMapping[str, str]]):
    """Writes trace context into a ``dict[str, str]``: NATS headers or the envelope's field."""

    def set(self, carrier: MutableMapping[str, str], key: str, value: str) -> None:
        """Set one header."""
        carrier[key] = value


class HeadersGetter(Getter[Mapping[str, str]]):
    """Reads trace context from a ``dict[str, str]``: NATS headers or the envelope's field."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        """Return the header's value as a one-item list, or None."""
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        """Return every header name."""
        return list(carrier)


HEADERS_SETTER: Final = HeadersSetter()
HEADERS_GETTER: Final = HeadersGetter()


def _current_context_getter() -> Callable[[], otel_context.Context]:
    """Return the cheapest function that gives the current OpenTelemetry context.

    ``otel_context.get_current()`` goes through two Python calls to reach the ContextVar that
    holds the context; on the untraced send path (every data message) that is most of the
    tracing cost. With the API's default runtime context (``contextvars``) this returns that
    ContextVar's own ``get``; with any other runtime context, the API function itself.
    """
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and isinstance(variable, ContextVar):
        return variable.get
    return otel_context.get_current


class BusTracing:
    """Tracing for buses: give it to a bus as ``observer=`` (it makes one tracer per bus).

    Example::

        tracing = BusTracing()  # the global TracerProvider, set by your SDK set-up
        bus = NatsBus(servers=url, observer=tracing)

    Args:
        tracer_provider: Where spans go; the global one (``opentelemetry.trace``) if None.
        new_traces: Which sends may start a trace when no span is current: ``"jobs"`` (job
            requests, the default), ``"all"`` (every message) or ``"none"``.
    """

    def __init__(
        self, *, tracer_provider: TracerProvider | None = None, new_traces: NewTraces = "jobs"
    ) -> None:
        if new_traces not in ("jobs", "all", "none"):
            raise ValueError(f"new_traces must be 'jobs', 'all' or 'none', got {new_traces!r}")
        from natsbus import __version__  # noqa: PLC0415  (natsbus imports this package lazily)

        self._tracer = trace.get_tracer("natsbus", __version__, tracer_provider=tracer_provider)
        self._new_traces: NewTraces = new_traces

    def observer_for(self, bus: WorkerBus) -> BusTracer:
        """Return the tracer for one bus (called by the bus when it is made).

        Args:
            bus: The bus.
        """
        return BusTracer(self._tracer, bus, new_traces=self._new_traces)


class BusTracer:
    """The producer and consumer spans of one bus (made by :class:`BusTracing`).

    It is a :class:`~natsbus.bus.DispatchObserver` that observes only messages that carry a
    trace context, and a :class:`~natsbus.bus.base.SendObserver`.

    Args:
        tracer: The OpenTelemetry tracer.
        bus: The bus it traces.
        new_traces: Which sends may start a trace when no span is current.
    """

    observes_untraced_messages: Final = False
    """Untraced messages take the dispatcher's fast path: no hook is called for them."""

    def __init__(self, tracer: Tracer, bus: WorkerBus, *, new_traces: NewTraces) -> None:
        self._tracer = tracer
        self._bus = bus
        self._new_traces = new_traces
        self._start_all = new_traces == "all"
        self._start_jobs = new_traces == "jobs"
        self._system = "nats" if bus.kind == "nats" else "natsbus"
        self._client_id = bus.name
        self._spanless: otel_context.Context | None = None
        self._current_context = _current_context_getter()

    # --- producer -------------------------------------------------------------------------------

    def on_send(self, bus: WorkerBus, message: BusMessage) -> object:
        """Start the producer span and write its context into ``message.trace_context``."""
        parent = self._current_context()
        # The common case first: a data message sent outside any span is not traced at all.
        # Contexts are immutable, so the last one seen to hold no span is remembered, and the
        # check costs one lookup instead of five calls (a quarter of an in-process send).
        if (
            parent is not self._spanless
            and not trace.get_current_span(parent).get_span_context().is_valid
        ):
            self._spanless = parent
        if parent is self._spanless and not (
            self._start_all or (self._start_jobs and isinstance(message, BusJobRequestMessage))
        ):
            return None  # nothing to follow, and not a message that starts a trace
        span = self._tracer.start_span(
            f"send {type(message).__name__}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes=self._attributes(message, _SEND),
        )
        if span.get_span_context().is_valid:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier, trace.set_span_in_context(span, parent), HEADERS_SETTER)
            message.trace_context = carrier
        return span

    def on_send_end(self, token: object, error: BaseException | None) -> None:
        """End the producer span, marking it failed if the publish raised."""
        if not isinstance(token, trace.Span):
            return
        if error is not None:
            token.record_exception(error)
            token.set_status(Status(StatusCode.ERROR, type(error).__name__))
        token.end()

    # --- consumer -------------------------------------------------------------------------------

    def on_dispatch_start(self, subscriber: str, lane: Lane, message: BusMessage) -> object:
        """Start the consumer span under the sender's context and make it current.

        Only for the subscriber the message is for (its target, or every one for a
        broadcast): every subscriber of a bus sees every message, and the others ignore it.
        """
        carrier = message.trace_context
        if not carrier or (message.target is not None and message.target != subscriber):
            return None
        parent = _PROPAGATOR.extract(carrier, getter=HEADERS_GETTER)
        attributes = self._attributes(message, _PROCESS)
        attributes[MESSAGING_CONSUMER_GROUP_NAME] = subscriber
        span = self._tracer.start_span(
            f"process {type(message).__name__}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return span, token

    def on_dispatch_error(
        self, token: object, subscriber: str, lane: Lane, message: BusMessage, error: BaseException
    ) -> None:
        """Mark the consumer span failed."""
        if isinstance(token, tuple):
            span: trace.Span = token[0]
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))

    def on_dispatch_end(
        self, token: object, subscriber: str, lane: Lane, message: BusMessage, duration: float
    ) -> None:
        """Restore the lane's context and end the consumer span."""
        if isinstance(token, tuple):
            span, attached = token
            otel_context.detach(attached)
            span.end()

    # --- internals ------------------------------------------------------------------------------

    def _attributes(self, message: BusMessage, operation: str) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {
            MESSAGING_SYSTEM: self._system,
            MESSAGING_OPERATION_TYPE: operation,
            MESSAGING_OPERATION_NAME: operation,
            MESSAGING_DESTINATION_NAME: self._destination(message),
            MESSAGING_MESSAGE_ID: message.id,
            MESSAGING_CLIENT_ID: self._client_id,
            "natsbus.message.type": type(message).__name__,
            "natsbus.lane": message.lane.value,
            "natsbus.source": message.source,
        }
        if message.target is not None:
            attributes["natsbus.target"] = message.target
        if isinstance(message, BusJobMessage):
            attributes["natsbus.job.id"] = message.job_id
        return attributes

    def _destination(self, message: BusMessage) -> str:
        """Where the message goes: its NATS subject, or its target on an in-process bus."""
        return self._bus.destination_of(message)


def trace_context_of(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """Pick the W3C trace context out of NATS headers (for tools that read raw messages).

    Args:
        headers: A NATS message's headers.

    Returns:
        ``traceparent`` and ``tracestate`` if present, else None.
    """
    if not headers:
        return None
    fields: Iterable[str] = _PROPAGATOR.fields
    found = {key: headers[key] for key in fields if key in headers}
    return found or None
