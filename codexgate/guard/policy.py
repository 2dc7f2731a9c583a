"""Guardrail policies: per detector an action and a stage, set per org / team / project / key.

Stored in the vault as the raw JSON section ``guardrail_policies``::

    {"version": 1,
     "scopes": {
       "org:acme":                    {"detectors": {"secrets": {"action": "redact", "stage": "pre"}}},
       "team:acme/platform":          {"detectors": {"secrets": {"action": "block"}},
                                       "limits": {"max_bytes": 2000000, "max_input_tokens": 400000},
                                       "banned_terms": ["project-aurora"], "banned_regexes": [],
                                       "on_incomplete": "pass"},
       "project:acme/gateway":        {...},
       "key:0123456789ab":            {...}}}

Resolution: org → team → project → key, most specific wins, field by field (a key scope that
sets only ``pii`` keeps the team's ``secrets`` rule). A detector with no rule anywhere is off.
Actions: ``block`` (refuse before forwarding), ``redact`` (placeholders in the forwarded
request), ``flag`` (forward unchanged, record). Stages: ``pre`` (checked before forwarding; the
only stage where block/redact can act) or ``async`` (checked alongside, findings only).
``on_incomplete``: what a ``pre`` check does when the time budget ran out before every new item
was scanned — ``block`` (fail closed) or ``pass`` (forward, record the decision; the default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from codexgate.guard.names import DETECTORS

SECTION = "guardrail_policies"
ACTIONS = ("block", "redact", "flag")
STAGES = ("pre", "async")
SCOPE_KINDS = ("org", "team", "project", "key")


class PolicyError(ValueError):
    """A policy document or command argument that is not valid (one line, no values echoed)."""


@dataclass(frozen=True)
class Rule:
    """What to do with one detector's findings."""

    action: str
    stage: str = "pre"

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise PolicyError(f"unknown action {self.action!r}: expected one of {', '.join(ACTIONS)}")
        if self.stage not in STAGES:
            raise PolicyError(f"unknown stage {self.stage!r}: expected one of {', '.join(STAGES)}")
        if self.action in ("block", "redact") and self.stage == "async":
            raise PolicyError(f"action {self.action!r} needs stage 'pre' (an async check can only flag)")


@dataclass(frozen=True)
class Policy:
    """The effective policy for one call (after resolution)."""

    rules: Mapping[str, Rule] = field(default_factory=dict)
    max_bytes: int | None = None
    max_input_tokens: int | None = None
    banned_terms: tuple[str, ...] = ()
    banned_regexes: tuple[str, ...] = ()
    on_incomplete: str = "pass"

    @property
    def active(self) -> bool:
        return bool(self.rules)

    def text_detectors(self, stage: str | None = None) -> tuple[str, ...]:
        """Detectors with a rule (optionally only those of ``stage``), excluding size limits."""
        return tuple(
            d for d in DETECTORS if d in self.rules and d != "limits"
            and (stage is None or self.rules[d].stage == stage)
        )


def scope_name(kind: str, value: str) -> str:
    """``org:acme``, ``team:acme/platform``, ``project:acme/gateway``, ``key:<key_id>``."""
    if kind not in SCOPE_KINDS:
        raise PolicyError(f"unknown scope {kind!r}: expected one of {', '.join(SCOPE_KINDS)}")
    parts = value.split("/")
    want = 2 if kind in ("team", "project") else 1
    if len(parts) != want or not all(parts):
        shape = {"org": "ORG", "team": "ORG/TEAM", "project": "ORG/PROJECT", "key": "KEY_ID"}[kind]
        raise PolicyError(f"bad {kind} name: expected {shape}")
    return f"{kind}:{value}"


