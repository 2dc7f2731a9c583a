"""Build the upstream URL and credential headers for a chosen provider."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from addons.api_shape import ApiShape
from codexgate.core.vault import ProviderCredential

ANTHROPIC_VERSION = "2023-06-01"


def upstream_url(
    provider: ProviderCredential, shape: ApiShape, model: str | None, query: list[tuple[str, str]]
) -> str:
    """``provider.base_url`` is the API root including its version (``…/v1``); an Anthropic
    base without ``/v1`` gets it appended. Azure with ``api_version`` uses deployment URLs for
    Chat Completions."""
    base = provider.base_url.rstrip("/")
    rest = shape.rest
    params = [(k, v) for k, v in query if k != "api-version"]
    if provider.kind == "anthropic" and not base.endswith("/v1"):
        base += "/v1"
    if provider.kind == "azure" and provider.api_version:
        params.append(("api-version", provider.api_version))
        if shape.api == "chat_completions" and not base.endswith("/v1"):
            deployment = shape.azure_deployment or model or ""
            rest = f"/deployments/{deployment}/chat/completions"
    url = base + rest
    return f"{url}?{urlencode(params)}" if params else url


def credential_headers(provider: ProviderCredential) -> dict[str, str]:
    if provider.kind == "anthropic":
        return {"x-api-key": provider.api_key}
    if provider.kind == "azure":
        return {"api-key": provider.api_key}
    return {"authorization": f"Bearer {provider.api_key}"}


def display_url(url: str) -> str:
    """URL safe to record: scheme, host, path (queries may carry secrets)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
