"""Whether a job request that JetStream delivers again was already answered.

A request is acknowledged only once its answer is stored, but the acknowledgement can be lost
(a leader dies, the bus dies between the two): the request is then delivered again, and
running it again would repeat its side effects (a charge, an e-mail). So before a bus runs a
redelivered request it asks the answer stream's own de-duplication, which needs no extra
write on the normal path:

* the final answer to delivery *k* of a request is stored with the message id
  ``ans:<request id>:<k>`` (:func:`answer_id`);
* on delivery *n* > 1, the bus publishes, for each *k* < *n*, a small **claim** with that same
  id on a subject no consumer reads. If the stream calls it a duplicate, the message stored
  under that id is looked up: an answer means the job was answered (acknowledge, do not run);
  a claim means another bus found delivery *k* unanswered before. If the claim is stored, no
  answer to delivery *k* can be stored any more (the stream drops it as a duplicate), so a
  slow bus still running delivery *k* cannot add a second answer to the one this run gives.

The guarantee holds within the stream's de-duplication window, which
:attr:`JetStreamOptions.deduplication_window <natsbus.bus.nats.JetStreamOptions>` sizes to
cover every delivery (``ack_wait`` times ``max_attempts``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from nats.js.client import JetStreamContext

from natsbus.bus.nats.jetstream import TTL_HEADER
from natsbus.bus.nats.outbox import EXPECTED_STREAM_HEADER, MSG_ID_HEADER

__all__ = ["CLAIM_HEADER", "AnsweredCheck", "answer_id"]

CLAIM_HEADER: Final = "Natsbus-Claim"


def answer_id(request_id: str, attempt: int) -> str:
    """The message id of the final answer to delivery ``attempt`` of a request."""
    return f"ans:{request_id}:{attempt}"


class AnsweredCheck:
    """Asks the answer stream whether an earlier delivery of a request was answered.

    Args:
        jetstream: A JetStream context to publish claims and read messages with.
        stream: The stream the answers are stored in.
        claim_subject: Returns the subject to claim a worker's requests on: one of that
            stream that no consumer reads, under the worker's sender token.
        timeout: Seconds to wait for each answer of the server.
        ttl: The ``Nats-TTL`` of a claim (the answers' own), or None for the stream's age.
    """

    def __init__(
        self,
        jetstream: JetStreamContext,
        *,
        stream: str,
        claim_subject: Callable[[str], str],
        timeout: float,
        ttl: str | None = None,
    ) -> None:
        self._jetstream = jetstream
        self._stream = stream
        self._claim_subject = claim_subject
        self._timeout = timeout
        self._ttl = ttl

    async def answered(self, request_id: str, delivered: int, worker: str) -> bool:
        """Whether any delivery before ``delivered`` of the request to ``worker`` was answered.

        Claims every earlier delivery that was not, so that none of them can be answered now.

        Raises:
            nats.errors.Error: The server did not answer (the caller cannot tell; it should
                let the request be delivered again later).
        """
        subject = self._claim_subject(worker)
        for attempt in range(1, delivered):
            headers = {
                MSG_ID_HEADER: answer_id(request_id, attempt),
                CLAIM_HEADER: "1",
                EXPECTED_STREAM_HEADER: self._stream,
            }
            if self._ttl is not None:
                headers[TTL_HEADER] = self._ttl  # kept as long as the answers it stands for
            ack = await self._jetstream.publish(
                subject, b"", timeout=self._timeout, headers=headers
            )
            if not ack.duplicate:
                continue  # claimed now: delivery `attempt` was not answered, and cannot be
            stored = await self._jetstream.get_msg(self._stream, ack.seq)
            if not (stored.headers or {}).get(CLAIM_HEADER):
                return True
        return False
