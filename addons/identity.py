"""Authenticates every gateway call with a scoped gateway key from the vault.

The key arrives as ``Authorization: Bearer cgk_…`` (or ``x-api-key`` / ``api-key``) in
base-URL mode, or as proxy credentials (``Proxy-Authorization``, on the CONNECT or the
request) in forward-proxy mode. Unknown, revoked or expired keys get 401 in the provider's
error format; an unreadable vault gets 503 for every request (fail closed). The presented
key is removed from the request and never stored.
"""

from __future__ import annotations

import base64
import binascii
import logging
import weakref
from datetime import UTC, datetime
from pathlib import Path

from mitmproxy import connection, ctx, exceptions, http

from addons import privacy
from addons.errors import error_response
from addons.flowstate import FlowState, get_state
from addons.options import seconds
from addons.vault_watch import VaultHolder
from codexgate.core.vault import AuthError

log = logging.getLogger("codexgate.identity")

KEY_HEADERS = ("authorization", "x-api-key", "api-key")


def _basic_credentials(value: str) -> str | None:
    """The gateway key from ``Basic base64(user:password)``: the password, else the user."""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "basic":
        return token.strip() if scheme.lower() == "bearer" else None
    try:
        user, _, password = base64.b64decode(token.strip()).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return password or user or None


def presented_key(req: http.Request) -> str | None:
    for name in KEY_HEADERS:
        value = req.headers.get(name)
        if not value:
            continue
        if name == "authorization":
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            continue
        return value.strip()
    return None


class Identity:
    def __init__(self, holder: VaultHolder) -> None:
        self.holder = holder
        # proxy credentials sent on a CONNECT, per client connection (forward-proxy mode)
        self._proxy_keys: weakref.WeakKeyDictionary[connection.Client, str] = weakref.WeakKeyDictionary()

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option("codexgate_vault", str, "", "Path of the encrypted codexgate vault file.")
        loader.add_option(
            "codexgate_vault_key_file",
            str,
            "",
            "File holding the vault's encryption key (default: the CODEXGATE_VAULT_KEY environment variable).",
        )
        loader.add_option(
            "codexgate_vault_poll",
            str,
            "0.2",
            "Seconds between checks of the vault file for changes (hot reload).",
        )

    def configure(self, updated: set[str]) -> None:
        if not ({"codexgate_vault", "codexgate_vault_key_file"} & updated):
            return
        if not ctx.options.codexgate_vault:
            raise exceptions.OptionsError(
                "codexgate_vault is not set: start with --set codexgate_vault=PATH (create one with `codexgate init`)."
            )
        seconds("codexgate_vault_poll")
        key_file = (
            Path(ctx.options.codexgate_vault_key_file).expanduser()
            if ctx.options.codexgate_vault_key_file
            else None
        )
        self.holder.configure(Path(ctx.options.codexgate_vault).expanduser(), key_file)

    def running(self) -> None:
        self.holder.start(seconds("codexgate_vault_poll"))

    def done(self) -> None:
        self.holder.stop()

    def http_connect(self, flow: http.HTTPFlow) -> None:
        value = flow.request.headers.get("proxy-authorization")
        if value:
            key = _basic_credentials(value)
            if key:
                self._proxy_keys[flow.client_conn] = key

    def request(self, flow: http.HTTPFlow) -> None:
        state = get_state(flow)
        if state is None or flow.response is not None:
            return
        key = self._take_key(flow, state)
        vault = self.holder.vault
        if vault is None:
            self._refuse(
                flow, state, 503, "vault_unavailable", f"codexgate cannot serve requests: {self.holder.error}"
            )
            return
        if not key:
            where = (
                "as proxy credentials (HTTPS_PROXY=http://codexgate:KEY@host:port)"
                if state.mode == "forward"
                else "as 'Authorization: Bearer <key>'"
            )
            self._refuse(
                flow, state, 401, "missing_api_key", f"No codexgate key: send your gateway key {where}."
            )
            return
        try:
            entry = vault.authenticate(key, datetime.now(UTC))
        except AuthError as exc:
            self._refuse(flow, state, 401, exc.code, exc.message)
            return
        state.identity = entry
        team = vault.teams.get(f"{entry.org}/{entry.team}")
        state.privacy_mode = privacy.strictest(entry.privacy_mode, team.privacy_mode if team else None)
        state.decide("identity", "allow", entry.key_id)
        merged = dict(state.tags)
        merged.update(entry.tags)  # the key's tags are governance: a request header cannot override them
        state.tags = merged

    def _take_key(self, flow: http.HTTPFlow, state: FlowState) -> str | None:
        """The gateway key of this request; strips it (and proxy credentials) from the request."""
        req = flow.request
        key: str | None = None
        if state.mode == "forward":
            proxy_auth = req.headers.get("proxy-authorization")
            key = _basic_credentials(proxy_auth) if proxy_auth else self._proxy_keys.get(flow.client_conn)
            if key is None:
                bearer = presented_key(req)
                key = bearer if bearer and bearer.startswith("cgk_") else None
        else:
            key = presented_key(req)
        for name in (*KEY_HEADERS, "proxy-authorization"):
            if name in req.headers:
                del req.headers[name]
        return key

    @staticmethod
    def _refuse(flow: http.HTTPFlow, state: FlowState, status: int, code: str, message: str) -> None:
        state.refuse(status, code, message, "identity")
        flow.response = error_response(state.shape.family, status, code, message)
