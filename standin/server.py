"""The Azure stand-in: managed identity, ARM, the ACR data plane and the public
registry fronts, each on its own loopback port, speaking the real wire contracts
so that the official clients work against it unchanged.

Usage: ``python -m standin.server CONFIG_JSON_PATH``

The configuration (JSON) names the TLS files, the tenant, subscription and
registry, the managed identities and their role assignments, and the two
docker-registry backends (see ``load_config``). Every listener binds 127.0.0.1 on
a port the kernel picks; once all listen, ``<state_dir>/ports.json`` is written
atomically::

    {"pid": N, "identity": P, "arm": P, "acr": P, "public": {"docker.io": P, ...}}

The managed identity endpoint is plain http, as App Service's is; the rest is
https with the configured server certificate. SIGTERM or SIGINT stops it cleanly.

The control API lives on the ARM port under ``/_standin/`` (no auth):

- ``GET /_standin/stats``, ``POST /_standin/stats/reset`` (also refills Docker
  Hub's pull allowance); the public requests an import sent are also counted
  apart under ``via_import`` (see ``standin.stats``);
- ``GET /_standin/config``, ``POST /_standin/config`` with any of the tunables:
  ``latency_ms`` (one round trip: every request waits it, and the first on a
  connection waits one more for TCP's handshake and, over https, one more for
  TLS 1.3's; an import's own pulls wait none, they happen within
  ``import_duration_ms``), ``import_duration_ms`` (each import, once it has one
  of the ``max_concurrent_imports`` slots), ``max_concurrent_imports``,
  ``token_ttl_seconds``, ``poll_after_ms``, ``dockerhub_pull_limit``; the
  configuration file may set their start values under ``"tunables"``;
- ``GET``, ``POST``, ``DELETE /_standin/faults`` (schema in ``standin.faults``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import parse_qs, urlsplit

from standin.acr import AcrFront, AcrStore
from standin.arm import ArmFront, Importer, SourceResolver, registry_id
from standin.copying import Backend, RegistryWriter
from standin.faults import Fault, FaultBook, InvalidFaultRuleError, parse_rules
from standin.identity import IdentityEndpoint, ManagedIdentity
from standin.public import PublicFront
from standin.stats import IMPORT_USER_AGENT, RequestLabel, Stats
from standin.tokens import TokenSigner

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
PORTS_FILE = "ports.json"
CONTROL_PREFIX = "/_standin/"
HANDLER_TIMEOUT_SECONDS = 120
_COPY_CHUNK = 1 << 16

Headers = Mapping[str, str] | Sequence[tuple[str, str]]


class ConfigError(ValueError):
    """The configuration file breaks the contract; the message names the key."""


@dataclass(frozen=True, slots=True)
class StandinConfig:
    """The configuration file, checked."""

    state_dir: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    tenant_id: str
    subscription_id: str
    resource_group: str
    registry_name: str
    header_secret: str
    system_assigned: ManagedIdentity | None
    user_assigned: tuple[ManagedIdentity, ...]
    role_assignments: Mapping[str, tuple[str, ...]]
    acr_backend: str
    public_backend: str
    public_registries: tuple[str, ...]
    dockerhub_credentials: tuple[str, str] | None
    location: str = "westeurope"
    tunables: Mapping[str, Any] = field(default_factory=dict)


def load_config(path: Path) -> StandinConfig:
    """Reads and checks the configuration file; a broken one names its key."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"the configuration must be a readable JSON file: {path}: {error}"
        ) from error
    if not isinstance(raw, dict):
        raise ConfigError(f"the configuration must be a JSON object: {path}")

    identity = _section(raw, "identity")
    system = identity.get("system_assigned")
    credentials = raw.get("dockerhub_credentials")
    return StandinConfig(
        state_dir=Path(_text(raw, "state_dir")),
        ca_cert=Path(_text(raw, "ca_cert")),
        server_cert=Path(_text(raw, "server_cert")),
        server_key=Path(_text(raw, "server_key")),
        tenant_id=_text(raw, "tenant_id"),
        subscription_id=_text(raw, "subscription_id"),
        resource_group=_text(raw, "resource_group"),
        registry_name=_text(raw, "registry_name"),
        header_secret=_text(identity, "header_secret", "identity."),
        system_assigned=_identity(system, "SystemAssigned") if system else None,
        user_assigned=tuple(
            _identity(entry, "UserAssigned")
            for entry in identity.get("user_assigned") or ()
        ),
        role_assignments={
            str(principal): tuple(str(role) for role in roles)
            for principal, roles in (raw.get("role_assignments") or {}).items()
        },
        acr_backend=_text(raw, "acr_backend"),
        public_backend=_text(raw, "public_backend"),
        public_registries=tuple(
            str(host) for host in raw.get("public_registries") or ()
        ),
        dockerhub_credentials=(
            (_text(credentials, "username"), _text(credentials, "password"))
            if isinstance(credentials, dict)
            else None
        ),
        location=str(raw.get("location") or "westeurope"),
        tunables=dict(raw.get("tunables") or {}),
    )


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise ConfigError(f"the configuration needs an object at {key}")
    return value


