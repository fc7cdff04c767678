"""Keeping secrets out of logs and errors: server URLs as they may be shown."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["REDACTED", "redact_url"]

REDACTED: Final = "***"
"""What a secret is replaced with."""


def redact_url(url: str) -> str:
    """A server URL with its password (or its token, ``nats://<token>@host``) replaced.

    Args:
        url: A URL, with or without credentials.
    """
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    shown = f"{user}:{REDACTED}" if colon else REDACTED
    return urlunsplit(parts._replace(netloc=f"{shown}@{host}"))
