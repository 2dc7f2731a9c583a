"""What an API builder hands to the server: the JSON body, the SSE frames, the usage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    doc: dict[str, Any]  # the non-streaming response body
    usage: dict[str, Any]  # the usage object in this API's own shape
    events: list[bytes] = field(default_factory=list)  # SSE frames when streaming
    error_status: int | None = None  # non-streaming error_event faults become this HTTP status
