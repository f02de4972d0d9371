"""A proxy on loopback that refuses everything and notes what was asked of it.

A tool run against the stand-in gets ``HTTPS_PROXY`` and ``HTTP_PROXY`` pointing
here and ``NO_PROXY`` naming loopback: its requests to the stand-in go straight
there, and whatever it tries to reach beyond (telemetry, an update check, a cloud
endpoint) ends here with 403 and is listed in ``attempts``.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

LOOPBACK = "127.0.0.1"


class _Refuser(BaseHTTPRequestHandler):
    server: _GuardServer

    def _refuse(self) -> None:
        # CONNECT names host:port; a plain proxied request names a whole URL.
        self.server.note(f"{self.command} {self.path}")
        self.send_response(403, "Refused by the benchmark's guard proxy")
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def do_CONNECT(self) -> None:
        self._refuse()

    def do_GET(self) -> None:
        self._refuse()

    def do_HEAD(self) -> None:
        self._refuse()

    def do_POST(self) -> None:
        self._refuse()

    def do_PUT(self) -> None:
        self._refuse()

    def do_PATCH(self) -> None:
        self._refuse()

    def do_DELETE(self) -> None:
        self._refuse()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the attempts are the record."""


class _GuardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), _Refuser)
        self._lock = threading.Lock()
        self.attempts: list[str] = []

    def note(self, attempt: str) -> None:
        with self._lock:
            self.attempts.append(attempt)


class GuardProxy:
    """Runs the refusing proxy in a thread while in a ``with`` block."""

    def __init__(self) -> None:
        self._server = _GuardServer()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="guard-proxy",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    @property
    def attempts(self) -> list[str]:
        """Every request that tried to leave loopback, in order."""
        with self._server._lock:
            return list(self._server.attempts)

    def environment(self) -> dict[str, str]:
        """Proxy variables that send all but loopback traffic here."""
        no_proxy = f"{LOOPBACK},localhost"
        return {
            "HTTPS_PROXY": self.url,
            "HTTP_PROXY": self.url,
            "https_proxy": self.url,
            "http_proxy": self.url,
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
