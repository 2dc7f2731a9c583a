"""The relay's first-event check (``has_real_event``): the same answer as parsing the whole chunk,
for any chunking and either line ending, while parsing only up to the first real event."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from addons.stream_relay import _PREAMBLE, has_real_event
from codexgate.wire.sse import SseParser, event_kind


def _event(kind: str, crlf: bool) -> bytes:
    nl = "\r\n" if crlf else "\n"
    if kind == ":":
        return f": keep-alive{nl}{nl}".encode()
    return f"event: {kind}{nl}data: {json.dumps({'type': kind})}{nl}{nl}".encode()


def _whole_chunk_rule(chunks: list[bytes]) -> int | None:
    """Index of the chunk at which the old rule (parse each chunk whole) saw a real event."""
    parser = SseParser()
    for i, chunk in enumerate(chunks):
        if any(event_kind(ev) not in _PREAMBLE for ev in parser.feed(chunk)):
            return i
    return None


KINDS = st.sampled_from([":", "ping", "response.created", "response.output_text.delta", "response.completed"])


@settings(max_examples=300, deadline=None)
@given(kinds=st.lists(KINDS, max_size=12), crlf=st.booleans(), cuts=st.lists(st.integers(0, 2000), max_size=6))
def test_same_answer_as_parsing_each_chunk_whole(kinds: list[str], crlf: bool, cuts: list[int]) -> None:
    stream = b"".join(_event(k, crlf) for k in kinds)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]
    parser = SseParser()
    found = next((i for i, chunk in enumerate(chunks) if has_real_event(parser, chunk)), None)
    assert found == _whole_chunk_rule(chunks)


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=300), max_size=6))
def test_any_bytes_give_the_whole_chunk_answer_and_never_raise(chunks: list[bytes]) -> None:
    # the relay runs this on a provider's bytes before anything is committed to the client
    parser = SseParser()
    found = next((i for i, chunk in enumerate(chunks) if has_real_event(parser, chunk)), None)
    assert found == _whole_chunk_rule(chunks)


def test_a_whole_stream_in_one_chunk_is_parsed_only_to_its_first_real_event() -> None:
    stream = _event(":", False) + _event("ping", False) + _event("response.created", False)
    stream += b"".join(_event("response.output_text.delta", False) for _ in range(50))
    stream += _event("response.completed", False)
    seen: list[str | None] = []

    class Counting(SseParser):
        def feed(self, chunk: bytes):  # type: ignore[no-untyped-def]
            events = super().feed(chunk)
            seen.extend(event_kind(ev) for ev in events)
            return events

    assert has_real_event(Counting(), stream)
    assert seen == ["ping", "response.created"]  # not the 51 events after it


def test_only_keep_alives_is_no_real_event() -> None:
    parser = SseParser()
    assert not has_real_event(parser, _event(":", False) + _event("ping", False))
    assert not has_real_event(parser, _event("ping", True))
    assert not has_real_event(parser, b"event: response.created\ndata: {}\n")  # not ended yet
    assert has_real_event(parser, b"\n")  # the next chunk ends it
    assert has_real_event(SseParser(), b'data: {"type": "response.created"}\n\n')
