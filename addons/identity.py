"""Authenticates every gateway call with a scoped gateway key from the vault.

The key arrives as ``Authorization: Bearer cgk_…`` (or ``x-api-key`` / ``api-key``) in
base-URL mode, or as proxy credentials (``Proxy-Authorization``, on the CONNECT or the
request) in forward-proxy mode. Unknown, revoked or expired keys get 401 in the provider's
error format; an unreadable vault gets 503 for every request (fail closed). The presented
key is removed from the request and never stored.
"""

from __future__ import annotations

import logging
import weakref
from datetime import UTC, datetime
from pathlib import Path

from mitmproxy import connection, ctx, exceptions, http

from addons import privacy
from addons.credentials import basic_or_bearer
from addons.errors import error_response
from addons.failsafe import failsafe
from addons.flowstate import FlowState, get_state
from addons.options import seconds
from addons.vault_watch import VaultHolder
from codexgate.core.vault import AuthError

log = logging.getLogger("codexgate.identity")


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

    @failsafe
    def http_connect(self, flow: http.HTTPFlow) -> None:
        value = flow.request.headers.get("proxy-authorization")
        if value:
            key = basic_or_bearer(value)
            if key:
                self._proxy_keys[flow.client_conn] = key

    @failsafe
    def request(self, flow: http.HTTPFlow) -> None:
        state = get_state(flow)
        if state is None or flow.response is not None:
            return
        key = state.request.presented_key
        state.request.presented_key = None  # compared once below, then forgotten
        if key is None and state.request.mode == "forward":
            key = self._proxy_keys.get(flow.client_conn)  # proxy credentials sent on the CONNECT
        vault = self.holder.vault
        if vault is None:
            # the reason (paths, files) is in the gateway log; the client only learns it is down
            self._refuse(
                flow, state, 503, "vault_unavailable", "codexgate cannot serve requests right now (vault unavailable)."
            )
            return
        if key == "":
            self._refuse(flow, state, 401, "invalid_api_key", "Invalid codexgate key.")
            return
        if not key:
            where = (
                "as proxy credentials (HTTPS_PROXY=http://codexgate:KEY@host:port)"
                if state.request.mode == "forward"
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
        state.verdict.identity = entry
        team = vault.teams.get(f"{entry.org}/{entry.team}")
        state.verdict.privacy_mode = privacy.strictest(entry.privacy_mode, team.privacy_mode if team else None)
        state.decide("identity", "allow", entry.key_id)
        merged = dict(state.request.tags)
        merged.update(entry.tags)  # the key's tags are governance: a request header cannot override them
        state.request.tags = merged

    @staticmethod
    def _refuse(flow: http.HTTPFlow, state: FlowState, status: int, code: str, message: str) -> None:
        state.refuse(status, code, message, "identity")
        flow.response = error_response(state.request.shape.family, status, code, message)
