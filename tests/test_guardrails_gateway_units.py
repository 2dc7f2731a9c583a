"""The guardrails addon's pieces with the real engine (no gateway process): the output stream
guard on Responses and Anthropic SSE bytes as the simulator and the wire encoders produce them,
storage redaction (``privacy_mode=redacted``) item by item, and trace finding rows."""

from __future__ import annotations

import concurrent.futures
import json
import secrets
from collections.abc import Iterator

import pytest

from addons.guardrails import StreamGuard, finding_row
from addons.privacy import Privacy
from codexgate.guard.policy import Policy, Rule
from codexgate.guard.service import Guard
from codexgate.sim.scenario import fake_private_key
from codexgate.wire import responses as wire_responses
from codexgate.wire.sse import pieces


@pytest.fixture(scope="module")
def guard() -> Iterator[Guard]:
    g = Guard(workers=1)
    yield g
    g.close()


@pytest.fixture(scope="module")
def pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    p = concurrent.futures.ThreadPoolExecutor(1)
    yield p
    p.shutdown()


def aws_key() -> str:
    return "AKIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))


def responses_stream(text: str) -> list[bytes]:
    """The SSE frames of a completed Responses stream answering ``text`` (the wire encoder's)."""
    message = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": text, "annotations": []}]}
    final = {"id": "resp_1", "object": "response", "status": "completed", "output": [message], "usage": None}
    return wire_responses.encode_events(final)


def anthropic_stream(text: str) -> list[bytes]:
    frames = [{"type": "message_start", "message": {"id": "msg_1", "role": "assistant", "content": []}},
              {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}]
    frames += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
               for p in pieces(text, max_size=24)]
    frames += [{"type": "content_block_stop", "index": 0}, {"type": "message_stop"}]
    return [f"event: {f['type']}\ndata: {json.dumps(f)}\n\n".encode() for f in frames]


def run_filter(sg: StreamGuard, frames: list[bytes]) -> bytes:
    out = b"".join(sg(f) for f in frames)
    return out + sg(b"")


@pytest.mark.parametrize("api", ["responses", "messages"])
def test_stream_guard_ends_a_stream_that_emits_a_private_key(guard: Guard, pool, api: str) -> None:
    text = "Here you go:\n" + fake_private_key() + "\nkeep it safe."
    frames = responses_stream(text) if api == "responses" else anthropic_stream(text)
    sg = StreamGuard(guard, Policy(rules={"secrets": Rule("block")}), api, pool)
    out = run_filter(sg, frames).decode()
    assert sg.blocked is not None and sg.blocked.entity == "PRIVATE_KEY"
    if api == "responses":
        assert "response.completed" not in out and out.rstrip().endswith("}")
        last = json.loads(out.strip().split("data: ")[-1])
        assert last["type"] == "response.failed" and last["response"]["error"]["code"] == "invalid_prompt"
    else:
        assert "message_stop" not in out
        last = json.loads(out.strip().split("data: ")[-1])
        assert last["type"] == "error" and "PRIVATE_KEY" in last["error"]["message"]
    assert "secrets detector found PRIVATE_KEY" in out
    rows = [finding_row(f) for f in sg.findings]
    assert rows[0]["stage"] == "output" and rows[0]["action"] == "blocked"


def test_stream_guard_flag_forwards_every_byte_and_records(guard: Guard, pool) -> None:
    key = aws_key()
    frames = responses_stream(f"the key is {key} as requested")
    sg = StreamGuard(guard, Policy(rules={"secrets": Rule("flag")}), "responses", pool)
    assert run_filter(sg, frames) == b"".join(frames)
    sg.wait(5)
    assert [(f.entity, f.action) for f in sg.findings] == [("AWS_ACCESS_KEY", "flag")]


def test_storage_redaction_uses_the_engine_with_session_stable_placeholders(guard: Guard) -> None:
    privacy = Privacy(guard)
    key, mail = aws_key(), "ines.moreau@orange.fr"
    body = {"model": "m", "instructions": "be brief", "metadata": {"owner": mail},
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                      {"type": "function_call_output", "call_id": "c1", "output": f"{key} {mail}"}]}
    stored = privacy.redact_body(body, json.dumps(body), "responses", "sess-1")
    assert stored is not None and key not in stored and mail not in stored
    doc = json.loads(stored)
    assert doc["input"][1]["output"] == "<AWS_ACCESS_KEY_1> <EMAIL_ADDRESS_1>"
    assert doc["metadata"] == {"owner": "<EMAIL_ADDRESS_1>"}  # the rest of the body, same session numbering
    again = privacy.redact_items_json(body["input"], "sess-1")
    assert again is not None and "<AWS_ACCESS_KEY_1> <EMAIL_ADDRESS_1>" in again
    assert privacy.redact(f"mail {mail}", None) == "mail <EMAIL_ADDRESS_1>"


def test_known_values_mask_with_the_forwarded_placeholders(guard: Guard, pool) -> None:
    """What the trace row uses for a call with findings: each matched value (request and stream)
    replaced by the same placeholder the provider saw, also inside JSON text; values never show."""
    from addons.guardrails import KnownValues

    key, mail = aws_key(), "li.wei@fastmail.com"
    findings = guard.redactor.redact(f"{key} and {mail}", "s-mask")[1]
    kv = KnownValues()
    item = {"type": "function_call_output", "call_id": "c", "output": f"{key} and {mail}"}
    from codexgate.guard.scanner import Finding

    kv.add_from_items([Finding(f.detector, f.entity, "flag", "pre", f.score, 0, 0, f.start, f.end, "")
                       for f in findings], [item], None)
    assert key not in repr(kv) and mail not in repr(kv)
    mask = kv.mask(guard, "s-mask")
    forwarded = guard.redactor.redact(f"{key} and {mail}", "s-mask")[0]
    assert mask(f"echo: {key} and {mail}") == f"echo: {forwarded}"
    assert mask(json.dumps({"text": f'"{key}"'})) == json.dumps({"text": '"<AWS_ACCESS_KEY_1>"'})
    # a stream finding's value (a key arriving over many deltas) is read from the streamed text
    pem = fake_private_key()
    sg = StreamGuard(guard, Policy(rules={"secrets": Rule("flag")}), "responses", pool, kv)
    run_filter(sg, responses_stream(f"key:\n{pem}\n"))
    sg.settle(None, 5)
    assert kv.mask(guard, "s-mask")(f"stored {pem}") == "stored <PRIVATE_KEY_1>"
