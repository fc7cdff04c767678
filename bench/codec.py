"""Cost of the codec on a typical job request, beside json on the same payload.

Run: ``.venv/bin/python bench/codec.py``

Prints microseconds per operation (the median of several timeit repeats) for:

- ``natsbus.codec.encode`` + ``decode`` of a BusJobRequestMessage with envelope metadata and a
  ~100-byte payload of mixed values;
- ``json.dumps`` + ``json.loads`` of the same payload dict alone (the yardstick, which is
  lossy: it has no bytes and no int64 bounds);
- the ratio of the two, as the median of the ratios of runs made side by side (target: at most
  2.0), and the encoded size.
"""

from __future__ import annotations

import json
import statistics
import timeit
from collections.abc import Callable

from natsbus import codec
from natsbus.messages import BusJobRequestMessage

REPEATS = 15
NUMBER = 2_000

PAYLOAD = {
    "user_id": 123456,
    "count": 3,
    "score": 0.875,
    "name": "alice",
    "lang": "en-US",
    "active": True,
    "note": None,
    "tags": ["a", "b", 7],
    "opts": {"depth": 2, "fast": False},
    "big": -42,
}


def make_message() -> BusJobRequestMessage:
    message = BusJobRequestMessage(
        job_id="job-0001",
        job_name="transcribe",
        payload=PAYLOAD,
        source="client",
        target="worker-1",
    )
    message.id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    message.sent_at = 1_767_225_600.123456
    message.trace_context = {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    return message


def per_op_us(func: Callable[[], object]) -> float:
    """Median over REPEATS runs of the cost of one call, in microseconds."""
    times = timeit.repeat(func, number=NUMBER, repeat=REPEATS)
    return statistics.median(times) / NUMBER * 1e6


def paired_us(
    first: Callable[[], object], second: Callable[[], object]
) -> list[tuple[float, float]]:
    """Time two functions in alternation, REPEATS times each, in microseconds per call.

    Shared machines slow down in bursts; timing the two side by side in each repeat lets a
    burst slow both, so the ratio of each pair stays meaningful.
    """
    pairs = []
    for _ in range(REPEATS):
        a = timeit.timeit(first, number=NUMBER) / NUMBER * 1e6
        b = timeit.timeit(second, number=NUMBER) / NUMBER * 1e6
        pairs.append((a, b))
    return pairs


def main() -> None:
    message = make_message()
    data = codec.encode(message)
    assert codec.decode(data) == message
    text = json.dumps(PAYLOAD)

    def codec_round_trip() -> object:
        return codec.decode(codec.encode(message))

    def json_round_trip() -> object:
        return json.loads(json.dumps(PAYLOAD))

    pairs = paired_us(codec_round_trip, json_round_trip)
    codec_us = statistics.median(a for a, _ in pairs)
    json_us = statistics.median(b for _, b in pairs)
    ratio = statistics.median(a / b for a, b in pairs)
    encode_us = per_op_us(lambda: codec.encode(message))
    decode_us = per_op_us(lambda: codec.decode(data))

    print(f"payload: {len(text)} bytes of JSON, {len(PAYLOAD)} top-level fields")
    print(f"encoded message: {len(data)} bytes (envelope, metadata and payload)")
    print(f"codec encode:            {encode_us:7.2f} us/op")
    print(f"codec decode:            {decode_us:7.2f} us/op")
    print(f"codec encode+decode:     {codec_us:7.2f} us/op")
    print(f"json dumps+loads:        {json_us:7.2f} us/op (payload only)")
    print(f"ratio codec/json:        {ratio:7.2f}  (median of paired runs; target <= 2.0)")


if __name__ == "__main__":
    main()
