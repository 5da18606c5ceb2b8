"""A TCP forwarder between streamq and Redis that a test can cut, as a network failure would."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading

from streamq.testing import free_port


class CutProxy:
    """Forwards 127.0.0.1:``port`` to the server at ``upstream_port``.

    :meth:`cut` drops every open connection and stops listening (new connections are refused)
    until :meth:`restore`. One thread accepts; one thread relays each connection.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.accepted = 0
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._want_listen = threading.Event()
        self._listening = threading.Event()
        self._closed_listener = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        """``redis://`` URL through the proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> CutProxy:
        """Start listening."""
        self._want_listen.set()
        self._thread.start()
        if not self._listening.wait(5):
            raise RuntimeError(f"proxy did not listen on {self.port}")
        return self

    def cut(self) -> int:
        """Drop every connection and refuse new ones; return how many were dropped."""
        self._closed_listener.clear()
        self._want_listen.clear()
        if not self._closed_listener.wait(5):
            raise RuntimeError("proxy did not stop listening")
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        return len(pairs)

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        self._listening.clear()
        self._want_listen.set()
        if not self._listening.wait(5):
            raise RuntimeError(f"proxy did not listen again on {self.port}")

    def close(self) -> None:
        """Stop the proxy and drop everything."""
        self.cut()
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> CutProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _listen(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        sock.settimeout(0.02)
        return sock

    def _serve(self) -> None:
        listener: socket.socket | None = None
        try:
            while not self._stop.is_set():
                if self._want_listen.is_set() and listener is None:
                    listener = self._listen()
                    self._listening.set()
                elif not self._want_listen.is_set():
                    if listener is not None:
                        listener.close()
                        listener = None
                    self._closed_listener.set()
                    self._want_listen.wait(0.02)
                    continue
                assert listener is not None
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                self._open(client)
        finally:
            if listener is not None:
                listener.close()
            self._closed_listener.set()

    def _open(self, client: socket.socket) -> None:
        client.settimeout(None)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        pair = (client, upstream)
        with self._lock:
            self._pairs.add(pair)
            self.accepted += 1
        threading.Thread(target=self._relay, args=(pair,), daemon=True).start()

    def _relay(self, pair: tuple[socket.socket, socket.socket]) -> None:
        a, b = pair
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.5):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            with self._lock:
                self._pairs.discard(pair)
            for s in pair:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
