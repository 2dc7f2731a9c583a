"""Prompt-injection heuristics: instruction-override phrases in tool outputs and fetched content.

Applied only to content the developer did not write (``function_call_output``,
``custom_tool_call_output``, fetched pages); the developer's own messages legitimately say
"ignore the previous instructions". Matching is case-insensitive; scores are heuristic (0.5–0.8).
"""

from __future__ import annotations

import regex
from presidio_analyzer import Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

ENTITY = "PROMPT_INJECTION"
_FLAGS = regex.IGNORECASE | regex.DOTALL | regex.MULTILINE

_W = r"[\s*_`\"']{1,6}"  # word gap: spaces and markdown emphasis
_PATTERNS: list[tuple[str, str, float]] = [
    (
        "override",
        rf"\b(?:ignore|disregard|forget|override|bypass|skip){_W}(?:all{_W}|any{_W}|the{_W}|your{_W}|of{_W})*"
        rf"(?:previous|prior|above|earlier|preceding|former|original|system|developer|safety)"
        rf"(?:{_W}and{_W}\w+)?{_W}(?:instructions?|prompts?|rules|directives|guidelines|messages?|context)\b",
        0.8,
    ),
    (
        "new_role",
        rf"\b(?:(?:you{_W}are{_W}now|from{_W}now{_W}on{_W}you{_W}are|act{_W}as){_W}(?:an?{_W})?(?:DAN|"
        rf"(?:\w+{_W}){{0,2}}(?:unrestricted|jailbroken|unfiltered|uncensored)|in{_W}\w+{_W}mode)|"
        rf"from{_W}now{_W}on{_W}you{_W}(?:will|must){_W}(?:ignore|obey|only))\b",
        0.6,
    ),
    (
        "fake_turn",
        r"(?:<\|im_start\|>\s*system|<\|system\|>|\[/?INST\]|^\s*#{2,}\s*(?:system|new instructions)\s*:?\s*$|"
        r"</?(?:system|system_prompt|instructions)>)",
        0.6,
    ),
    (
        "new_instructions",
        rf"\b(?:new|updated|real|actual|important){_W}(?:system{_W})?instructions?{_W}?:",
        0.6,
    ),
    (
        "conceal",
        rf"\b(?:do{_W}not|don't|never){_W}(?:tell|inform|mention|reveal|show)(?:{_W}this)?{_W}(?:to{_W})?"
        rf"(?:the{_W})?user\b",
        0.7,
    ),
    (
        "exfiltrate",
        rf"\b(?:send|post|upload|exfiltrate|leak|forward){_W}(?:\w+{_W}){{0,4}}(?:api{_W}keys?|secrets?|"
        rf"credentials|tokens?|passwords?|\.env|ssh{_W}keys?|environment{_W}variables){_W}(?:\w+{_W}){{0,3}}"
        rf"(?:to|at){_W}(?:https?://|the{_W}(?:following|url|server|endpoint))",
        0.8,
    ),
]


_GATES: dict[str, tuple[str, ...]] = {
    "override": ("ignore", "disregard", "forget", "override", "bypass", "skip"),
    "new_role": ("now", "act as"),
    "fake_turn": ("<|", "inst]", "# system", "#system", "# new instructions", "<system", "</system",
                  "<instructions", "</instructions"),
    "new_instructions": ("instruction",),
    "conceal": ("user",),
    "exfiltrate": ("send", "post", "upload", "exfiltrate", "leak", "forward"),
}


class InjectionRecognizer(PatternRecognizer):
    """Case-insensitive instruction-override phrases (one entity, ``PROMPT_INJECTION``)."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity=ENTITY,
            name="codexgate_prompt_injection",
            patterns=[Pattern(f"injection_{name}", rx, score) for name, rx, score in _PATTERNS],
            global_regex_flags=_FLAGS,
        )

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        # Case-insensitive alternations are slow on long text: run each pattern only when one of
        # its literal trigger words occurs in the lower-cased text.
        lowered = text.lower()
        out: list[RecognizerResult] = []
        for pattern in self.patterns:
            gates = _GATES[pattern.name.removeprefix("injection_")]
            if not any(g in lowered for g in gates):
                continue
            if pattern.compiled_regex is None or pattern.compiled_with_flags != _FLAGS:
                pattern.compiled_regex = regex.compile(pattern.regex, _FLAGS)
                pattern.compiled_with_flags = _FLAGS
            for m in pattern.compiled_regex.finditer(text):
                if m.end() > m.start():
                    out.append(RecognizerResult(ENTITY, m.start(), m.end(), pattern.score,
                                                recognition_metadata={"recognizer_name": self.name}))
        return out
