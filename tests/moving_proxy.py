"""A TCP forwarder whose target can move: the shape of a DNS name or a proxy moving to a new writer.

Connections accepted before a move stay on the old server (as connections resolved
before a DNS change do); connections accepted after it reach the new one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

LOOPBACK = "127.0.0.1"


class MovingProxy:
    """Listen on 127.0.0.1:`port`; forward each new connection to the current target."""

    host = LOOPBACK

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._accept, name="moving-proxy", daemon=True)
        self.thread.start()

    def __repr__(self) -> str:
        return f"<MovingProxy {LOOPBACK}:{self.port} -> {self.target[0]}:{self.target[1]}>"

    def move(self, target: tuple[str, int]) -> None:
        """Send connections accepted from now on to `target`; open ones stay where they are."""
        self.target = target

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                if self.closed:
                    client.close()
                    upstream.close()
                    return
                self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def cleanup(self) -> None:
        """Stop listening and close every forwarded connection."""
        with self.lock:
            self.closed = True
            sockets, self.sockets = self.sockets, []
        # shutdown wakes the thread blocked in accept(); close alone does not, on Linux.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.thread.join(timeout=5)


def _pump(source: socket.socket, sink: Any) -> None:
    """Copy bytes one way until either side closes; then close both ways."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
