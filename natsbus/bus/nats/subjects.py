"""Turn worker and channel names into NATS subject tokens, and back.

A NATS subject is a list of tokens separated by ``.``; a token must not contain ``.``, the
wildcards ``*`` and ``>``, whitespace or control characters. Names come from users and can
contain any of these, so each name is escaped into exactly one token:

- ``A-Z``, ``a-z``, ``0-9``, ``_`` and ``-`` stay as they are, so ordinary names read the same
  in monitoring (``transcriber-2`` stays ``transcriber-2``);
- every other UTF-8 byte becomes ``%XX`` (uppercase hex), the escape character ``%`` included
  (``my worker.v2`` becomes ``my%20worker%2Ev2``).

The mapping is injective (two different names never share a token) because UTF-8 is, and
because a kept character is never ``%`` while an escape always starts with it, so a token
parses back one way only. :func:`decode_token` accepts exactly the tokens that
:func:`encode_token` produces. Tokens are also valid JetStream stream and consumer name parts
(they contain no slashes either).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

__all__ = ["decode_token", "encode_token"]

_KEPT: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_KEPT_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_TOKEN_RE: Final = re.compile(r"(?:[A-Za-z0-9_-]|%[0-9A-F]{2})+")
_ESCAPES: Final = tuple(chr(byte) if byte in _KEPT else f"%{byte:02X}" for byte in range(256))
# Names repeat on the hot path (every publish), but channel names can be per session, so the
# cache is bounded rather than growing with every name ever seen.
_CACHE_SIZE: Final = 4096


def encode_token(name: str) -> str:
    """Escape a worker or channel name into one NATS subject token.

    Args:
        name: Any non-empty text.

    Returns:
        A token of ``[A-Za-z0-9_%-]`` characters that :func:`decode_token` turns back into
        ``name``.

    Raises:
        TypeError: ``name`` is not a ``str``.
        ValueError: ``name`` is empty, or contains a lone surrogate (it has no UTF-8 form).
    """
    return _encode(name)


def decode_token(token: str) -> str:
    """Turn a token made by :func:`encode_token` back into the name.

    Args:
        token: A subject token, as :func:`encode_token` returned it.

    Returns:
        The original name.

    Raises:
        TypeError: ``token`` is not a ``str``.
        ValueError: ``token`` is not something :func:`encode_token` can return (an empty
            string, a character outside ``[A-Za-z0-9_%-]``, a malformed or lowercase escape,
            an escaped byte that did not need escaping, or bytes that are not UTF-8).
    """
    return _decode(token)


@lru_cache(maxsize=_CACHE_SIZE)
def _encode(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a name must be a str, got {type(name).__name__}: {name!r}")
    if not name:
        raise ValueError("a name must not be empty: it would give an empty NATS subject token")
    if _KEPT_RE.fullmatch(name):
        return name
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"name {name!r} contains a lone surrogate at index {exc.start}, which has no UTF-8 form"
        ) from None
    return "".join([_ESCAPES[byte] for byte in raw])


@lru_cache(maxsize=_CACHE_SIZE)
def _decode(token: str) -> str:
    if not isinstance(token, str):
        raise TypeError(f"a token must be a str, got {type(token).__name__}: {token!r}")
    if _KEPT_RE.fullmatch(token):
        return token
    if not _TOKEN_RE.fullmatch(token):
        raise ValueError(
            f"{token!r} is not a subject token: expected [A-Za-z0-9_-] characters and %XX "
            "escapes (uppercase hex)"
        )
    raw = bytearray()
    index = 0
    while index < len(token):
        if token[index] == "%":
            raw.append(int(token[index + 1 : index + 3], 16))
            index += 3
        else:
            raw.append(ord(token[index]))
            index += 1
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{token!r} does not decode to UTF-8 text: {exc.reason}") from None
    # Only one spelling per name is accepted (no "%41" for "A"), so equal names always mean
    # equal tokens, which is what subscriptions and consumer names rely on.
    if _encode(name) != token:
        raise ValueError(
            f"{token!r} is not canonical: the name {name!r} encodes as {_encode(name)!r}"
        )
    return name
