"""Recognise which provider API a request speaks, from its method and path alone."""

from __future__ import annotations

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
        if rest == suffix or (suffix == "/responses" and rest.startswith("/responses/")):
            return ApiShape(api, family, operation, rest, deployment)
    family = "anthropic" if headers_anthropic else "openai"
    return ApiShape("other", family, "other", rest, deployment)
