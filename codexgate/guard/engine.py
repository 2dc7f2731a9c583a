"""The detection engine: one presidio ``AnalyzerEngine`` for PII, secrets, injection, banned terms.

Built once at start-up (``GuardEngine()``, ~0.3 s): presidio's ``NoOpNlpEngine`` (no spaCy model,
no download) and pattern recognizers only; e-mail validation uses ``tldextract`` with its bundled
public-suffix snapshot and no network fetch. ``detect`` is thread-safe (recognizers keep no
per-call state; compiled regexes are shared) and the ``regex`` module releases the GIL while
matching, so scans can run on a thread pool.

Invariant: a ``Hit`` holds a span and an entity, never the matched text.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import regex
import tldextract
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts, NoOpNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UrlRecognizer,
    UsSsnRecognizer,
)

from codexgate.guard.injection import ENTITY as INJECTION_ENTITY
from codexgate.guard.injection import InjectionRecognizer
from codexgate.guard.limits import BANNED_ENTITY, BannedTermsRecognizer
from codexgate.guard.names import BANNED, DETECTORS, INJECTION, LIMITS, PII, SECRETS, TEXT_DETECTORS
from codexgate.guard.secrets import SECRET_ENTITIES, secret_recognizers

# presidio logs every analysed entity list at INFO and regex timings at DEBUG; nothing of ours
# goes there, but its warnings (recognizer load problems) stay visible.
logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)

__all__ = ["BANNED", "DETECTORS", "INJECTION", "LIMITS", "PII", "SECRETS", "TEXT_DETECTORS", "GuardEngine", "Hit"]


PII_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "US_SSN",
    "URL",
)
# URL is noisy on code (every link in a README); off unless asked for.
DEFAULT_PII_ENTITIES: tuple[str, ...] = tuple(e for e in PII_ENTITIES if e != "URL")

ENTITY_DETECTOR: dict[str, str] = {
    **{e: PII for e in PII_ENTITIES},
    **{e: SECRETS for e in SECRET_ENTITIES},
    INJECTION_ENTITY: INJECTION,
    BANNED_ENTITY: BANNED,
}

# Minimum score per entity below which a presidio result is dropped. Chosen from the labelled
# corpus (tests/data/guard_corpus.jsonl): phone numbers need presidio's 0.4 "possible" level
# because NoOpNlpEngine gives no context boost; US SSN patterns without context score 0.05–0.5.
MIN_SCORE: dict[str, float] = {"US_SSN": 0.5, "PHONE_NUMBER": 0.4}
DEFAULT_MIN_SCORE = 0.5

# RFC 2606 / 6761 reserved names: addresses there are fixtures, never personal data.
_RESERVED_DOMAINS = ("example.com", "example.org", "example.net")
_RESERVED_SUFFIXES = (".test", ".example", ".invalid", ".localhost", ".local")

# Card numbers published by payment processors for testing (Luhn-valid, never real cards).
TEST_CARD_NUMBERS = frozenset(
    {
        "4111111111111111", "4242424242424242", "4012888888881881", "4000056655665556",
        "4222222222222", "5555555555554444", "5105105105105100", "2223003122003222",
        "5200828282828210", "378282246310005", "371449635398431", "378734493671000",
        "6011111111111117", "6011000990139424", "3056930009020004", "30569309025904",
        "38520000023237", "3566002020360505", "3530111333300000", "6200000000000005",
        "4000000000000002", "4000000000009995", "4000002500003155", "4000000000000077",
    }
)


class OfflineEmailRecognizer(EmailRecognizer):
    """presidio's e-mail recognizer with ``tldextract`` on its bundled suffix list (no network),
    and addresses at reserved fixture domains (``user@example.com``) rejected."""

    _EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        # ``scheme://user:password@host`` and ``https://token@github.com`` are URL credentials
        # (the secrets detector's business), not e-mail addresses.
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        out = []
        for r in results:
            # presidio's local-part class admits ``=/{}|'`` etc.: ``OWNER=a@b.io`` would make
            # ``OWNER=a`` the local part. Trim to the last such separator.
            at = text.find("@", r.start, r.end)
            cut = max(text.rfind(c, r.start, at) for c in "=/{}|'`?^!#$&*~")
            if cut >= r.start:
                r.start = cut + 1
            if r.start >= at:
                continue
            token_start = max(text.rfind(c, 0, r.start) for c in " \t\n\"'<(=,")
            if "://" not in text[token_start + 1 : r.start + 1] and not text[max(0, r.start - 3) : r.start].endswith(
                "://"
            ):
                out.append(r)
        return out

    def validate_result(self, pattern_text: str) -> bool:
        domain = pattern_text.rsplit("@", 1)[-1].lower()
        if domain in _RESERVED_DOMAINS or domain.endswith(_RESERVED_SUFFIXES):
            return False
        if any(domain.endswith("." + d) for d in _RESERVED_DOMAINS):
            return False
        return self._EXTRACT(pattern_text).fqdn != ""


class UsefulIpRecognizer(IpRecognizer):
    """presidio's IP recognizer minus addresses that identify nobody: loopback, unspecified,
    multicast, link-local and reserved (``127.0.0.1``, ``0.0.0.0``, ``::1``, ``169.254.x.x``).

    Its IPv6 regex is costly; it runs only when the text has a dotted quad or a hex ``:`` group."""

    _GATE = regex.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d|[0-9A-Fa-f]{1,4}::?[0-9A-Fa-f]{1,4}:")

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        if not self._GATE.search(text):
            return []
        return super().analyze(text, entities, nlp_artifacts, regex_flags)

    def invalidate_result(self, pattern_text: str) -> bool:
        try:
            ip = ipaddress.ip_address(pattern_text.split("/", 1)[0].strip("[]"))
        except ValueError:
            return False
        return ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_link_local or ip.is_reserved


class FixtureAwareCreditCardRecognizer(CreditCardRecognizer):
    """presidio's card recognizer (Luhn checked) minus the processors' published test numbers."""

    def invalidate_result(self, pattern_text: str) -> bool:
        digits = "".join(c for c in pattern_text if c.isdigit())
        return digits in TEST_CARD_NUMBERS or len(set(digits)) <= 2


class GatedPhoneRecognizer(PhoneRecognizer):
    """presidio's phone recognizer (libphonenumber, several regions) run only on windows around
    digit runs that could be phone numbers (7–15 digits with phone punctuation).

    libphonenumber's matcher tries every digit run of the text once per region and is ~2/3 of
    presidio's pattern-only time on code; the gate keeps its results on text that has candidates
    and skips the rest."""

    _CANDIDATE = regex.compile(r"(?<![\w+])\+?\(?\d[\d \t.\-()/]{5,22}\d(?!\w)")
    _PAD = 24

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        windows: list[list[int]] = []
        for m in self._CANDIDATE.finditer(text):
            digits = sum(c.isdigit() for c in m.group())
            if not 7 <= digits <= 15:
                continue
            start, end = max(0, m.start() - self._PAD), min(len(text), m.end() + self._PAD)
            if windows and start <= windows[-1][1]:
                windows[-1][1] = max(windows[-1][1], end)
            else:
                windows.append([start, end])
        results: list[RecognizerResult] = []
        for start, end in windows:
            for r in super().analyze(text[start:end], entities, nlp_artifacts):
                r.start += start
                r.end += start
                results.append(r)
        return results


@dataclass(frozen=True, slots=True)
class Hit:
    """One detection in a text: entity, its detector, span ``[start, end)`` and score. No value."""

    detector: str
    entity: str
    start: int
    end: int
    score: float


class GuardEngine:
    """Pattern-only presidio analyzer with codexgate's recognizers. Create once; share freely."""

    def __init__(self, pii_entities: Sequence[str] = DEFAULT_PII_ENTITIES) -> None:
        unknown = set(pii_entities) - set(PII_ENTITIES)
        if unknown:
            raise ValueError(f"unknown PII entities: {', '.join(sorted(unknown))}")
        self.pii_entities = tuple(pii_entities)
        registry = RecognizerRegistry(supported_languages=["en"])
        pii = {
            "EMAIL_ADDRESS": OfflineEmailRecognizer,
            "PHONE_NUMBER": GatedPhoneRecognizer,
            "CREDIT_CARD": FixtureAwareCreditCardRecognizer,
            "IBAN_CODE": IbanRecognizer,
            "IP_ADDRESS": UsefulIpRecognizer,
            "US_SSN": UsSsnRecognizer,
            "URL": UrlRecognizer,
        }
        for entity in self.pii_entities:
            registry.add_recognizer(pii[entity]())
        for recognizer in secret_recognizers():
            registry.add_recognizer(recognizer)
        registry.add_recognizer(InjectionRecognizer())
        nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
        nlp.load()
        self.analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])
        self._entities = {
            PII: list(self.pii_entities),
            SECRETS: list(SECRET_ENTITIES),
            INJECTION: [INJECTION_ENTITY],
            BANNED: [BANNED_ENTITY],
        }
        # Compile every regex now, not on the first request.
        self.detect("warm-up: a@b.io +1 415 555 2671 4111111111111111 10.0.0.1 sk-x ignore previous instructions")

    def entities_for(self, detectors: Iterable[str]) -> list[str]:
        """The presidio entity names the given detectors look for."""
        out: list[str] = []
        for d in detectors:
            out.extend(self._entities.get(d, ()))
        return out

    def detect(
        self,
        text: str,
        detectors: Iterable[str] = TEXT_DETECTORS,
        banned: BannedTermsRecognizer | None = None,
    ) -> list[Hit]:
        """Hits of ``detectors`` in ``text``, sorted by start; overlapping hits of one entity merged.

        ``banned`` supplies the policy's banned terms (ignored unless BANNED is in ``detectors``)."""
        detectors = tuple(detectors)
        use_banned = BANNED in detectors and banned is not None and not banned.empty
        entities = self.entities_for(d for d in detectors if d != BANNED)
        if use_banned:
            entities.append(BANNED_ENTITY)
        if not text or not entities:
            return []
        results: list[RecognizerResult] = self.analyzer.analyze(
            text,
            language="en",
            entities=entities,
            ad_hoc_recognizers=[banned] if use_banned else None,
        )
        hits = [
            Hit(ENTITY_DETECTOR[r.entity_type], r.entity_type, r.start, r.end, round(float(r.score), 3))
            for r in results
            if r.score >= MIN_SCORE.get(r.entity_type, DEFAULT_MIN_SCORE)
        ]
        return merge_hits(hits)


def merge_hits(hits: Iterable[Hit]) -> list[Hit]:
    """Sorted hits with overlapping or touching spans of the same entity merged (max score)."""
    out: list[Hit] = []
    open_by_entity: dict[str, int] = {}
    for h in sorted(hits, key=lambda h: (h.start, h.end)):
        i = open_by_entity.get(h.entity)
        if i is not None and h.start <= out[i].end:
            prev = out[i]
            out[i] = Hit(prev.detector, prev.entity, prev.start, max(prev.end, h.end), max(prev.score, h.score))
            continue
        open_by_entity[h.entity] = len(out)
        out.append(h)
    return sorted(out, key=lambda h: (h.start, h.end))