def _text(raw: Mapping[str, Any], key: str, prefix: str = "") -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"the configuration needs a non-empty string at {prefix}{key}"
        )
    return value


def _identity(raw: Any, kind: str) -> ManagedIdentity:
    if not isinstance(raw, dict):
        raise ConfigError(f"a managed identity is an object, got {raw!r}")
    return ManagedIdentity(
        client_id=_text(raw, "client_id", "identity."),
        principal_id=_text(raw, "principal_id", "identity."),
        kind=kind,
    )


@dataclass(slots=True)
class Tunables:
    """Knobs a test or a benchmark may turn while the stand-in runs."""

    latency_ms: int = 0
    import_duration_ms: int = 0
    max_concurrent_imports: int = 10
    token_ttl_seconds: int = 3600
    poll_after_ms: int = 20
    dockerhub_pull_limit: int = 100

    def update(self, values: Mapping[str, Any]) -> None:
        """Sets the given knobs, all or none; the error names every bad one."""
        minimums = {
            "latency_ms": 0,
            "import_duration_ms": 0,
            "max_concurrent_imports": 1,
            "token_ttl_seconds": 1,
            # azure-core falls back to its 30 s polling interval on a zero delay.
            "poll_after_ms": 1,
            "dockerhub_pull_limit": 0,
        }
        problems = []
        for name, value in values.items():
            if name not in minimums:
                problems.append(f"unknown tunable {name}")
            elif isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{name} must be an integer, got {value!r}")
            elif value < minimums[name]:
                problems.append(f"{name} must be >= {minimums[name]}, got {value}")
        if problems:
            raise ValueError("; ".join(problems))
        for name, value in values.items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, int]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


