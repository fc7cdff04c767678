"""The ``@job`` decorator, and how a worker finds its job handlers."""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias, TypeVar, overload

from natsbus.messages import BusJobRequestMessage, Payload

__all__ = ["JobHandler", "JobHandlerSpec", "collect_job_handlers", "job"]

JobHandler: TypeAlias = Callable[[BusJobRequestMessage], Awaitable[Payload | None]]
"""A bound job handler: takes the request, returns the response payload (or None)."""

_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])

_SPEC_ATTRIBUTE: Final = "__natsbus_job__"


@dataclass(frozen=True, slots=True)
class JobHandlerSpec:
    """What ``@job`` recorded on a method.

    Attributes:
        name: The job name it handles; None for requests without a name.
        sequential: Whether requests for it run one at a time, in arrival order.
    """

    name: str | None
    sequential: bool


@overload
def job(function: _F, /) -> _F: ...


@overload
def job(*, name: str | None = None, sequential: bool = False) -> Callable[[_F], _F]: ...


def job(
    function: _F | None = None, /, *, name: str | None = None, sequential: bool = False
) -> _F | Callable[[_F], _F]:
    """Mark a worker method as a job handler.

    The handler takes the :class:`~natsbus.BusJobRequestMessage` and returns the response
    payload: returning answers ``completed`` with it, raising answers ``error`` with the
    exception's message, and a cancel of the job cancels the handler's task and answers
    ``cancelled``. A handler may answer itself with ``send_job_response`` (to answer
    ``failed``, say); its return value is then ignored. Each request runs in its own task, so
    the worker keeps receiving messages (a cancel, say) while handlers run.

    Example::

        class Translator(BaseWorker):
            @job(name="translate")
            async def translate(self, message: BusJobRequestMessage) -> dict[str, Any]:
                await self.send_job_update(message.job_id, {"progress": 0.5})
                return {"text": (message.payload or {})["text"].upper()}

            @job  # requests without a job name
            async def default(self, message: BusJobRequestMessage) -> None: ...

    Args:
        function: The method, when used bare as ``@job``.
        name: The job name to handle; None (or bare ``@job``) handles unnamed requests.
        sequential: Run requests for this handler one at a time, in arrival order. The wait
            counts against the requester's timeout and deadline.

    Returns:
        The method itself, marked (or a decorator that marks it).
    """

    def mark(method: _F) -> _F:
        setattr(method, _SPEC_ATTRIBUTE, JobHandlerSpec(name=name, sequential=sequential))
        return method

    if function is not None:
        return mark(function)
    return mark


def collect_job_handlers(obj: object) -> dict[str | None, tuple[JobHandler, JobHandlerSpec]]:
    """Find the ``@job`` methods of an object, by job name.

    A subclass's method overrides its base's method of the same attribute name.

    Args:
        obj: A worker instance.

    Returns:
        The bound handler and its spec, by job name (None: unnamed requests).

    Raises:
        ValueError: Two methods handle the same job name.
    """
    return {
        spec.name: (getattr(obj, attribute), spec) for attribute, spec in _job_methods(type(obj))
    }


_JOB_METHODS: weakref.WeakKeyDictionary[type, tuple[tuple[str, JobHandlerSpec], ...]] = (
    weakref.WeakKeyDictionary()
)


def _job_methods(cls: type) -> tuple[tuple[str, JobHandlerSpec], ...]:
    """The ``@job`` attributes of a class and their specs, worked out once per class.

    A worker is made per session, and walking its class hierarchy took 0.1 ms each time.
    """
    known = _JOB_METHODS.get(cls)
    if known is None:
        known = _JOB_METHODS[cls] = _find_job_methods(cls)
    return known


def _find_job_methods(cls: type) -> tuple[tuple[str, JobHandlerSpec], ...]:
    found: list[tuple[str, JobHandlerSpec]] = []
    owners: dict[str | None, str] = {}
    seen: set[str] = set()
    for klass in cls.__mro__:
        for attribute, value in vars(klass).items():
            if attribute in seen:
                continue
            seen.add(attribute)
            spec = getattr(value, _SPEC_ATTRIBUTE, None)
            if not isinstance(spec, JobHandlerSpec):
                continue
            if spec.name in owners:
                raise ValueError(
                    f"{cls.__name__}: @job handlers {owners[spec.name]!r} and "
                    f"{attribute!r} both handle job name {spec.name!r}"
                )
            found.append((attribute, spec))
            owners[spec.name] = attribute
    return tuple(found)
