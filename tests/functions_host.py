"""A small local host for the Function App's functions, for tests.

It indexes ``function_app`` as the Functions host does, calls the HTTP functions
with real ``func.HttpRequest`` objects routed by their own bindings, and delivers
messages from the real run queue (Azurite) the way the host does: base64-decoded,
with a dequeue count, and deleted only when the function returns. ``Loopback``
serves the HTTP functions over https on 127.0.0.1 and keeps delivering queue
messages, for clients that speak HTTP.
"""

from __future__ import annotations

import base64
import importlib
import json
import re
import ssl
import sys
import threading
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient

from sync_core.runqueue import RUN_QUEUE

BASE_URL = "http://localhost"


def fresh_app() -> types.ModuleType:
    """function_app imported afresh: the SDK lets an app list its functions once."""
    sys.modules.pop("function_app", None)
    return importlib.import_module("function_app")


def bindings(module: types.ModuleType) -> dict[str, list[dict[str, Any]]]:
    return {
        f.get_function_name(): [json.loads(raw) for raw in f.get_raw_bindings()]
        for f in module.app.get_functions()
    }


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP function's route, as its binding declares it."""

    function: str
    template: str
    pattern: re.Pattern[str]
    methods: frozenset[str]


class FunctionsHost:
    """The app's functions, called as the host would call them."""

    def __init__(self) -> None:
        # The SDK lets an app list its functions once.
        functions = fresh_app().app.get_functions()
        self.bindings = {
            f.get_function_name(): [json.loads(raw) for raw in f.get_raw_bindings()]
            for f in functions
        }
        self.functions = {
            f.get_function_name(): f.get_user_function() for f in functions
        }
        self.routes = [
            _route(name, binding)
            for name, declared in self.bindings.items()
            for binding in declared
            if binding["type"] == "httpTrigger"
        ]

    def http(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        base_url: str = BASE_URL,
    ) -> func.HttpResponse:
        """Calls the function whose route matches ``/api/<path>``."""
        parts = urlsplit(path)
        route, params = self.match(parts.path)
        request = func.HttpRequest(
            method=method,
            url=f"{base_url}/api/{path}",
            headers=dict(headers or {}),
            params=dict(parse_qsl(parts.query)),
            route_params=params,
            body=body,
        )
        response: func.HttpResponse = self.functions[route.function](request)
        return response

    def match(self, path: str) -> tuple[Route, dict[str, str]]:
        # Literal routes win over templates, as in the host's routing.
        for route in sorted(self.routes, key=lambda r: "{" in r.template):
            found = route.pattern.fullmatch(path)
            if found is not None:
                return route, found.groupdict()
        raise LookupError(f"no function's route matches {path!r}")

    def deliver(self, queue: QueueClient, *, function: str = "run_queued") -> int:
        """Delivers every message waiting on ``queue``; returns how many ran."""
        delivered = 0
        for raw in queue.receive_messages(visibility_timeout=300):
            body = base64.b64decode(raw.content)
            self.functions[function](
                queue_message(body, raw.dequeue_count or 1, raw.id)
            )
            queue.delete_message(raw)
            delivered += 1
        return delivered


def queue_message(
    body: bytes, dequeue_count: int = 1, message_id: str = "message"
) -> QueueMessage:
    """A queue message as the worker hands it to a function."""
    # The SDK's queue message class carries no annotations.
    message: QueueMessage = QueueMessage(  # type: ignore[no-untyped-call]
        id=message_id, body=body, dequeue_count=dequeue_count
    )
    return message


def run_queue(connection_string: str, name: str = RUN_QUEUE) -> QueueClient:
    """The queue as the host reads it: raw text, which the host base64-decodes."""
    queue = QueueClient.from_connection_string(connection_string, name)
    if not queue_exists(queue):
        queue.create_queue()
    queue.clear_messages()
    return queue


def queue_exists(queue: QueueClient) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        queue.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


def decoded(raw_content: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(base64.b64decode(raw_content))
    return document


class Loopback:
    """The HTTP functions over https on 127.0.0.1, with a function key and a queue
    pump, as a pipeline would reach the deployed app."""

    def __init__(
        self,
        host: FunctionsHost,
        queue: QueueClient,
        *,
        cert_chain: Path,
        private_key: Path,
        key: str,
    ) -> None:
        self.host = host
        self.key = key
        self.requests: list[tuple[str, str, int]] = []
        self._queue = queue
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert_chain), str(private_key))
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.errors: list[BaseException] = []

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    @contextmanager
    def running(self) -> Iterator[Loopback]:
        threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True),
            threading.Thread(target=self._pump, daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._server.shutdown()
            self._server.server_close()
            for thread in threads:
                thread.join(timeout=30)

    def _pump(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.host.deliver(self._queue)
            except Exception as error:  # noqa: BLE001 - the test reads errors
                self.errors.append(error)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        loopback = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                # The host answers 401 with no body when the function key is wrong.
                if self.headers.get("x-functions-key") != loopback.key:
                    self._send(401, b"", {})
                    return
                path = self.path.removeprefix("/api/")
                response = loopback.host.http(
                    self.command,
                    path,
                    body=body,
                    headers=dict(self.headers.items()),
                    base_url=f"https://{loopback.netloc}",
                )
                headers = dict(response.headers)
                headers["Content-Type"] = response.mimetype or "application/json"
                self._send(response.status_code, response.get_body(), headers)

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                loopback.requests.append((self.command, self.path, status))
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = handle_one  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        return Handler


def _route(name: str, binding: Mapping[str, Any]) -> Route:
    template = str(binding["route"])
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    methods = frozenset(str(m).upper() for m in binding.get("methods") or ())
    return Route(name, template, re.compile(regex), methods)
