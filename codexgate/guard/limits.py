"""Size limits and banned terms.

Size limits apply to a whole call (``check_call_limits``); banned terms/regexes are a per-policy
presidio recognizer (deny list + regexes) applied to every item like any other detector.
The token count is an estimate (UTF-8 bytes / 4, the usual rule of thumb for BPE tokenizers on
English and code), good enough for a ceiling, never used for billing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import regex
from presidio_analyzer import Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

BANNED_ENTITY = "BANNED_TERM"
_FLAGS = regex.IGNORECASE | regex.MULTILINE


def estimate_tokens(n_bytes: int) -> int:
    """Estimated tokens for ``n_bytes`` bytes of UTF-8 text (ceil(bytes / 4))."""
    return (n_bytes + 3) // 4


@dataclass(frozen=True)
class LimitHit:
    """A call over a size limit: ``entity`` is MAX_BYTES or MAX_INPUT_TOKENS."""

    entity: str
    limit: int
    observed: int


def check_call_limits(
    body_bytes: int, input_bytes: int, max_bytes: int | None, max_input_tokens: int | None
) -> list[LimitHit]:
    """Limit hits for a call whose request body has ``body_bytes`` and whose input text (instructions
    and items) has ``input_bytes`` UTF-8 bytes. ``None`` limits are not checked."""
    hits = []
    if max_bytes is not None and body_bytes > max_bytes:
        hits.append(LimitHit("MAX_BYTES", max_bytes, body_bytes))
    tokens = estimate_tokens(input_bytes)
    if max_input_tokens is not None and tokens > max_input_tokens:
        hits.append(LimitHit("MAX_INPUT_TOKENS", max_input_tokens, tokens))
    return hits


class BannedTermsRecognizer(PatternRecognizer):
    """Banned words (whole words, case-insensitive) and regexes (case-insensitive).

    A regex that does not compile raises ``ValueError`` naming its position in the list, not its
    text (a banned regex may itself be confidential)."""

    def __init__(self, terms: Sequence[str] = (), regexes: Sequence[str] = ()) -> None:
        patterns = []
        for i, rx in enumerate(regexes):
            try:
                regex.compile(rx, _FLAGS)
            except regex.error:
                raise ValueError(f"banned regex #{i + 1} does not compile") from None
            patterns.append(Pattern(f"banned_regex_{i}", rx, 1.0))
        super().__init__(
            supported_entity=BANNED_ENTITY,
            name="codexgate_banned_terms",
            patterns=patterns or [Pattern("banned_nothing", r"(?!x)x", 0.0)],
            deny_list=list(terms) or None,
            deny_list_score=1.0,
            global_regex_flags=_FLAGS,
        )
        digest = hashlib.sha256()
        for part in (*terms, "\0", *regexes):
            digest.update(part.encode() + b"\0")
        self.fingerprint = digest.hexdigest()[:16]
        self.empty = not terms and not regexes

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        if self.empty:
            return []
        return super().analyze(text, entities, nlp_artifacts, _FLAGS)
