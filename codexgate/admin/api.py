"""The admin API: the control plane as JSON resources over HTTP (Starlette + uvicorn), separate from the data
plane. ``codexgate admin serve`` runs it; every vault change goes through ``VaultStore.edit`` (locked,
atomic, one audit entry each), and the gateway picks the new vault up within its poll interval.

Authentication: ``Authorization: Bearer cga_…`` (an admin credential from the vault; gateway keys
are refused). Authorisation: ``codexgate.admin.roles``. A refusal is a 403
``{"error": {"message", "type": "forbidden", "role", "boundary"}}`` and an audit entry with
``outcome = denied``. No response ever contains a secret: providers, keys and credentials appear
as ids and fingerprints; a new gateway key or admin credential is returned once, by the call that
creates or rotates it. Blocking work (decrypting, fsync) runs in a worker thread, never on the
event loop.

Resources (all under ``/v1``)::

    GET  whoami
    GET  keys[?team=ORG/TEAM]            POST keys
    GET  keys/{id}                       POST keys/{id}/{rotate|revoke|enable|disable}
    GET  teams                           POST teams
    GET  providers                       POST providers   POST providers/{name}/rotate   DELETE providers/{name}
    GET  routes                          POST routes      DELETE routes/{index}
    GET  limits                          PUT  limits      PUT limits/scopes/{scope}   PUT limits/{org}/{team}
    GET  guardrail_policies              PUT  guardrail_policies   PUT guardrail_policies/scopes/{scope}  (…/{org}/{team})
    GET  roles                           POST roles       POST roles/{id}/revoke
    GET  audit[?since&actor&action&limit]
    GET  usage[?developer&team&since]

Sections (``limits``, ``guardrail_policies``) are raw JSON owned by their policy engines. The API
knows only where each keeps its per-scope entries (``levels`` / ``scopes``, keyed ``team:ORG/TEAM``,
``key:ID``, ``org:ORG``, ``project:…``, ``developer:…``): a team admin reads and sets the entries of
its teams and of their keys; org, project and developer entries and whole-section writes are for
org admins. Contents are validated by the engines' own parsers when ``codexgate admin serve`` can
import them.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from codexgate.admin.audit import AuditError, read_entries, verify
from codexgate.admin.roles import Forbidden, Principal
from codexgate.admin.store import EditContext, VaultStore
from codexgate.admin.views import admin_view, key_view, provider_view, route_view, scrub, team_view
from codexgate.core.keys import AuthError
from codexgate.core.vault import (
    MAX_ROUTE_TARGETS,
    TIMEOUT_FIELDS,
    ProviderCredential,
    RouteEntry,
    RouteGroup,
    RouteTarget,
    Vault,
    VaultError,
    split_team,
)

log = logging.getLogger("codexgate.admin")
SECTIONS = ("limits", "guardrail_policies")
# where each section keeps its per-scope entries ("team:acme/platform", "key:<id>", "org:acme", …)
SECTION_CONTAINERS = {"limits": "levels", "guardrail_policies": "scopes"}
KEY_OPS = ("rotate", "revoke", "enable", "disable")
MAX_BODY = 1024 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

# usage(developer, team, org, since) -> JSON-able rows; supplied by the CLI (which may use analytics)
UsageFn = Callable[[str | None, str | None, str, datetime | None], Any]


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def _error(status: int, message: str, kind: str, request_id: str, **extra: Any) -> Response:
    body = {"error": {"message": message, "type": kind, **extra}, "request_id": request_id}
    return JSONResponse(body, status_code=status, headers={"x-request-id": request_id})


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    m = re.fullmatch(r"(\d+)([mhd])", value)
    if m:
        unit = {"m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return datetime.now(UTC) - timedelta(seconds=int(m.group(1)) * unit)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"invalid time {value!r}: use an ISO time or 30m, 12h, 7d") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class AdminApi:
    """Handlers bound to one vault store; ``app()`` is the ASGI application."""

    def __init__(
        self,
        store: VaultStore,
        usage: UsageFn | None = None,
        validators: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> None:
        self.store = store
        self.usage = usage
        # section name -> the owning engine's parser (raises ValueError): the API stays ignorant of
        # the sections' contents yet refuses a document the gateway could not load
        self.validators = dict(validators or {})

    # ------------------------------------------------------------ plumbing
    def app(self) -> Starlette:
        """The ASGI application (Starlette; served by uvicorn, both already brought by Streamlit)."""
        get, post, put, delete = ["GET"], ["POST"], ["PUT"], ["DELETE"]
        table: list[tuple[str, list[str], Callable[..., Any], dict[str, str]]] = [
            ("/v1/whoami", get, self.whoami, {}),
            ("/v1/keys", get, self.list_keys, {}),
            ("/v1/keys", post, self.create_key, {}),
            ("/v1/keys/{key_id}", get, self.show_key, {}),
            *[(f"/v1/keys/{{key_id}}/{op}", post, self.key_op, {"op": op}) for op in KEY_OPS],
            ("/v1/teams", get, self.list_teams, {}),
            ("/v1/teams", post, self.add_team, {}),
            ("/v1/providers", get, self.list_providers, {}),
            ("/v1/providers", post, self.add_provider, {}),
            ("/v1/providers/{name}/rotate", post, self.rotate_provider, {}),
            ("/v1/providers/{name}", delete, self.remove_provider, {}),
            ("/v1/routes", get, self.list_routes, {}),
            ("/v1/routes", post, self.add_route, {}),
            ("/v1/routes/{index}", delete, self.remove_route, {}),
            *[
                row
                for section in SECTIONS
                for row in (
                    (f"/v1/{section}", get, self.get_section, {"section": section}),
                    (f"/v1/{section}", put, self.put_section, {"section": section}),
                    (f"/v1/{section}/scopes/{{scope_id:path}}", put, self.put_scope, {"section": section}),
                    (f"/v1/{section}/{{org}}/{{team}}", put, self.put_scope, {"section": section}),
                )
            ],
            ("/v1/roles", get, self.list_roles, {}),
            ("/v1/roles", post, self.create_role, {}),
            ("/v1/roles/{cred_id}/revoke", post, self.revoke_role, {}),
            ("/v1/audit", get, self.audit, {}),
            ("/v1/usage", get, self.usage_view, {}),
        ]
        routes = [Route("/healthz", self._health, methods=get)]
        routes += [Route(path, self._wrap(h, fixed), methods=m) for path, m, h, fixed in table]
        return Starlette(routes=routes)

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    def _wrap(self, handler: Callable[..., Any], fixed: dict[str, str]) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            rid = request.headers.get("x-request-id", "")
            rid = rid if _REQUEST_ID.match(rid) else uuid.uuid4().hex
            body: Any = None
            if request.method in ("POST", "PUT"):
                if int(request.headers.get("content-length") or 0) > MAX_BODY:
                    return _error(413, f"the request body exceeds {MAX_BODY} bytes", "invalid_request", rid)
                raw = await request.body()
                if len(raw) > MAX_BODY:
                    return _error(413, f"the request body exceeds {MAX_BODY} bytes", "invalid_request", rid)
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    return _error(400, "the request body is not JSON", "invalid_request", rid)
            body = {} if body is None else body
            token = request.headers.get("authorization", "")
            token = token[7:].strip() if token.lower().startswith("bearer ") else ""
            params = dict(request.query_params)
            info = {**{k: str(v) for k, v in request.path_params.items()}, **fixed}
            try:
                # blocking work (decrypt, fsync) in anyio's bounded worker pool, never on the loop
                result = await run_in_threadpool(self._call, handler, token, rid, info, params, body)
            except ApiError as exc:
                return _error(exc.status, exc.message, exc.kind, rid)
            except Forbidden as exc:
                log.info("403 %s %s: %s (request %s)", request.method, request.url.path, exc.message, rid)
                return _error(
                    403, exc.message, "forbidden", rid, role=exc.principal.role, boundary=exc.boundary
                )
            except (VaultError, AuditError) as exc:
                return _error(400 if isinstance(exc, VaultError) else 503, str(exc), "invalid_request", rid)
            status = (
                201 if request.method == "POST" and handler.__name__.startswith(("create", "add")) else 200
            )
            return JSONResponse(result, status_code=status, headers={"x-request-id": rid})

        return run

    def _call(
        self,
        handler: Callable[..., Any],
        token: str,
        rid: str,
        info: dict[str, str],
        params: dict[str, str],
        body: Any,
    ) -> Any:
        vault = self.store.read()
        try:
            cred = vault.authenticate_admin(token)
        except AuthError as exc:
            raise ApiError(401, exc.message, "unauthorized") from None
        principal = Principal.of(cred)
        try:
            return handler(principal, vault, rid=rid, info=info, params=params, body=body)
        except Forbidden as exc:
            self.store.audit.append(
                actor=principal.actor,
                role=principal.role,
                action=_action_name(handler.__name__, info),
                target=exc.action,
                outcome="denied",
                source="api",
                request_id=rid,
                detail=exc.boundary,
            )
            raise

    def _edit(self, p: Principal, rid: str, action: str, target: str | None = None) -> Any:
        return self.store.edit(
            EditContext(
                actor=p.actor, role=p.role, action=action, target=target, request_id=rid, source="api"
            )
        )

    @staticmethod
    def _field(body: Any, name: str, kind: Any = str, required: bool = True) -> Any:
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        value = body.get(name)
        if value is None:
            if required:
                raise ApiError(400, f"missing field {name!r}")
            return None
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise ApiError(400, f"field {name!r} must be {names}")
        return value

    # ------------------------------------------------------------ identity
    def whoami(self, p: Principal, vault: Vault, **_: Any) -> Any:
        return {
            "actor": p.actor,
            "role": p.role,
            "org": p.org,
            "teams": list(p.teams),
            "developer": p.developer,
            "cred_id": p.cred_id,
        }

    # ------------------------------------------------------------ keys
    def list_keys(self, p: Principal, vault: Vault, *, params: dict[str, str], **_: Any) -> Any:
        team = params.get("team")
        if team and p.role != "developer" and not p.can_read_team(team):
            raise Forbidden(p, f"list the keys of {team}", f"team {team} is outside the {p.describe()}")
        keys = [k for k in vault.keys.values() if p.can_read_key(k) and (not team or k.team_path == team)]
        keys.sort(key=lambda k: (k.team_path, k.project, k.developer, k.created_at))
        return [key_view(vault, k) for k in keys]

    def show_key(self, p: Principal, vault: Vault, *, info: dict[str, str], **_: Any) -> Any:
        key = self._key(vault, info["key_id"])
        if not p.can_read_key(key):
            raise Forbidden(
                p,
                f"read key {key.key_id}",
                f"key {key.key_id} ({key.team_path}) is outside the {p.describe()}",
            )
        return key_view(vault, key)

    @staticmethod
    def _key(vault: Vault, key_id: str) -> Any:
        key = vault.keys.get(key_id)
        if key is None:
            raise ApiError(404, f"unknown key id {key_id!r}", "not_found")
        return key

    def create_key(self, p: Principal, vault: Vault, *, rid: str, body: Any, **_: Any) -> Any:
        team = self._field(body, "team")
        action = f"create a key in {team}"
        if p.role in ("developer", "auditor"):
            raise Forbidden(p, action, "only org_admin or team_admin may create keys")
        p.require_team_write(team, action)
        org, name = split_team(team)
        expires = _parse_time(self._field(body, "expires_at", str, False))
        if body.get("org_admin") and p.role != "org_admin":
            raise Forbidden(
                p, "create an org-admin key", "only an org_admin may grant org-wide dashboard access"
            )
        with self._edit(p, rid, "key.create") as v:
            entry, plain = v.create_key(
                org=org,
                team=name,
                project=self._field(body, "project"),
                developer=self._field(body, "developer"),
                providers=self._field(body, "providers", list, False),
                models=self._field(body, "models", list, False),
                expires_at=expires,
                tags=self._field(body, "tags", dict, False),
                privacy_mode=self._field(body, "privacy_mode", str, False),
                budget_usd=self._field(body, "budget_usd", (int, float), False),  # type: ignore[arg-type]
                budget_period=self._field(body, "budget_period", str, False),
                description=self._field(body, "description", str, False) or "",
                org_admin=bool(body.get("org_admin")),
            )
            view = key_view(v, entry)
        return {"key": plain, "key_id": entry.key_id, "detail": view}

    def key_op(
        self, p: Principal, vault: Vault, *, rid: str, info: dict[str, str], body: Any, **_: Any
    ) -> Any:
        op, key_id = info["op"], info["key_id"]
        key = self._key(vault, key_id)
        p.require_key(key, f"{op} key {key_id}", developer_may=op in ("rotate", "revoke"))
        grace = self._field(body, "grace_seconds", int, False) if op == "rotate" else None
        plain = None
        with self._edit(p, rid, f"key.{op}", f"key:{key_id}") as v:
            if op == "rotate":
                plain = v.rotate_key(key_id, datetime.now(UTC), grace_seconds=grace)
            elif op == "revoke":
                v.revoke_key(key_id)
            else:
                v.set_key_enabled(key_id, op == "enable")
            view = key_view(v, v.key(key_id))
        return {"key": plain, "key_id": key_id, "detail": view} if plain else view

    # ------------------------------------------------------------ teams
    def list_teams(self, p: Principal, vault: Vault, **_: Any) -> Any:
        if p.role == "developer":
            raise Forbidden(p, "list teams", "a developer sees only their own keys and usage")
        return [
            team_view(t)
            for t in sorted(vault.teams.values(), key=lambda t: t.path)
            if p.can_read_team(t.path)
        ]

    def add_team(self, p: Principal, vault: Vault, *, rid: str, body: Any, **_: Any) -> Any:
        team = self._field(body, "team")
        p.require(("org_admin",), f"add team {team}")
        org, name = split_team(team)
        if org != p.org:
            raise Forbidden(p, f"add team {team}", f"org {org} is not org {p.org}")
        with self._edit(p, rid, "team.add", f"team:{team}") as v:
            t = v.add_team(
                org,
                name,
                privacy_mode=self._field(body, "privacy_mode", str, False) or "full",
                budget_usd=self._field(body, "budget_usd", (int, float), False),  # type: ignore[arg-type]
                budget_period=self._field(body, "budget_period", str, False),
                admins=self._field(body, "admins", list, False),
            )
            return team_view(t)

    # ------------------------------------------------------------ providers
    def list_providers(self, p: Principal, vault: Vault, **_: Any) -> Any:
        p.require(("org_admin", "auditor"), "list providers")
        return [provider_view(x) for x in sorted(vault.providers.values(), key=lambda x: x.name)]

    def add_provider(self, p: Principal, vault: Vault, *, rid: str, body: Any, **_: Any) -> Any:
        name = self._field(body, "name")
        p.require(("org_admin",), f"add provider {name}")
        hosts = self._field(body, "hosts", list, False)
        cred = ProviderCredential(
            name=name,
            kind=self._field(body, "kind"),
            base_url=self._field(body, "base_url"),
            api_key=self._field(body, "api_key"),
            api_version=self._field(body, "api_version", str, False),
            hosts=hosts,
            default=bool(body.get("default")),
        )
        with self._edit(p, rid, "provider.add", f"provider:{name}") as v:
            v.add_provider(cred)
        return provider_view(cred)

    def rotate_provider(
        self, p: Principal, vault: Vault, *, rid: str, info: dict[str, str], body: Any, **_: Any
    ) -> Any:
        name = info["name"]
        p.require(("org_admin",), f"rotate provider {name}")
        api_key = self._field(body, "api_key")
        with self._edit(p, rid, "provider.rotate", f"provider:{name}") as v:
            v.rotate_provider_key(name, api_key)
            return provider_view(v.provider(name))

    def remove_provider(self, p: Principal, vault: Vault, *, rid: str, info: dict[str, str], **_: Any) -> Any:
        name = info["name"]
        p.require(("org_admin",), f"remove provider {name}")
        with self._edit(p, rid, "provider.remove", f"provider:{name}") as v:
            v.remove_provider(name)
        return {"removed": name}

    # ------------------------------------------------------------ routes
    def list_routes(self, p: Principal, vault: Vault, **_: Any) -> Any:
        p.require(("org_admin", "team_admin", "auditor"), "list routes")
        return [route_view(i, r) for i, r in enumerate(vault.routes)]

    def add_route(self, p: Principal, vault: Vault, *, rid: str, body: Any, **_: Any) -> Any:
        """``{"model", "api"?, "position"?}`` with ``"provider"`` (one provider) or ``"targets"``
        (+ ``"strategy"``): each target ``{"provider", "model"?, "weight"?, "connect_timeout_s"?,
        "first_byte_timeout_s"?, "idle_timeout_s"?, "upstream_api"?}`` or a group
        ``{"strategy", "targets": [targets], "weight"?}`` (one level)."""
        p.require(("org_admin",), "add a route")
        position = self._field(body, "position", int, False)
        raw_targets = self._field(body, "targets", list, False)
        provider = self._field(body, "provider", str, raw_targets is None)
        if provider is not None and raw_targets is not None:
            raise ApiError(400, "give 'provider' or 'targets', not both")
        targets = _route_entries(raw_targets) if raw_targets is not None else None
        with self._edit(p, rid, "route.add") as v:
            route = v.add_route(
                self._field(body, "model"),
                provider,
                self._field(body, "api", str, False) or "*",
                position=position,
                targets=targets,
                strategy=self._field(body, "strategy", str, False) or "fallback",
            )
            index = position if position is not None else len(v.routes) - 1
        return route_view(index, route)

    def remove_route(self, p: Principal, vault: Vault, *, rid: str, info: dict[str, str], **_: Any) -> Any:
        p.require(("org_admin",), "remove a route")
        try:
            index = int(info["index"])
        except ValueError:
            raise ApiError(400, "a route index is a whole number") from None
        with self._edit(p, rid, "route.remove") as v:
            route = v.remove_route(index)
        return route_view(index, route)

    # ------------------------------------------------------------ raw sections
    @staticmethod
    def _entries(vault: Vault, name: str) -> dict[str, Any]:
        section = vault.sections.get(name)
        entries = section.get(SECTION_CONTAINERS[name]) if isinstance(section, dict) else None
        return dict(entries) if isinstance(entries, dict) else {}

    def _require_scope(self, p: Principal, vault: Vault, name: str, scope_id: str) -> None:
        """Who may change the ``scope_id`` entry (``team:ORG/TEAM``, ``key:ID``, ``org:ORG``, …)."""
        kind, _, value = scope_id.partition(":")
        action = f"change the {name} of {scope_id}"
        if kind == "team":
            p.require_team_write(value, action)
        elif kind == "key":
            key = vault.keys.get(value)
            if key is None:
                raise ApiError(404, f"unknown key id {value!r}", "not_found")
            p.require_key(key, action, developer_may=False)
        else:
            p.require(("org_admin",), action)
            if kind == "org" and value != p.org:
                raise Forbidden(p, action, f"org {value} is not org {p.org}")
            if kind not in ("org", "project", "developer"):
                raise ApiError(
                    400, f"unknown scope {scope_id!r} (use org:, team:, project:, developer: or key:)"
                )

    def _visible_scope(self, p: Principal, vault: Vault, scope_id: str) -> bool:
        kind, _, value = scope_id.partition(":")
        if kind == "team":
            return p.can_read_team(value)
        if kind == "key":
            key = vault.keys.get(value)
            return key is not None and p.can_read_key(key)
        return p.role in ("org_admin", "auditor")

    def get_section(self, p: Principal, vault: Vault, *, info: dict[str, str], **_: Any) -> Any:
        name = info["section"]
        if p.role in ("org_admin", "auditor"):
            return scrub(vault.sections.get(name) or {})
        if p.role == "team_admin":
            entries = self._entries(vault, name)
            own = {sid: doc for sid, doc in entries.items() if self._visible_scope(p, vault, sid)}
            return scrub({SECTION_CONTAINERS[name]: own})
        raise Forbidden(p, f"read {name}", "a developer sees only their own keys and usage")

    def _validate(self, name: str, section: Any) -> None:
        check = self.validators.get(name)
        if check is None:
            return
        try:
            check(section)
        except ValueError as exc:
            raise ApiError(400, f"invalid {name}: {exc}") from None

    def put_section(
        self, p: Principal, vault: Vault, *, rid: str, info: dict[str, str], body: Any, **_: Any
    ) -> Any:
        name = info["section"]
        p.require(("org_admin",), f"replace all {name}")
        if not isinstance(body, dict):
            raise ApiError(400, f"{name} must be a JSON object")
        self._validate(name, body)
        with self._edit(p, rid, f"{name}.set", f"section:{name}") as v:
            v.sections[name] = body
        return scrub(body)

    def put_scope(
        self, p: Principal, vault: Vault, *, rid: str, info: dict[str, str], body: Any, **_: Any
    ) -> Any:
        """Set (or with ``{}`` remove) one entry: ``section[container][scope_id] = body``."""
        name = info["section"]
        scope_id = info.get("scope_id") or f"team:{info['org']}/{info['team']}"
        self._require_scope(p, vault, name, scope_id)
        if not isinstance(body, dict):
            raise ApiError(400, f"the {name} of {scope_id} must be a JSON object")
        with self._edit(p, rid, f"{name}.set", f"section:{name}/{scope_id}") as v:
            section = v.sections.get(name)
            section = dict(section) if isinstance(section, dict) else {"version": 1}
            entries = self._entries(v, name)
            if body:
                entries[scope_id] = body
            else:
                entries.pop(scope_id, None)
            section[SECTION_CONTAINERS[name]] = entries
            self._validate(name, section)  # raising here leaves the vault and the audit log untouched
            v.sections[name] = section
        return scrub(body)

    # ------------------------------------------------------------ roles (admin credentials)
    def list_roles(self, p: Principal, vault: Vault, **_: Any) -> Any:
        p.require(("org_admin", "auditor"), "list admin credentials")
        return [admin_view(a) for a in vault.admins.values() if a.org == p.org]

    def create_role(self, p: Principal, vault: Vault, *, rid: str, body: Any, **_: Any) -> Any:
        role = self._field(body, "role")
        p.require(("org_admin",), f"create a {role} credential")
        org = self._field(body, "org", str, False) or p.org
        if org != p.org:
            raise Forbidden(p, f"create a credential in org {org}", f"org {org} is not org {p.org}")
        with self._edit(p, rid, "role.create") as v:
            cred, plain = v.create_admin(
                name=self._field(body, "name"),
                role=role,
                org=org,
                teams=self._field(body, "teams", list, False),
                developer=self._field(body, "developer", str, False),
            )
            view = admin_view(cred)
        return {"credential": plain, "cred_id": cred.cred_id, "detail": view}

    def revoke_role(self, p: Principal, vault: Vault, *, rid: str, info: dict[str, str], **_: Any) -> Any:
        cred_id = info["cred_id"]
        p.require(("org_admin",), f"revoke credential {cred_id}")
        target = vault.admins.get(cred_id)
        if target is None:
            raise ApiError(404, f"unknown admin credential {cred_id!r}", "not_found")
        if target.org != p.org:
            raise Forbidden(p, f"revoke credential {cred_id}", f"it belongs to org {target.org}")
        with self._edit(p, rid, "role.revoke", f"admin:{cred_id}") as v:
            v.revoke_admin(cred_id)
            return admin_view(v.admin(cred_id))

    # ------------------------------------------------------------ audit, usage
    def audit(self, p: Principal, vault: Vault, *, params: dict[str, str], **_: Any) -> Any:
        p.require(("org_admin", "auditor"), "read the audit log")
        limit = params.get("limit")
        entries = read_entries(
            self.store.audit.directory,
            since=_parse_time(params.get("since")),
            actor=params.get("actor"),
            action=params.get("action"),
            limit=int(limit) if limit and limit.isdigit() else None,
        )
        result = verify(self.store.audit.directory, self.store.audit.anchor)
        return {
            "entries": entries,
            "verify": {
                "ok": result.ok,
                "entries": result.entries,
                "head_seq": result.head_seq,
                "head_hash": result.head_hash,
                "problem": result.problem,
            },
        }

    def usage_view(self, p: Principal, vault: Vault, *, params: dict[str, str], **_: Any) -> Any:
        developer = params.get("developer") or (p.developer if p.role == "developer" else None)
        team = params.get("team")
        action = f"read the usage of {developer or team or 'the org'}"
        p.require_usage(developer, team, action)
        if p.role == "developer" and team is not None:
            own_teams = {k.team_path for k in vault.keys.values() if p.can_read_key(k)}
            if team not in own_teams:
                raise Forbidden(p, action, f"team {team} holds none of {p.developer}'s keys")
        if self.usage is None:
            raise ApiError(
                503, "usage needs a traces folder (codexgate admin serve --traces DIR)", "unavailable"
            )
        return {
            "developer": developer,
            "team": team,
            "org": p.org,
            "rows": self.usage(developer, team, p.org, _parse_time(params.get("since"))),
        }


_ACTIONS = {
    "whoami": "whoami.read",
    "list_keys": "key.list",
    "show_key": "key.show",
    "create_key": "key.create",
    "list_teams": "team.list",
    "add_team": "team.add",
    "list_providers": "provider.list",
    "add_provider": "provider.add",
    "rotate_provider": "provider.rotate",
    "remove_provider": "provider.remove",
    "list_routes": "route.list",
    "add_route": "route.add",
    "remove_route": "route.remove",
    "list_roles": "role.list",
    "create_role": "role.create",
    "revoke_role": "role.revoke",
    "audit": "audit.read",
    "usage_view": "usage.read",
}


def _action_name(handler: str, info: dict[str, str]) -> str:
    """The audit action of a handler (the same name a successful edit records)."""
    if handler == "key_op":
        return f"key.{info.get('op')}"
    if handler == "get_section":
        return f"{info.get('section')}.read"
    if handler in ("put_section", "put_scope"):
        return f"{info.get('section')}.set"
    return _ACTIONS.get(handler, handler)


def make_app(
    store: VaultStore,
    usage: UsageFn | None = None,
    validators: Mapping[str, Callable[[Any], Any]] | None = None,
) -> Starlette:
    return AdminApi(store, usage, validators).app()


# ---------------------------------------------------------------------------- route bodies
_TARGET_KEYS = frozenset({"provider", "model", "weight", "upstream_api", *TIMEOUT_FIELDS})
_GROUP_KEYS = frozenset({"strategy", "targets", "weight"})


def _number(item: dict[str, Any], name: str, where: str) -> float | None:
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(400, f"{where}.{name} must be a number")
    return float(value)


def _text(item: dict[str, Any], name: str, where: str, required: bool = False) -> str | None:
    value = item.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ApiError(400, f"{where}.{name} must be a non-empty string (at most 200 characters)")
    return value


def _route_entries(raw: list[Any]) -> list[RouteEntry]:
    """A route's ``targets`` from a request body, shape and types checked (the vault checks
    providers, weights, timeouts and what can serve the API)."""
    if not raw or len(raw) > MAX_ROUTE_TARGETS:
        raise ApiError(400, f"field 'targets' must list 1 to {MAX_ROUTE_TARGETS} targets")
    return [_route_entry(item, f"targets[{i}]", group_ok=True) for i, item in enumerate(raw)]


def _route_entry(item: Any, where: str, *, group_ok: bool) -> RouteEntry:
    if not isinstance(item, dict):
        raise ApiError(400, f"{where} must be an object")
    if "targets" in item:
        if not group_ok:
            raise ApiError(
                400, f"{where}: route groups nest one level only (a group's targets are plain targets)"
            )
        unknown = sorted(set(item) - _GROUP_KEYS)
        if unknown:
            raise ApiError(400, f"{where}: unknown field(s) {', '.join(unknown)}")
        members = item["targets"]
        if not isinstance(members, list) or not members or len(members) > MAX_ROUTE_TARGETS:
            raise ApiError(400, f"{where}.targets must list 1 to {MAX_ROUTE_TARGETS} targets")
        weight = _number(item, "weight", where)
        return RouteGroup(
            strategy=_text(item, "strategy", where) or "fallback",
            targets=[
                _route_entry(m, f"{where}.targets[{j}]", group_ok=False)  # type: ignore[misc]
                for j, m in enumerate(members)
            ],
            weight=1.0 if weight is None else weight,
        )
    unknown = sorted(set(item) - _TARGET_KEYS)
    if unknown:
        raise ApiError(400, f"{where}: unknown field(s) {', '.join(unknown)}")
    weight = _number(item, "weight", where)
    return RouteTarget(
        provider=_text(item, "provider", where, required=True) or "",
        model=_text(item, "model", where),
        weight=1.0 if weight is None else weight,
        upstream_api=_text(item, "upstream_api", where),
        **{name: _number(item, name, where) for name in TIMEOUT_FIELDS},  # type: ignore[arg-type]
    )
