"""Fail closed by construction: no exception in an addon can get a request past the gate.

mitmproxy runs a script's addons as children of one addon, and an exception in child k skips
children k+1… for that hook, after which the flow goes on (a request is forwarded as it
stands). Three layers make sure that never opens the gateway:

1. ``@failsafe`` wraps every hook of every gateway addon. An exception is logged (type and
   place only — never the exception text, which may quote untrusted input or a secret); the
   call is refused with 500 ``gateway_error`` in the provider's error format and gets its
   trace row; later addons see the refusal and stand aside. Hooks after the request was sent
   (``response``/``error``) only record.
2. The upstream step (``addons.upstream.Upstream``) injects credentials and forwards only a
   flow whose state carries an ``allow`` from every required policy and no refusal
   (``FlowState.cleared_for``); anything else is refused there.
3. ``Backstop`` is registered as a separate *top-level* addon, so it runs even if the whole
   script chain was cut short: any gateway flow reaching the end of ``request`` without the
   upstream step's clearance and without a reply is refused.

Invariant: a request that reaches a provider was authenticated, scoped and cleared by every
policy in this process, and carries only the credential the upstream step put there.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from mitmproxy import ctx, http
from mitmproxy.proxy.mode_specs import ReverseMode

from addons.errors import error_response
from addons.flowstate import STATE_KEY, FlowState, get_state

log = logging.getLogger("codexgate.failsafe")

CLEARED_KEY = "codexgate_cleared"  # set by the upstream step on the flow it forwards
GATEWAY_ERROR = "gateway_error"

F = TypeVar("F", bound=Callable[..., Any])

_PRE_FORWARD_HOOKS = frozenset({"requestheaders", "request", "http_connect"})


def _flow_of(args: tuple[Any, ...]) -> http.HTTPFlow | None:
    for a in args:
        if isinstance(a, http.HTTPFlow):
            return a
    return None


def refuse_on_error(flow: http.HTTPFlow, where: str, exc: BaseException) -> None:
    """Record an internal error on the flow; before forwarding, refuse it with 500."""
    log.error("codexgate: internal error in %s (%s); the call is refused", where, type(exc).__name__)
    state = get_state(flow)
    if state is None:
        state = FlowState.for_unparsed(flow)
        flow.metadata[STATE_KEY] = state
    state.verdict.gateway_error = f"{where}: {type(exc).__name__}"
    if where.rsplit(".", 1)[-1] not in _PRE_FORWARD_HOOKS:
        return  # already sent upstream: tracing records the error in the call's row
    message = "codexgate could not process this request (internal error); it was not forwarded."
    state.refuse(500, GATEWAY_ERROR, message, "failsafe")
    flow.metadata.pop(CLEARED_KEY, None)
    flow.response = error_response(state.request.shape.family, 500, GATEWAY_ERROR, message)


def _on_error(where: str, args: tuple[Any, ...], exc: Exception) -> None:
    flow = _flow_of(args)
    if flow is None:
        log.error("codexgate: internal error in %s (%s)", where, type(exc).__name__)
    else:
        refuse_on_error(flow, where, exc)


def failsafe(func: F) -> F:
    """Decorator for an addon hook (sync or async): any exception fails the call closed."""
    where = func.__qualname__

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            except Exception as exc:
                _on_error(where, args, exc)
                return None

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            _on_error(where, args, exc)
            return None

    return wrapper  # type: ignore[return-value]


def is_gateway_flow(flow: http.HTTPFlow, is_provider_host: Callable[[str], bool]) -> bool:
    """Model traffic the gateway must control: everything in base-URL (reverse) mode, and
    requests to provider hosts in forward-proxy mode."""
    if flow.request.method == "CONNECT":
        return False
    if isinstance(flow.client_conn.proxy_mode, ReverseMode):
        return True
    try:
        return is_provider_host(flow.request.pretty_host)
    except Exception:
        return True  # cannot tell: treat as gateway traffic (fail closed)


class Backstop:
    """Top-level addon (outside the script's chain): refuses any gateway flow that reached the
    end of the ``request`` hook without the upstream step's clearance and without a reply."""

    def __init__(self, is_provider_host: Callable[[str], bool]) -> None:
        self.is_provider_host = is_provider_host
        self.refused = 0

    def request(self, flow: http.HTTPFlow) -> None:
        try:
            if flow.response is not None or flow.metadata.get(CLEARED_KEY):
                return
            state = get_state(flow)
            if state is None and not is_gateway_flow(flow, self.is_provider_host):
                return
            if state is not None and state.request.passthrough:
                return
            self.refused += 1
            refuse_on_error(flow, "Backstop.request", RuntimeError("flow not cleared by the upstream step"))
        except Exception:  # never let the backstop itself be the hole
            flow.metadata.pop(CLEARED_KEY, None)
            flow.response = http.Response.make(
                500, b'{"error":{"message":"codexgate internal error","type":"server_error","code":"gateway_error"}}'
            )


def install_backstop(is_provider_host: Callable[[str], bool]) -> Backstop | None:
    """Add the Backstop as a top-level addon once (a script reload keeps the existing one)."""
    try:
        master = ctx.master
    except AttributeError:
        return None
    existing = master.addons.get("backstop")
    if existing is not None:
        existing.is_provider_host = is_provider_host
        return existing
    backstop = Backstop(is_provider_host)
    master.addons.add(backstop)
    return backstop
