"""Record simulator streams (Anthropic and Responses, same conversations) for the golden tests
in tests/test_translate_anthropic.py: `.venv/bin/python tests/data/translate/record.py`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import httpx  # noqa: E402

from tests.helpers.sim import SimProvider  # noqa: E402

out = Path(__file__).resolve().parent
tools_r = [
    {
        "type": "function",
        "name": "exec_command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
    }
]
tools_a = [{"name": "exec_command", "input_schema": tools_r[0]["parameters"]}]
cases = {
    "text": [{"role": "user", "content": "hello golden stream"}],
    "tool_call": [{"role": "user", "content": "RUN: echo golden"}],
}
with SimProvider() as sim:
    for name, msgs in cases.items():
        r = httpx.post(
            f"{sim.url}/v1/messages",
            headers={"x-api-key": sim.anthropic_key, "anthropic-version": "2023-06-01"},
            json={
                "model": "claude-sonnet-4-5",
                "max_tokens": 1000,
                "stream": True,
                "messages": msgs,
                "tools": tools_a,
            },
            timeout=30,
        )
        (out / f"anthropic_{name}.sse").write_bytes(r.content)
        r2 = httpx.post(
            f"{sim.url}/v1/responses",
            headers={"authorization": f"Bearer {sim.openai_key}"},
            json={
                "model": "gpt-5",
                "stream": True,
                "input": [{"type": "message", **m} for m in msgs],
                "tools": tools_r,
            },
            timeout=30,
        )
        (out / f"responses_{name}.sse").write_bytes(r2.content)
        print(name, len(r.content), len(r2.content))
