"""NATS message headers parsed as nats-py parses them, in one pass.

nats-py 2.16 parses a header block in two steps (the inline status line, then the
``Name: Value`` lines, checking each name character by character in a generator): about a
quarter of what a JetStream delivery costs the client, for the three or four headers a job
message carries. :func:`parse_headers` gives the same dictionary (``tests/bus/nats/
test_nats_headers.py`` compares both on the shapes the server sends) for direct subscriptions
that keep their messages' headers (:func:`natsbus.bus.nats.direct.subscribe_direct_messages`).
"""

from __future__ import annotations

from typing import Final

__all__ = ["parse_headers"]

_CRLF: Final = b"\r\n"
_VERSION: Final = b"NATS/1.0"
_STATUS: Final = "Status"
_DESCRIPTION: Final = "Description"
_TOKEN_BREAKERS: Final = frozenset(" \t\r\n\x0b\x0c\x1c\x1d\x1e\x1f")  # str.isspace() in ASCII


def parse_headers(raw: bytes) -> dict[str, str] | None:
    """The headers of a message from the header block the server sent (``NATS/1.0``, lines).

    An inline status (``NATS/1.0 404 No Messages``) gives ``Status`` and ``Description``, as in
    nats-py. A line without a colon, or a name that is not ASCII or holds whitespace, is
    skipped; values are stripped and decoded as UTF-8, malformed bytes replaced.

    Returns:
        The headers, or None for an empty block.
    """
    if not raw:
        return None
    lines = raw.split(_CRLF)
    found: dict[str, str] = {}
    status_line = lines[0][len(_VERSION) :]
    if status_line[:1] == b" ":
        code, _, description = status_line[1:].partition(b" ")
        status = code.strip().decode("ascii", "replace")
        if status.isdigit():
            found[_STATUS] = status
        if description:
            found[_DESCRIPTION] = description.decode("utf-8", "replace")
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue  # unreachable by any lookup: nats-py drops it too
        if _TOKEN_BREAKERS.isdisjoint(key):
            found[key] = value.strip().decode("utf-8", "replace")
    return found or None
