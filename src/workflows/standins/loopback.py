"""What every local stand-in server shares: an HTTP server on 127.0.0.1 in a thread of its own.

A stand-in subclasses :class:`LoopbackServer`, gives its request handler class
(:meth:`LoopbackServer.handler_class`) and the URL clients use (:meth:`LoopbackServer.url_for`),
and gets ``start()``/``stop()`` and use as a context manager. ``_stopping`` is set while the
server stops, so answers held back on purpose (a slow provider) wake at once. Standard library
only, like the stand-ins.
"""

from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

HOST = "127.0.0.1"


class ProviderBucket:
    """A provider's own rate limiter as the stand-ins model it: a token bucket holding one
    second of its rate (at least one token), full at the start, taken from when a request
    *arrives* — before the provider's answer time, as a real API counts its requests.

    Not thread-safe by itself: call :meth:`take` under the stand-in's lock.
    """

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive or None")
        self.rate = rate
        self._burst = max(1.0, rate)
        self._tokens = self._burst
        self._refilled_at = time.monotonic()

    def take(self) -> float | None:
        """Take a token: ``None``, or when there is none the ``Retry-After`` seconds (rounded
        up to the millisecond) after which one will be there."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled_at) * self.rate)
        self._refilled_at = now
        if self._tokens < 1.0:
            return round((1.0 - self._tokens) / self.rate + 0.0005, 3)
        self._tokens -= 1.0
        return None


class _Server(ThreadingHTTPServer):
    """A listen backlog for many clients at once: with the default of 5, connections beyond
    it wait for the client's SYN retry (about a second), which no real provider imposes."""

    request_queue_size = 128
    daemon_threads = True


class LoopbackServer:
    """Start, stop and the context manager of a stand-in served on ``127.0.0.1``."""

    #: The serving thread's name (shown in thread dumps).
    thread_name = "local-standin"
    #: A niceness for the serving thread and the request threads it starts (Linux sets it per
    #: thread), or ``None`` to leave it. A benchmark whose workers keep every core busy sets a
    #: negative one: the stand-in plays a provider on a machine of its own, and starved of CPU
    #: it would read requests late and in bunches, and refuse them for arriving together.
    serve_nice: int | None = None

    def __init__(self, port: int = 0) -> None:
        self._port = port
        #: Whether :attr:`serve_nice` took effect (``None`` when not asked; ``False`` when
        #: refused: raising a thread's priority takes root or ``CAP_SYS_NICE``).
        self.nice_applied: bool | None = None
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._url = ""

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        """The request handler bound to this stand-in."""
        raise NotImplementedError

    def url_for(self, host: str, port: int) -> str:
        """The base URL clients are given, once the port is known."""
        return f"http://{host}:{port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> str:
        """Serve in a background thread; returns the base URL."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self._stopping.clear()
        server = _Server((HOST, self._port), self.handler_class())
        self._server = server
        self._url = self.url_for(HOST, int(server.server_address[1]))
        niced = threading.Event()
        self._thread = threading.Thread(
            target=self._serve_forever,
            args=(server, niced),
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()
        niced.wait()
        return self._url

    def _serve_forever(self, server: _Server, niced: threading.Event) -> None:
        if self.serve_nice is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.serve_nice)
                self.nice_applied = True
            except OSError:
                self.nice_applied = False
        niced.set()
        server.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        """Stop serving and close the socket; waits for requests in flight. Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes answers held back on purpose
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
