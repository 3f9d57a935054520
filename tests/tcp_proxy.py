"""A TCP proxy for tests that cuts connections: between a client and a real
server, it forwards bytes both ways and, for the connections told to, drops
the connection after the server has sent a given number of bytes (a server
that crashes or a network that fails mid-transfer); ``sever`` cuts every
open connection at a moment the test chooses.

``cuts`` is a list of byte budgets used first-in first-out, one per new
connection; connections after the list runs out pass everything through.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field


@dataclass
class CuttingProxy:
    upstream: tuple[str, int]
    host: str = "127.0.0.1"
    cuts: list[int] = field(default_factory=list)
    connections: int = 0
    cut_connections: int = 0
    port: int = 0
    _listener: socket.socket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sockets: list[socket.socket] = field(default_factory=list)

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()

    def sever(self) -> None:
        """Cut every connection open now (new ones still pass)."""
        with self._lock:
            open_sockets, self._sockets = self._sockets, []
        for sock in open_sockets:
            _close(sock)

    def stop(self) -> None:
        if self._listener is not None:
            # shutdown wakes the thread blocked in accept(); close alone does not.
            _close(self._listener)
        with self._lock:
            for sock in self._sockets:
                _close(sock)

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _address = self._listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(self.upstream, timeout=30)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            with self._lock:
                self.connections += 1
                budget = self.cuts.pop(0) if self.cuts else None
                self._sockets += [client, server]
            threading.Thread(target=_pump, args=(client, server, None), daemon=True).start()
            threading.Thread(
                target=self._pump_from_server, args=(server, client, budget), daemon=True
            ).start()

    def _pump_from_server(
        self, source: socket.socket, target: socket.socket, budget: int | None
    ) -> None:
        if _pump(source, target, budget):
            with self._lock:
                self.cut_connections += 1


def _pump(source: socket.socket, target: socket.socket, budget: int | None) -> bool:
    """Copy until EOF, or until ``budget`` bytes went through: then cut
    both ends (True)."""
    sent = 0
    try:
        while True:
            chunk = source.recv(65536)
            if not chunk:
                break
            if budget is not None and sent + len(chunk) >= budget:
                target.sendall(chunk[: budget - sent])
                _close(source)
                _close(target)
                return True
            target.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    _close(source)
    _close(target)
    return False


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@contextmanager
def cutting_proxy(
    port: int, *, host: str = "127.0.0.1", cuts: list[int] | None = None
) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(("127.0.0.1", port), host=host, cuts=list(cuts or []))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
