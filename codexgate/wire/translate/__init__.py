"""Translation between API families, so a client of one API can be served by a provider of
another: pure functions and incremental stream translators over ``codexgate.wire``.

- ``anthropic``: a Responses request -> an Anthropic Messages request; Anthropic SSE events and
  JSON answers (incl. errors) -> Responses events and objects.

What cannot be translated is listed in ``Translated.dropped`` (one short note per kind of
thing dropped) so the caller can record the decision; see ``docs/TRANSLATION.md``.

Layer: imports only ``codexgate.core``, ``codexgate.wire`` and the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Translated:
    """A translated request body and what was left out of it."""

    body: dict[str, Any]
    dropped: list[str] = field(default_factory=list)
    custom_tools: frozenset[str] = frozenset()  # names of freeform tools (one string input)

    def note(self, what: str) -> None:
        if what not in self.dropped:
            self.dropped.append(what)


__all__ = ["Translated"]
