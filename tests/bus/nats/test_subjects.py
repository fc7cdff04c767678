"""Names become NATS subject tokens: safe, reversible, injective, and valid for a real server."""

from __future__ import annotations

import re
import uuid

import nats
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from natsbus.bus.nats.subjects import decode_token, encode_token

TIMEOUT = 10.0
SAFE_TOKEN = re.compile(r"[A-Za-z0-9_%-]+")
# Text without lone surrogates: every name that has a UTF-8 form.
names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1)

AWKWARD_NAMES = [
    "worker.with.dots",
    "two words",
    "tab\there",
    "new\nline",
    "*",
    ">",
    "a.*.>",
    "%",
    "%25",
    "100%",
    "Grüße",
    "日本語の名前",
    "🚀 rocket",
    "nul\x00byte",
    "slash/and\\back",
    "A",
    "%41",
]


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("transcriber-2", "transcriber-2"),
        ("snake_case_OK", "snake_case_OK"),
        ("a.b", "a%2Eb"),
        ("my worker.v2", "my%20worker%2Ev2"),
        ("*", "%2A"),
        (">", "%3E"),
        ("%", "%25"),
        ("%25", "%2525"),
        ("é", "%C3%A9"),
        ("🚀", "%F0%9F%9A%80"),
        ("\t\n\r\x00", "%09%0A%0D%00"),
    ],
)
def test_known_encodings(name: str, token: str) -> None:
    assert encode_token(name) == token
    assert decode_token(token) == name


@given(names)
@example("worker.with.dots")
@example("%")
def test_round_trip(name: str) -> None:
    assert decode_token(encode_token(name)) == name


@given(names)
def test_tokens_only_contain_safe_characters(name: str) -> None:
    token = encode_token(name)
    assert SAFE_TOKEN.fullmatch(token), token
    assert not any(char in token for char in ".*> \t\r\n/\\")


@given(st.from_regex(r"[A-Za-z0-9_-]+", fullmatch=True))
def test_safe_names_stay_readable(name: str) -> None:
    assert encode_token(name) == name


@given(names, names)
@example("%", "%25")
@example("a.b", "a%2Eb")
@example("A", "%41")
def test_different_names_give_different_tokens(first: str, second: str) -> None:
    if first != second:
        assert encode_token(first) != encode_token(second)
    else:
        assert encode_token(first) == encode_token(second)


@given(st.lists(names, unique=True, min_size=2, max_size=50))
def test_many_names_give_as_many_tokens(batch: list[str]) -> None:
    assert len({encode_token(name) for name in batch}) == len(batch)


@given(st.text(st.sampled_from("AZaz09_-%.*> 2EFe"), min_size=1, max_size=12))
@example("%41")
@example("%2e")
def test_decode_accepts_exactly_what_encode_produces(token: str) -> None:
    # Whatever decodes must be the one spelling encode_token gives that name, so equal names
    # always mean equal subjects; everything else is refused (with ValueError, nothing else).
    try:
        name = decode_token(token)
    except ValueError:
        return
    assert encode_token(name) == token


def test_empty_name_is_refused_with_a_precise_message() -> None:
    with pytest.raises(ValueError, match="must not be empty: it would give an empty NATS subject"):
        encode_token("")


def test_lone_surrogate_is_refused() -> None:
    with pytest.raises(ValueError, match="lone surrogate at index 1"):
        encode_token("a\ud800b")


def test_non_str_is_refused() -> None:
    with pytest.raises(TypeError, match="must be a str, got bytes"):
        encode_token(b"worker")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a str, got int"):
        decode_token(7)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "not a subject token"),
        ("a.b", "not a subject token"),
        ("a b", "not a subject token"),
        ("%2", "not a subject token"),
        ("%zz", "not a subject token"),
        ("%2e", "not a subject token"),  # escapes are uppercase hex
        ("%41", "not canonical"),  # "A" is never escaped
        ("%2D", "not canonical"),  # nor is "-"
        ("%FF", "does not decode to UTF-8"),
        ("%C3", "does not decode to UTF-8"),  # truncated sequence
    ],
)
def test_decode_refuses_what_encode_never_produces(token: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_token(token)


async def test_tokens_are_single_valid_subject_tokens_on_a_real_server(nats_url: str) -> None:
    prefix = f"x{uuid.uuid4().hex}"
    client = await nats.connect(nats_url)
    try:
        # Every awkward name must land in exactly one token: "prefix.*" matches one token only.
        one_token = await client.subscribe(f"{prefix}.*")
        subs = [await client.subscribe(f"{prefix}.{encode_token(name)}") for name in AWKWARD_NAMES]
        for name in AWKWARD_NAMES:
            await client.publish(f"{prefix}.{encode_token(name)}", name.encode())
        await client.flush()

        for name in AWKWARD_NAMES:
            msg = await one_token.next_msg(timeout=TIMEOUT)
            assert msg.data == name.encode()
            assert decode_token(msg.subject.split(".", 1)[1]) == name

        # Messages from one connection arrive in order, so if a subscription had also matched
        # another name's earlier message, its first message would be that one, not its own.
        for name, sub in zip(AWKWARD_NAMES, subs, strict=True):
            msg = await sub.next_msg(timeout=TIMEOUT)
            assert msg.data == name.encode()
        # ...and none matched a later one: one more round, each sees its own message first.
        for name in AWKWARD_NAMES:
            await client.publish(f"{prefix}.{encode_token(name)}", b"again:" + name.encode())
        for name, sub in zip(AWKWARD_NAMES, subs, strict=True):
            msg = await sub.next_msg(timeout=TIMEOUT)
            assert msg.data == b"again:" + name.encode()
    finally:
        await client.close()
