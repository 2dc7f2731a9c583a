"""``credentials.header_map`` (one pass over a request's headers) answers every lookup as
mitmproxy's ``Headers.get`` does, and ``take_credentials`` still removes every credential."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from mitmproxy import http

from addons.credentials import CREDENTIAL_HEADERS, header_map, take_credentials

NAMES = ["Authorization", "x-api-key", "Session-Id", "session-id", "SESSION-ID", "Cookie", "originator",
         "x-codex-turn-metadata", "Content-Encoding", "api-key", "X-Ünï", "a"]
values = st.binary(max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b)
fields = st.lists(st.tuples(st.sampled_from(NAMES).map(str.encode), values), max_size=12)


@given(fields)
def test_same_answers_as_headers_get(pairs):
    headers = http.Headers(pairs)
    seen = header_map(headers)
    for name in {n.lower() for n in NAMES} | {"absent"}:
        assert seen.get(name) == headers.get(name)
        assert (name in seen) == (name in headers)
    # names lower-cased as bytes, as mitmproxy compares them (ASCII only)
    assert set(seen) == {k.lower().decode("utf-8", "surrogateescape") for k, _ in headers.fields}


@given(fields)
def test_take_credentials_removes_every_credential_header(pairs):
    req = http.Request.make("POST", "http://127.0.0.1/v1/responses", b"", http.Headers(pairs))
    kept = [(k, v) for k, v in req.headers.fields if k.lower().decode() not in CREDENTIAL_HEADERS]
    take_credentials(req, "reverse")
    assert not any(name in req.headers for name in CREDENTIAL_HEADERS)
    assert list(req.headers.fields) == kept  # everything else stays, in order


def test_key_read_before_removal():
    req = http.Request.make("POST", "http://127.0.0.1/v1/responses", b"",
                            {"Authorization": "Bearer cgk_abc", "x-other": "1"})
    assert take_credentials(req, "reverse", header_map(req.headers)) == "cgk_abc"
    assert list(req.headers.keys()) == ["x-other", "content-length"]
