"""What the simulated model answers: deterministic, from the conversation alone.

Works on Responses input items, Chat messages and Anthropic messages alike (the shapes are
told apart item by item)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

RUN_PREFIX = "RUN:"
ECHO_CHARS = 40
MAX_QUOTED_OUTPUT = 500
# Shell-like tool names in order of preference; Codex 0.171 offers ``exec_command``.
SHELL_TOOL_NAMES = ("exec_command", "shell_command", "shell", "bash", "run_shell", "local_shell")
COMMAND_PROPERTIES = ("cmd", "command", "script", "commands")
CODEX_OUTPUT_MARKER = "\nOutput:\n"
# A user line ``EMIT: private-key`` makes the model answer with a (fake, deterministic) PEM
# private key block: for output guardrails that must cut such a stream.
EMIT_PRIVATE_KEY = "EMIT: private-key"


@dataclass(frozen=True)
class Tool:
    """A tool offered in the request, whatever the wire format."""

    name: str
    kind: str  # "function" (JSON arguments) or "custom" (free-form text input)
    schema: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolCall:
    name: str
    kind: str
    arguments: str  # JSON text for functions, the raw input for custom tools


@dataclass(frozen=True)
class Decision:
    text: str | None = None
    call: ToolCall | None = None

    @property
    def output_chars(self) -> str:
        """What the output token count is computed from: answer text or tool arguments."""
        return self.call.arguments if self.call else (self.text or "")


def content_text(content: Any) -> str:
    """Text of a message ``content``: a string or a list of text parts (other parts ignored)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str) and p.get("type") != "tool_result"
        )
    return ""


def user_texts(items: list[Any]) -> list[str]:
    texts = [content_text(i.get("content")) for i in items if isinstance(i, dict) and i.get("role") == "user"]
    return [t for t in texts if t.strip()]


def tool_outputs(items: list[Any]) -> list[str]:
    """Tool results already in the conversation, in order (all three wire formats)."""
    outputs: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("type") in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
            out = item.get("output")
            outputs.append(out if isinstance(out, str) else content_text(out) or json.dumps(out))
        elif item.get("role") == "tool":
            outputs.append(content_text(item.get("content")))
        elif item.get("role") == "user" and isinstance(item.get("content"), list):
            for block in item["content"]:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    inner = block.get("content")
                    outputs.append(inner if isinstance(inner, str) else content_text(inner))
    return outputs


def run_directives(items: list[Any]) -> list[str]:
    """Commands from ``RUN: <command>`` lines of the first user message that has any."""
    for text in user_texts(items):
        commands = [
            line.strip()[len(RUN_PREFIX) :].strip()
            for line in text.splitlines()
            if line.strip().startswith(RUN_PREFIX) and line.strip()[len(RUN_PREFIX) :].strip()
        ]
        if commands:
            return commands
    return []


def offered_tools(tools: Any) -> list[Tool]:
    """Responses ``{"type":"function","name","parameters"}`` / ``{"type":"custom","name"}``,
    Chat ``{"type":"function","function":{...}}``, Anthropic ``{"name","input_schema"}`` and its
    ``bash_*`` tool. Namespaces and hosted tools (web_search, ...) are not shell candidates."""
    found: list[Tool] = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        kind = tool.get("type")
        if kind == "function" and isinstance(tool.get("function"), dict):
            fn = tool["function"]
            found.append(Tool(str(fn.get("name")), "function", fn.get("parameters") or {}))
        elif kind == "function" and tool.get("name"):
            found.append(Tool(str(tool["name"]), "function", tool.get("parameters") or {}))
        elif kind == "custom" and tool.get("name") and "input_schema" not in tool:
            found.append(Tool(str(tool["name"]), "custom"))
        elif "input_schema" in tool and tool.get("name"):
            found.append(Tool(str(tool["name"]), "function", tool.get("input_schema") or {}))
        elif isinstance(kind, str) and kind.startswith("bash_"):
            schema = {"properties": {"command": {"type": "string"}}}
            found.append(Tool(str(tool.get("name") or "bash"), "function", schema))
    return found


def _properties(tool: Tool) -> dict[str, Any]:
    props = tool.schema.get("properties")
    return props if isinstance(props, dict) else {}


def pick_shell_tool(tools: list[Tool]) -> Tool | None:
    by_name = {t.name: t for t in tools}
    for name in SHELL_TOOL_NAMES:
        if name in by_name:
            return by_name[name]
    for tool in tools:
        if any(p in _properties(tool) for p in COMMAND_PROPERTIES):
            return tool
    return tools[0] if tools else None


def shell_call(tool: Tool, command: str) -> ToolCall:
    """Arguments shaped by the tool's own schema: a ``cmd``/``command`` string, or an argv
    array ``["bash", "-lc", command]`` when the property is an array."""
    if tool.kind == "custom":
        return ToolCall(tool.name, "custom", command)
    props = _properties(tool)
    key = next((p for p in COMMAND_PROPERTIES if p in props), None)
    if key is None:
        required = tool.schema.get("required") or []
        key = required[0] if required else next(iter(props), "command")
    spec = props.get(key) if isinstance(props.get(key), dict) else {}
    value: Any = ["bash", "-lc", command] if spec.get("type") == "array" else command
    return ToolCall(tool.name, "function", json.dumps({key: value}))


def shown_output(output: str) -> str:
    """The command's own output: Codex wraps it (``Chunk ID ... Output:\\n<stdout>``)."""
    if CODEX_OUTPUT_MARKER in output:
        output = output.split(CODEX_OUTPUT_MARKER, 1)[1]
    return output.strip()[:MAX_QUOTED_OUTPUT]


def decide(items: list[Any], tools: Any) -> Decision:
    """Plain prompt: ``sim: <first 40 chars of the last user text>``. ``RUN:`` directives: the
    k-th call (k = tool outputs already present) runs the k-th command; then a final answer
    quoting the last tool output."""
    commands = run_directives(items)
    if commands:
        outputs = tool_outputs(items)
        if len(outputs) < len(commands):
            tool = pick_shell_tool(offered_tools(tools))
            command = commands[len(outputs)]
            if tool is None:
                return Decision(text=f"sim: cannot run {command!r}: no tool offered")
            return Decision(call=shell_call(tool, command))
        last = shown_output(outputs[-1])
        return Decision(text=f"sim: ran {len(commands)} command(s); last output: {last}")
    texts = user_texts(items)
    if any(line.strip() == EMIT_PRIVATE_KEY for t in texts for line in t.splitlines()):
        return Decision(text=f"sim: here is the key you asked for:\n{fake_private_key()}\n")
    return Decision(text=f"sim: {(texts[-1] if texts else '').strip()[:ECHO_CHARS]}")


def fake_private_key(lines: int = 12) -> str:
    """A PEM-shaped RSA private key block with deterministic filler (not a usable key)."""
    body = b"".join(hashlib.sha512(f"codexgate-sim-{i}".encode()).digest() for i in range(lines))
    b64 = base64.b64encode(body).decode()
    rows = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(rows) + "\n-----END RSA PRIVATE KEY-----"
