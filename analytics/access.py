"""Who may see which traces. Enforced in the query layer: every query ANDs in ``sql_filter``.

``ViewerScope()`` is an org admin / platform view (no restriction). Setting ``org`` limits to
one organisation, ``team`` to one team (combine with ``org``: team names are only unique
within an organisation), ``developer`` to one developer's own calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESTRICTABLE = ("org", "team", "developer")


@dataclass(frozen=True)
class ViewerScope:
    org: str | None = None
    team: str | None = None
    developer: str | None = None
    label: str = ""

    @property
    def unrestricted(self) -> bool:
        return self.org is None and self.team is None and self.developer is None

    def describe(self) -> str:
        """Human-readable scope, e.g. ``org=acme team=payments`` (or the label, or ``all``)."""
        if self.label:
            return self.label
        parts = [f"{name}={getattr(self, name)}" for name in _RESTRICTABLE if getattr(self, name) is not None]
        return " ".join(parts) or "all"

    def sql_filter(self, alias: str = "") -> tuple[str, list[str]]:
        """A parameterised predicate over trace columns, ``("TRUE", [])`` when unrestricted.

        ``alias`` qualifies the columns (``t`` -> ``t.org``); it must be a plain identifier.
        Rows with a NULL identity column never match a restricted scope.
        """
        if alias and not _ALIAS.match(alias):
            raise ValueError(f"invalid SQL alias: {alias!r}")
        prefix = f"{alias}." if alias else ""
        clauses: list[str] = []
        params: list[str] = []
        for name in _RESTRICTABLE:
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"{prefix}{name} = ?")
                params.append(value)
        if not clauses:
            return "TRUE", []
        return "(" + " AND ".join(clauses) + ")", params

    def allows(self, org: str | None, team: str | None, developer: str | None) -> bool:
        """Python-side twin of ``sql_filter`` (for checks outside SQL)."""
        values = {"org": org, "team": team, "developer": developer}
        return all(
            getattr(self, name) is None or getattr(self, name) == values[name] for name in _RESTRICTABLE
        )


ALL = ViewerScope(label="all")


def scope_where(scope: ViewerScope, since: Any, until: Any) -> tuple[str, list[Any]]:
    """``start_time`` range (``[since, until)``; None = open) and the viewer's scope as one
    parameterised predicate, for every query over the traces."""
    clauses: list[str] = []
    params: list[Any] = []
    if since is not None:
        clauses.append("start_time >= ?")
        params.append(since)
    if until is not None:
        clauses.append("start_time < ?")
        params.append(until)
    scope_sql, scope_params = scope.sql_filter()
    clauses.append(scope_sql)
    params.extend(scope_params)
    return " AND ".join(clauses), params
