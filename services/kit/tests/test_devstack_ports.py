"""`make run` restarts at once: a port whose last connections wait out TIME-WAIT counts as free."""

from __future__ import annotations

import socket

from tongban_kit.devstack import _port_free


def test_port_with_connections_in_time_wait_is_free_again() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    served.close()  # the server closes first, as a stopping server does: its side enters TIME-WAIT
    client.recv(1)
    client.close()
    listener.close()
    with socket.socket() as plain:  # what the check did before: a bind without SO_REUSEADDR is refused
        try:
            plain.bind(("127.0.0.1", port))
            in_time_wait = False
        except OSError:
            in_time_wait = True
    assert in_time_wait, "the test needs the port's connection in TIME-WAIT"
    assert _port_free(port)


def test_port_with_a_listener_is_not_free() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not _port_free(listener.getsockname()[1])