def _validate_scope_doc(name: str, doc: Any) -> dict[str, Any]:
    if not isinstance(doc, Mapping):
        raise PolicyError(f"guardrail_policies scope {name!r} must be an object")
    detectors = doc.get("detectors", {})
    if not isinstance(detectors, Mapping):
        raise PolicyError(f"guardrail_policies scope {name!r}: 'detectors' must be an object")
    for det, rule in detectors.items():
        if det not in DETECTORS:
            raise PolicyError(f"scope {name!r}: unknown detector {det!r} (known: {', '.join(DETECTORS)})")
        if not isinstance(rule, Mapping) or "action" not in rule:
            raise PolicyError(f"scope {name!r}: detector {det!r} needs an 'action'")
        Rule(rule["action"], rule.get("stage", "pre"))
        if det == "limits" and rule["action"] == "redact":
            raise PolicyError(f"scope {name!r}: size limits can block or flag, not redact")
    limits = doc.get("limits", {})
    if not isinstance(limits, Mapping) or any(
        k not in ("max_bytes", "max_input_tokens") or not (v is None or (isinstance(v, int) and v > 0))
        for k, v in limits.items()
    ):
        raise PolicyError(f"scope {name!r}: 'limits' takes max_bytes / max_input_tokens (positive integers)")
    for key in ("banned_terms", "banned_regexes"):
        val = doc.get(key, [])
        if not isinstance(val, list) or not all(isinstance(s, str) and s for s in val):
            raise PolicyError(f"scope {name!r}: {key!r} must be a list of non-empty strings")
    if doc.get("on_incomplete", "pass") not in ("pass", "block"):
        raise PolicyError(f"scope {name!r}: 'on_incomplete' must be 'pass' or 'block'")
    return dict(doc)


def from_section(doc: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Validated scopes from the vault section (``{}`` when absent). Raises ``PolicyError``."""
    if not doc:
        return {}
    if not isinstance(doc, Mapping) or doc.get("version", 1) != 1:
        raise PolicyError("guardrail_policies: expected {'version': 1, 'scopes': {...}}")
    scopes = doc.get("scopes", {})
    if not isinstance(scopes, Mapping):
        raise PolicyError("guardrail_policies: 'scopes' must be an object")
    out = {}
    for name, scope_doc in scopes.items():
        kind, _, value = str(name).partition(":")
        scope_name(kind, value)
        out[name] = _validate_scope_doc(name, scope_doc)
    return out


def to_section(scopes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The vault section for ``scopes`` (validated; empty scopes dropped)."""
    clean = {}
    for name, doc in sorted(scopes.items()):
        kind, _, value = name.partition(":")
        scope_name(kind, value)
        doc = _validate_scope_doc(name, doc)
        doc = {k: v for k, v in doc.items() if v not in ({}, [], None)}
        if doc:
            clean[name] = doc
    return {"version": 1, "scopes": clean}


def resolve(
    scopes: Mapping[str, Mapping[str, Any]], org: str, team: str, project: str, key_id: str
) -> Policy:
    """The effective policy for a key: scopes applied org → team → project → key.

    ``team`` is ``org/team`` as in the vault; a project scope is ``org/project`` (as in the limits
    section: a project belongs to the org and may span teams)."""
    chain = [f"org:{org}", f"team:{team}", f"project:{org}/{project}", f"key:{key_id}"]
    rules: dict[str, Rule] = {}
    limits: dict[str, int | None] = {}
    banned_terms: tuple[str, ...] = ()
    banned_regexes: tuple[str, ...] = ()
    on_incomplete = "pass"
    for name in chain:
        doc = scopes.get(name)
        if not doc:
            continue
        for det, rule in doc.get("detectors", {}).items():
            rules[det] = Rule(rule["action"], rule.get("stage", "pre"))
        limits.update(doc.get("limits", {}))
        if "banned_terms" in doc:
            banned_terms = tuple(doc["banned_terms"])
        if "banned_regexes" in doc:
            banned_regexes = tuple(doc["banned_regexes"])
        on_incomplete = doc.get("on_incomplete", on_incomplete)
    return Policy(
        rules=rules,
        max_bytes=limits.get("max_bytes"),
        max_input_tokens=limits.get("max_input_tokens"),
        banned_terms=banned_terms,
        banned_regexes=banned_regexes,
        on_incomplete=on_incomplete,
    )