class Exchange:
    """One request and the means to answer it, handed to a surface."""

    def __init__(self, handler: _RequestHandler, body: bytes) -> None:
        self._handler = handler
        self.method: str = handler.command
        self.target: str = handler.path
        parts = urlsplit(handler.path)
        self.path: str = parts.path
        self.query: dict[str, list[str]] = parse_qs(parts.query, keep_blank_values=True)
        self.headers = handler.headers
        self.body = body
        self.answered = False
        # The first request on a connection waits for its handshakes too.
        self.opens_connection = False

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        """A header's value; repeated lines are joined, as RFC 9110, section 5.3
        allows (skopeo sends one ``Accept`` line per media type)."""
        values = self.headers.get_all(name)
        return ", ".join(values) if values else None

    def form(self) -> dict[str, list[str]]:
        """The body as ``application/x-www-form-urlencoded`` fields."""
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def json_body(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body)

    def bearer_token(self) -> str | None:
        scheme, _, value = (self.header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return value.strip() or None

    def basic_credentials(self) -> tuple[str, str] | None:
        scheme, _, value = (self.header("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, colon, password = decoded.partition(":")
        return (username, password) if colon else None

    def send(
        self,
        status: int,
        body: bytes = b"",
        headers: Headers = (),
        *,
        content_type: str | None = None,
    ) -> None:
        """Answers; Content-Length follows the body unless the headers give it."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        names = {name.lower() for name, _ in pairs}
        if content_type and "content-type" not in names:
            pairs.append(("Content-Type", content_type))
        if "content-length" not in names:
            pairs.append(("Content-Length", str(len(body))))
        self._start(status, pairs)
        if self.method != "HEAD" and body:
            self._handler.wfile.write(body)

    def send_json(self, status: int, value: Any, headers: Headers = ()) -> None:
        body = json.dumps(value, separators=(",", ":")).encode()
        self.send(status, body, headers, content_type="application/json; charset=utf-8")

    def send_registry_errors(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        *,
        detail: object = None,
    ) -> None:
        """Answers in the OCI distribution spec's error shape, as registries do."""
        body = {"errors": [{"code": code, "message": message, "detail": detail}]}
        self.send_json(
            status,
            body,
            {**(headers or {}), "Docker-Distribution-Api-Version": "registry/2.0"},
        )

    def send_stream(
        self, status: int, headers: Headers, stream: BinaryIO, length: int | None
    ) -> None:
        """Answers with ``length`` bytes copied from a stream; with no length given,
        with all the stream holds."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        pairs = [
            (name, value) for name, value in pairs if name.lower() != "content-length"
        ]
        if length is None:
            self.send(status, stream.read(), pairs)
            return
        pairs.append(("Content-Length", str(length)))
        self._start(status, pairs)
        if self.method == "HEAD":
            return
        remaining = length
        while remaining > 0:
            chunk = stream.read(min(_COPY_CHUNK, remaining))
            if not chunk:
                raise ConnectionError(f"the stream ended {remaining} bytes early")
            self._handler.wfile.write(chunk)
            remaining -= len(chunk)

    def relay(self, status: int, headers: Headers, response: Any) -> None:
        """Answers with a backend's response: its status, the given headers, and its
        body streamed through (no body for a HEAD)."""
        given = response.headers.get("Content-Length")
        length = int(given) if given is not None else None
        if self.method == "HEAD":
            self.send(status, b"", headers)
        else:
            self.send_stream(status, headers, response, length)

    def drop(self) -> None:
        """Closes the connection without an answer."""
        self.answered = True
        self._handler.close_connection = True
        with contextlib.suppress(OSError):
            self._handler.connection.shutdown(socket.SHUT_RDWR)

    def _start(self, status: int, headers: Sequence[tuple[str, str]]) -> None:
        if self.answered:
            raise RuntimeError(f"{self.method} {self.path} was answered twice")
        self.answered = True
        self._handler.send_response(status)
        for name, value in headers:
            self._handler.send_header(name, value)
        self._handler.end_headers()


class Surface(Protocol):
    """One of the stand-in's services, behind one listener."""

    def label(self, exchange: Exchange) -> RequestLabel: ...

    def handle(self, exchange: Exchange, fault: Fault | None) -> None: ...

    def send_status(
        self,
        exchange: Exchange,
        status: int,
        code: str | None,
        message: str | None,
        headers: Mapping[str, str],
    ) -> None:
        """Answers with an error status in this surface's own error shape."""


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, dispatcher: Dispatcher, tls: ssl.SSLContext | None) -> None:
        super().__init__((LOOPBACK, 0), _RequestHandler)
        self.dispatcher = dispatcher
        self.surface: Surface | None = None
        self.control: ControlApi | None = None
        # Round trips before a new connection carries a request: TCP's handshake,
        # and TLS 1.3's (RFC 8446, section 2: one round trip).
        self.handshake_round_trips = 1 if tls is None else 2
        if tls is not None:
            # The handshake happens in the handler's thread, never in accept().
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the address up in DNS; a loopback
        # listener has no need to ask anyone.
        socketserver.TCPServer.server_bind(self)
        self.server_name = LOOPBACK
        self.server_port = self.server_address[1]

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug(
            "connection from %s ended with an error", client_address, exc_info=True
        )


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = HANDLER_TIMEOUT_SECONDS
    # Headers and body leave in separate writes; with Nagle's algorithm the body
    # would wait for the client's delayed ACK, some 40 ms a request.
    disable_nagle_algorithm = True
    server: _Listener

    def setup(self) -> None:
        super().setup()
        self._requests_served = 0
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self) -> None:
        exchange = Exchange(self, self._read_body())
        exchange.opens_connection = self._requests_served == 0
        self._requests_served += 1
        try:
            self.server.dispatcher.dispatch(self.server, exchange)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        except Exception:
            logger.exception("request %s %s failed", exchange.method, exchange.path)
            if not exchange.answered:
                exchange.send_json(500, {"error": "the stand-in failed; see its log"})
            return
        if not exchange.answered:
            logger.error("request %s %s got no answer", exchange.method, exchange.path)
            exchange.send_json(500, {"error": "the stand-in gave no answer"})

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        # RFC 9112, section 7.1: size line, data, CRLF; a zero size ends it.
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline().strip():
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()


class ControlApi:
    """``/_standin/``: stats, tunables and fault rules, for tests and benchmarks."""

    def __init__(
        self,
        stats: Stats,
        tunables: Tunables,
        faults: FaultBook,
        publics: Mapping[str, PublicFront],
    ) -> None:
        self._stats = stats
        self._tunables = tunables
        self._faults = faults
        self._publics = publics

    def handle(self, exchange: Exchange) -> None:
        route = (
            exchange.method,
            exchange.path.removeprefix(CONTROL_PREFIX).rstrip("/"),
        )
        if route == ("GET", "stats"):
            exchange.send_json(200, self._stats.snapshot())
        elif route == ("POST", "stats/reset"):
            self._stats.reset()
            for front in self._publics.values():
                front.reset_rate_limits()
            exchange.send_json(200, self._stats.snapshot())
        elif route == ("GET", "config"):
            exchange.send_json(200, self._tunables.as_dict())
        elif route == ("POST", "config"):
            self._update_tunables(exchange)
        elif route == ("GET", "faults"):
            exchange.send_json(200, {"rules": self._faults.describe()})
        elif route == ("POST", "faults"):
            self._replace_faults(exchange)
        elif route == ("DELETE", "faults"):
            self._faults.clear()
            exchange.send_json(200, {"rules": []})
        else:
            exchange.send_json(
                404, {"error": f"no control route {exchange.method} {exchange.path}"}
            )

    def _update_tunables(self, exchange: Exchange) -> None:
        try:
            values = exchange.json_body()
            if not isinstance(values, dict):
                raise ValueError(f"the tunables are a JSON object, got {values!r}")
            self._tunables.update(values)
        except ValueError as error:
            exchange.send_json(400, {"error": str(error)})
            return
        exchange.send_json(200, self._tunables.as_dict())

    def _replace_faults(self, exchange: Exchange) -> None:
        try:
            rules = parse_rules(exchange.json_body())
        except (ValueError, InvalidFaultRuleError) as error:
            exchange.send_json(400, {"error": str(error)})
            return
        self._faults.replace(rules)
        exchange.send_json(200, {"rules": self._faults.describe()})


class Dispatcher:
    """Routes each request: control API, or label, count, fault, then surface."""

    def __init__(self, stats: Stats, tunables: Tunables, faults: FaultBook) -> None:
        self._stats = stats
        self._tunables = tunables
        self._faults = faults

    def dispatch(self, listener: _Listener, exchange: Exchange) -> None:
        if listener.control is not None and exchange.path.startswith(CONTROL_PREFIX):
            listener.control.handle(exchange)
            return
        surface = listener.surface
        if surface is None:
            exchange.send_json(503, {"error": "the stand-in is starting"})
            return

        label = surface.label(exchange)
        via_import = exchange.header("User-Agent") == IMPORT_USER_AGENT
        self._stats.count(label, via_import=via_import)
        fault = self._faults.take(label)

        # The network latency is the app's, between it and Azure or a registry; an
        # import's own pulls happen inside Azure, within the import's duration. A
        # new connection's handshakes cost round trips of their own.
        round_trips = 1
        if exchange.opens_connection:
            round_trips += listener.handshake_round_trips
        delay_ms = 0 if via_import else self._tunables.latency_ms * round_trips
        delay_ms += fault.latency_ms if fault else 0
        if delay_ms > 0:
            time.sleep(delay_ms / 1000)

        if fault is not None and fault.close:
            logger.info(
                "fault: connection closed surface=%s kind=%s", label.surface, label.kind
            )
            exchange.drop()
            return
        if fault is not None and fault.status is not None:
            logger.info(
                "fault: status %s surface=%s kind=%s",
                fault.status,
                label.surface,
                label.kind,
            )
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after.header_value()
            surface.send_status(
                exchange, fault.status, fault.code, fault.message, headers
            )
            return

        try:
            surface.handle(exchange, fault)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as error:
            if exchange.answered:
                raise
            # Answered in the surface's own error shape, so the client can read it.
            logger.exception("request %s %s failed", exchange.method, exchange.path)
            message = f"The stand-in failed: {type(error).__name__}: {error}"
            surface.send_status(exchange, 500, None, message, {})


class StandinServer:
    """Every listener of the stand-in, bound at construction, served by ``start``."""

    def __init__(self, config: StandinConfig) -> None:
        self.config = config
        self.tunables = Tunables()
        self.tunables.update(config.tunables)
        self.stats = Stats(config.public_registries)
        self.faults = FaultBook()
        dispatcher = Dispatcher(self.stats, self.tunables, self.faults)

        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(str(config.server_cert), str(config.server_key))
        client_tls = ssl.create_default_context(cafile=str(config.ca_cert))

        self._identity = _Listener(dispatcher, None)
        self._arm = _Listener(dispatcher, server_tls)
        self._acr = _Listener(dispatcher, server_tls)
        self._public = {
            host: _Listener(dispatcher, server_tls) for host in config.public_registries
        }
        self._threads: list[threading.Thread] = []
        self._build_surfaces(client_tls)

    def _build_surfaces(self, client_tls: ssl.SSLContext) -> None:
        config = self.config
        signer = TokenSigner.from_secret(config.header_secret)
        public_backend = Backend(config.public_backend)
        publics = {
            host: PublicFront(
                host=host,
                port=listener.port,
                backend=public_backend,
                signer=signer,
                tunables=self.tunables,
                credentials=config.dockerhub_credentials,
            )
            for host, listener in self._public.items()
        }
        for host, listener in self._public.items():
            listener.surface = publics[host]

        store = AcrStore(Backend(config.acr_backend))
        self._identity.surface = IdentityEndpoint(
            header_secret=config.header_secret,
            system_assigned=config.system_assigned,
            user_assigned=config.user_assigned,
            tenant_id=config.tenant_id,
            signer=signer,
            tunables=self.tunables,
        )
        self._acr.surface = AcrFront(
            port=self._acr.port,
            store=store,
            signer=signer,
            tunables=self.tunables,
            tenant_id=config.tenant_id,
            role_assignments=config.role_assignments,
        )
        resolver = SourceResolver(
            public_ports={
                host: listener.port for host, listener in self._public.items()
            },
            acr_login_server=f"{LOOPBACK}:{self._acr.port}",
            acr_backend=store.backend,
            client_tls=client_tls,
            own_registry_id=registry_id(
                config.subscription_id, config.resource_group, config.registry_name
            ),
        )
        importer = Importer(
            resolver=resolver,
            writer=RegistryWriter(store.backend, store),
            tunables=self.tunables,
            stats=self.stats,
        )
        self._arm.surface = ArmFront(
            port=self._arm.port,
            acr_login_server=f"{LOOPBACK}:{self._acr.port}",
            tenant_id=config.tenant_id,
            subscription_id=config.subscription_id,
            resource_group=config.resource_group,
            registry_name=config.registry_name,
            location=config.location,
            role_assignments=config.role_assignments,
            signer=signer,
            tunables=self.tunables,
            importer=importer,
        )
        self._arm.control = ControlApi(self.stats, self.tunables, self.faults, publics)

    @property
    def ports(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "identity": self._identity.port,
            "arm": self._arm.port,
            "acr": self._acr.port,
            "public": {host: listener.port for host, listener in self._public.items()},
        }

    def _listeners(self) -> list[_Listener]:
        return [self._identity, self._arm, self._acr, *self._public.values()]

    def start(self) -> None:
        for listener in self._listeners():
            thread = threading.Thread(
                target=listener.serve_forever,
                kwargs={"poll_interval": 0.2},
                name=f"listener-{listener.port}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        # Each shutdown waits out its loop's poll interval; all at once, not in turn.
        stoppers = [
            threading.Thread(target=listener.shutdown, daemon=True)
            for listener in self._listeners()
        ]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join(timeout=5)
        for listener in self._listeners():
            listener.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def write_ports(self) -> Path:
        """Writes ``ports.json`` atomically: a reader sees all of it or none."""
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.config.state_dir / PORTS_FILE
        temporary = path.with_name(f".{PORTS_FILE}.{os.getpid()}")
        temporary.write_text(json.dumps(self.ports, indent=2) + "\n", encoding="utf-8")
        temporary.replace(path)
        return path


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 1:
        print("usage: python -m standin.server CONFIG_JSON_PATH", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        config = load_config(Path(arguments[0]))
        server = StandinServer(config)
    except (ConfigError, OSError, ssl.SSLError, ValueError) as error:
        print(f"the stand-in cannot start: {error}", file=sys.stderr)
        return 1

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())

    server.start()
    ports_path = server.write_ports()
    logger.info("stand-in listening ports=%s", json.dumps(server.ports))
    stopping.wait()

    logger.info("stand-in stopping")
    server.stop()
    with contextlib.suppress(OSError, ValueError):
        if json.loads(ports_path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            ports_path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
