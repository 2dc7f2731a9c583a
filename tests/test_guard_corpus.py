"""Precision and recall of every detector on the labelled corpus (tests/data/guard_corpus.jsonl).

A labelled value counts as found when a hit of the same entity overlaps it; every other hit is a
false positive of its detector. Thresholds were chosen from the corpus results (see the report in
the issue): they sit just under the measured figures, so a regression fails loudly.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from codexgate.guard.engine import ENTITY_DETECTOR, INJECTION, PII, SECRETS, GuardEngine
from codexgate.guard.scanner import prefer_specific

CORPUS = Path(__file__).parent / "data" / "guard_corpus.jsonl"
# detector → (min precision, min recall), chosen from the measured corpus results.
THRESHOLDS = {SECRETS: (0.95, 0.95), PII: (0.85, 0.95), INJECTION: (0.9, 0.9)}


@pytest.fixture(scope="module")
def engine() -> GuardEngine:
    return GuardEngine()


def _records() -> list[dict]:
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


def test_corpus_has_positives_and_hard_negatives_per_detector() -> None:
    recs = _records()
    for det in THRESHOLDS:
        mine = [r for r in recs if r["detector"] == det]
        assert sum(1 for r in mine if r["labels"]) >= 8, det
        assert sum(1 for r in mine if not r["labels"]) >= 5, det


def test_precision_recall_per_detector(engine: GuardEngine) -> None:
    tp, fp, fn = Counter(), Counter(), Counter()
    for rec in _records():
        text = rec["text"]
        dets = [PII, SECRETS] + ([INJECTION] if rec["kind"] == "tool_output" else [])
        hits = prefer_specific(engine.detect(text, dets))
        labels = []
        for lab in rec["labels"]:
            start = text.index(lab["value"])
            labels.append((lab["entity"], start, start + len(lab["value"])))
        for ent, s, e in labels:
            found = any(h.entity == ent and h.start < e and s < h.end for h in hits)
            (tp if found else fn)[ENTITY_DETECTOR[ent]] += 1
        for h in hits:
            if not any(h.entity == ent and h.start < e and s < h.end for ent, s, e in labels):
                fp[h.detector] += 1
    print()
    print(f"{'detector':<10} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>10} {'recall':>8}")
    for det, (min_p, min_r) in THRESHOLDS.items():
        precision = tp[det] / max(1, tp[det] + fp[det])
        recall = tp[det] / max(1, tp[det] + fn[det])
        print(f"{det:<10} {tp[det]:>4} {fp[det]:>4} {fn[det]:>4} {precision:>10.3f} {recall:>8.3f}")
        assert tp[det] > 0
        assert precision >= min_p, (det, precision)
        assert recall >= min_r, (det, recall)

