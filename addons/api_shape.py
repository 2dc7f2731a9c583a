"""Recognise which provider API a request speaks, from its method and path alone, and which
method + path pairs the gateway forwards at all (an allowlist: only known model endpoints
ever get a provider credential)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# (path suffix after an optional /v1 or /openai[/v1] prefix, api type, error family, operation)
_ROUTES: tuple[tuple[str, str, str, str], ...] = (
    ("/responses", "responses", "openai", "chat"),
    ("/chat/completions", "chat_completions", "openai", "chat"),
    ("/messages", "anthropic_messages", "anthropic", "chat"),
    ("/completions", "completions", "openai", "text_completion"),
    ("/embeddings", "embeddings", "openai", "embeddings"),
    ("/models", "models", "openai", "list_models"),
)


@dataclass(frozen=True, slots=True)
class ApiShape:
    api: str  # responses | chat_completions | anthropic_messages | completions | embeddings | models | other
    family: str  # openai | anthropic: which error format the client understands
    operation: str  # OTel gen_ai.operation.name
    rest: str  # path after the version prefix, e.g. "/responses" (query excluded)
    azure_deployment: str | None = None

    @property
    def is_model_call(self) -> bool:
        return self.api in (
            "responses",
            "chat_completions",
            "anthropic_messages",
            "completions",
            "embeddings",
        )


def classify(path: str, headers_anthropic: bool = False) -> ApiShape:
    """Classify a request path such as ``/v1/responses``, ``/responses``, ``/v1/messages`` or
    ``/openai/deployments/NAME/chat/completions``."""
    bare = path.split("?", 1)[0].rstrip("/") or "/"
    deployment = None
    rest = bare
    if rest.startswith("/openai/deployments/"):
        parts = rest.split("/", 4)  # '', openai, deployments, NAME, tail
        deployment = parts[3] if len(parts) > 3 else None
        rest = "/" + parts[4] if len(parts) > 4 else "/"
    elif rest.startswith("/openai/"):
        rest = rest[len("/openai") :]
    if rest.startswith("/v1/") or rest == "/v1":
        rest = rest[3:] or "/"
    for suffix, api, family, operation in _ROUTES:
        if rest == suffix or (suffix in ("/responses", "/models") and rest.startswith(suffix + "/")):
            return ApiShape(api, family, operation, rest, deployment)
    family = "anthropic" if headers_anthropic else "openai"
    return ApiShape("other", family, "other", rest, deployment)


# The endpoints that get a provider credential: (method, path after the version prefix).
_ALLOWED: dict[str, frozenset[str]] = {
    "/responses": frozenset({"POST"}),
    "/responses/compact": frozenset({"POST"}),
    "/chat/completions": frozenset({"POST"}),
    "/completions": frozenset({"POST"}),
    "/embeddings": frozenset({"POST"}),
    "/messages": frozenset({"POST"}),
    "/models": frozenset({"GET"}),
}
_AZURE_DEPLOYMENT_RESTS = frozenset({"/chat/completions", "/completions", "/embeddings"})
_MODEL_ID = re.compile(r"^/models/[A-Za-z0-9._:\-]{1,128}$")
_DEPLOYMENT = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
# separators and dot-segments hidden by percent-encoding, backslashes, control characters
_SUSPICIOUS = re.compile(r"%(?:2[eEfF]|5[cC]|00)|\\|[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class EndpointRefusal:
    status: int  # 400 malformed path, 404 unknown endpoint, 405 method not allowed
    code: str
    message: str
    allow: str | None = None  # the Allow header of a 405


def check_endpoint(method: str, path: str, shape: ApiShape) -> EndpointRefusal | None:
    """None when ``method path`` is an endpoint the gateway forwards with credentials.

    The path is checked as sent: no ``..`` or ``.`` segments, no empty segments (``//``), no
    percent-encoded separators or dots, no backslashes or control characters — a path that
    needs normalising is refused rather than normalised, so what is checked is what is sent."""
    bare = path.split("?", 1)[0]
    segments = bare.split("/")[1:]
    if (
        not bare.startswith("/")
        or _SUSPICIOUS.search(bare)
        or any(seg in ("", ".", "..") for seg in segments[:-1])
        or (segments and segments[-1] in (".", ".."))
    ):
        return EndpointRefusal(400, "invalid_path", "codexgate: malformed request path.")
    if shape.azure_deployment is not None and (
        not _DEPLOYMENT.match(shape.azure_deployment) or shape.rest not in _AZURE_DEPLOYMENT_RESTS
    ):
        return EndpointRefusal(404, "unknown_endpoint", "codexgate: unknown Azure deployment endpoint.")
    rest = shape.rest
    methods = _ALLOWED.get(rest)
    if methods is None and _MODEL_ID.match(rest):
        methods = frozenset({"GET"})
    if methods is None:
        return EndpointRefusal(
            404,
            "unknown_endpoint",
            f"codexgate does not serve {rest[:100]!r}; it serves the model APIs "
            "(/v1/responses, /v1/chat/completions, /v1/messages, /v1/embeddings, /v1/models).",
        )
    if method.upper() not in methods:
        allow = ", ".join(sorted(methods))
        return EndpointRefusal(
            405, "method_not_allowed", f"codexgate: {method[:10]} is not allowed on {rest}; use {allow}.", allow
        )
    return None
