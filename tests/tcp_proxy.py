"""A TCP proxy on 127.0.0.1 that can black-hole its connections, as a frozen peer or a dead route would."""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:port to the server until ``black_hole()``; then every open connection
    stays open but nothing more crosses it, like a peer that froze or a route that died."""

    def __init__(self, host: str, port: int):
        self._target = (host, port)
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._holed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def black_hole(self) -> None:
        self._holed.set()

    def restore(self) -> None:
        """Forward again, for connections opened from now on."""
        self._holed = threading.Event()

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            # shutdown() first: it wakes a thread blocked in recv(), which close() alone does
            # not, and that thread would keep the server connection open.
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _upstream(self) -> socket.socket:
        host, port = self._target
        if host.startswith("/"):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(f"{host}/.s.PGSQL.{port}")
            return sock
        return socket.create_connection((host, port))

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = self._upstream()
            self._sockets += [client, server]
            holed = self._holed
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink, holed), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, holed: threading.Event) -> None:
        try:
            while data := source.recv(65536):
                if not holed.is_set():
                    sink.sendall(data)
        except OSError:
            pass
        # The client hung up: end the upstream side too (a black hole still swallows it).
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
