"""Waiting for a local server's port: a TCP self-connection is not a listener.

Connecting to a loopback port nobody listens on can succeed when the kernel picks that same
port as the source (simultaneous open). The waiter then believed the gateway was up, and the
self-connected socket held the port so the gateway's bind failed ("address already in use";
seen once in CI as the demo's connection-refused failure)."""

from __future__ import annotations

import errno
import socket

import pytest

from codexgate.cli.launch import free_port, listening, self_connected


def test_a_self_connected_socket_is_recognised_and_blocks_the_servers_bind() -> None:
    port = free_port()
    me = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        me.bind(("127.0.0.1", port))
        me.connect(("127.0.0.1", port))  # what an unlucky connect to a free loopback port becomes
        assert self_connected(me)
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with server, pytest.raises(OSError) as exc:
            server.bind(("127.0.0.1", port))
        assert exc.value.errno == errno.EADDRINUSE  # the server that should have come up cannot
        assert not listening(port)
    finally:
        me.close()


def test_listening_tells_a_listener_from_a_free_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert listening(port)
        with socket.create_connection(("127.0.0.1", port)) as client:
            assert not self_connected(client)
    assert not listening(port)
