"""A public registry's front: Docker Hub, quay.io, registry.k8s.io and the like.

Each front serves the distribution API for one registry host in front of the one
public backend, where that host's repositories are named ``<host>/<repository>``.
It behaves as the public registries do towards an anonymous or logged-in client:

- ``/v2/`` and every repository route want a Bearer token from the front's own
  token service, ``GET /token?service=S&scope=repository:R:pull[&scope=...]``;
  the answer is 401 with a ``WWW-Authenticate`` challenge otherwise;
- a token covers only the repositories asked for that exist, so a missing
  repository answers 401, not 404, even with a token (Docker Hub does this);
- an unknown manifest in an existing repository answers 404 MANIFEST_UNKNOWN;
- manifests honour ``Accept`` and answer ``Docker-Content-Digest``;
- on docker.io, Basic credentials sent to ``/token`` are checked, and every
  manifest answer carries ``ratelimit-limit`` and ``ratelimit-remaining``
  (``N;w=21600``); a GET uses up one pull, a HEAD none, and with none left the
  answer is 429 TOOMANYREQUESTS. The allowance is per account (anonymous is one).
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from standin.copying import Backend, repository_path
from standin.stats import PUBLIC_PREFIX, RequestLabel
from standin.tokens import (
    REPOSITORY,
    Access,
    TokenError,
    TokenSigner,
    granted,
    parse_scopes,
)

if TYPE_CHECKING:
    from standin.faults import Fault
    from standin.server import Exchange, Tunables

logger = logging.getLogger(__name__)

DOCKER_HUB = "docker.io"
DOCKER_HUB_SERVICE = "registry.docker.io"
RATE_LIMIT_WINDOW_SECONDS = 21600
TOKEN_PATH = "/token"  # noqa: S105 - a URL path, not a secret
ANONYMOUS = "anonymous"
PUBLIC_GRANT = "registry_token"

_ROUTE = re.compile(
    r"^/v2/(?P<name>.+?)/(?P<kind>manifests|blobs|tags)/(?P<rest>[^/]*)$"
)
_PASSED_HEADERS = (
    "Content-Type",
    "Content-Length",
    "Docker-Content-Digest",
    "Etag",
    "Accept-Ranges",
    "Content-Range",
    "Cache-Control",
)


class PublicFront:
    """The distribution API and token service of one public registry host."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        backend: Backend,
        signer: TokenSigner,
        tunables: Tunables,
        credentials: tuple[str, str] | None,
    ) -> None:
        self.host = host
        self.base_url = f"https://127.0.0.1:{port}"
        self.service = DOCKER_HUB_SERVICE if host == DOCKER_HUB else host
        self._realm = f"{self.base_url}{TOKEN_PATH}"
        self._backend = backend
        self._signer = signer
        self._tunables = tunables
        self._credentials = credentials if host == DOCKER_HUB else None
        self._lock = threading.Lock()
        self._pulls: dict[str, int] = {}

    def reset_rate_limits(self) -> None:
        with self._lock:
            self._pulls.clear()

    def label(self, exchange: Exchange) -> RequestLabel:
        surface = f"{PUBLIC_PREFIX}{self.host}"
        if exchange.path == TOKEN_PATH:
            scopes = parse_scopes(exchange.query.get("scope", []))
            names = frozenset(
                scope.name for scope in scopes if scope.type == REPOSITORY
            )
            return RequestLabel(surface, "token", names)

        match = _ROUTE.match(exchange.path)
        if match is None:
            return RequestLabel(surface, "other")
        repositories = frozenset({match["name"]})
        if match["kind"] == "manifests" and exchange.method in {"GET", "HEAD"}:
            return RequestLabel(
                surface, f"manifest_{exchange.method.lower()}", repositories
            )
        if match["kind"] == "blobs" and exchange.method == "GET":
            return RequestLabel(surface, "blob_get", repositories)
        return RequestLabel(surface, "other", repositories)

    def handle(self, exchange: Exchange, fault: Fault | None) -> None:
        if exchange.path == TOKEN_PATH and exchange.method == "GET":
            self._issue_token(exchange)
            return
        if exchange.path in {"/v2", "/v2/"} and exchange.method in {"GET", "HEAD"}:
            if self._authorized(exchange, None) is not None:
                exchange.send_json(
                    200, {}, {"Docker-Distribution-Api-Version": "registry/2.0"}
                )
            return

        match = _ROUTE.match(exchange.path)
        if match is None:
            exchange.send_registry_errors(
                404, "NOT_FOUND", f"no route for {exchange.path}"
            )
            return
        if exchange.method not in {"GET", "HEAD"}:
            exchange.send_registry_errors(
                405, "UNSUPPORTED", "The operation is unsupported."
            )
            return

        name = match["name"]
        claims = self._authorized(exchange, Access(REPOSITORY, name, ("pull",)))
        if claims is None:
            return
        account = str(claims.get("sub") or ANONYMOUS)
        if match["kind"] == "manifests":
            self._serve_manifest(exchange, name, match["rest"], account)
        elif match["kind"] == "blobs":
            self._proxy(exchange, f"{self._backend_name(name)}/blobs/{match['rest']}")
        else:
            self._serve_tags(exchange, name)

    def send_status(
        self,
        exchange: Exchange,
        status: int,
        code: str | None,
        message: str | None,
        headers: Mapping[str, str],
    ) -> None:
        if exchange.path == TOKEN_PATH:
            text = message or code or f"the token service answered {status}"
            exchange.send_json(status, {"details": text}, headers)
            return
        default_code, default_message = _DEFAULT_ERRORS.get(
            status, ("UNAVAILABLE", "service unavailable")
        )
        exchange.send_registry_errors(
            status, code or default_code, message or default_message, headers
        )

    # Token service

    def _issue_token(self, exchange: Exchange) -> None:
        service = exchange.query_value("service")
        if service and service != self.service:
            exchange.send_json(400, {"details": f"invalid service {service!r}"})
            return

        account = ANONYMOUS
        basic = exchange.basic_credentials()
        if basic is not None and self.host == DOCKER_HUB:
            if not self._credentials_match(basic):
                exchange.send_json(401, {"details": "incorrect username or password"})
                return
            account = basic[0]

        access = [
            Access(REPOSITORY, scope.name, ("pull",))
            for scope in parse_scopes(exchange.query.get("scope", []))
            if scope.type == REPOSITORY
            and {"pull", "*"} & set(scope.actions)
            and self._repository_exists(scope.name)
        ]
        ttl = self._tunables.token_ttl_seconds
        token = self._signer.mint(
            {
                "iss": self._realm,
                "aud": self.service,
                "sub": account,
                "grant_type": PUBLIC_GRANT,
                "access": [entry.to_claim() for entry in access],
            },
            ttl,
        )
        issued = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        exchange.send_json(
            200,
            {
                "token": token,
                "access_token": token,
                "expires_in": ttl,
                "issued_at": issued,
            },
        )

    def _credentials_match(self, basic: tuple[str, str]) -> bool:
        if self._credentials is None:
            return False
        username_ok = hmac.compare_digest(
            basic[0].encode(), self._credentials[0].encode()
        )
        password_ok = hmac.compare_digest(
            basic[1].encode(), self._credentials[1].encode()
        )
        return username_ok and password_ok

    def _repository_exists(self, name: str) -> bool:
        reply = self._backend.request(
            "GET", f"{self._backend_name(name)}/tags/list?n=1"
        )
        return reply.status == 200

    # Registry routes

    def _authorized(
        self, exchange: Exchange, need: Access | None
    ) -> dict[str, object] | None:
        """The token's claims when it covers the need; otherwise answers 401."""
        token = exchange.bearer_token()
        claims = None
        if token:
            try:
                claims = self._signer.verify(
                    token, audiences={self.service}, grant_type=PUBLIC_GRANT
                )
            except TokenError:
                claims = None
        if claims is not None and (
            need is None or granted(claims, need.type, need.name, need.actions[0])
        ):
            return claims

        challenge = f'Bearer realm="{self._realm}",service="{self.service}"'
        detail = None
        if need is not None:
            challenge += f',scope="{need}"'
            detail = [
                {"Type": need.type, "Class": "", "Name": need.name, "Action": "pull"}
            ]
        if token:
            challenge += (
                ',error="insufficient_scope"' if claims else ',error="invalid_token"'
            )
        exchange.send_registry_errors(
            401,
            "UNAUTHORIZED",
            "authentication required",
            {"WWW-Authenticate": challenge},
            detail=detail,
        )
        return None

    def _serve_manifest(
        self, exchange: Exchange, name: str, reference: str, account: str
    ) -> None:
        target = f"{self._backend_name(name)}/manifests/{reference}"
        if self.host != DOCKER_HUB:
            self._proxy(exchange, target)
            return

        limit = self._tunables.dockerhub_pull_limit
        window = RATE_LIMIT_WINDOW_SECONDS
        with self._lock:
            used = self._pulls.get(account, 0)
            counts = exchange.method == "GET" and used < limit
            if counts:
                used += 1
                self._pulls[account] = used
        headers = {
            "ratelimit-limit": f"{limit};w={window}",
            "ratelimit-remaining": f"{max(0, limit - used)};w={window}",
            "docker-ratelimit-source": account,
        }
        if exchange.method == "GET" and not counts:
            exchange.send_registry_errors(
                429,
                "TOOMANYREQUESTS",
                "You have reached your unauthenticated pull rate limit.",
                headers,
            )
            return
        status = self._proxy(exchange, target, headers)
        if counts and status != 200:
            # Only a manifest actually served is a pull.
            with self._lock:
                self._pulls[account] = max(0, self._pulls.get(account, 1) - 1)

    def _serve_tags(self, exchange: Exchange, name: str) -> None:
        query = exchange.target.partition("?")[2]
        reply = self._backend.request(
            "GET",
            f"{self._backend_name(name)}/tags/list" + (f"?{query}" if query else ""),
        )
        if reply.status != 200:
            exchange.send(reply.status, reply.body, content_type="application/json")
            return
        document = reply.json()
        document["name"] = name
        link = reply.header("Link")
        headers = {"Link": link.replace(f"/{self.host}/", "/", 1)} if link else {}
        exchange.send_json(200, document, headers)

    def _proxy(
        self, exchange: Exchange, target: str, extra: Mapping[str, str] | None = None
    ) -> int:
        """Forwards a GET or HEAD to the backend and streams the answer back."""
        forwarded = {
            name: value
            for name in ("Accept", "Range", "If-None-Match")
            if (value := exchange.header(name))
        }
        with self._backend.stream(exchange.method, target, forwarded) as response:
            headers = [
                (name, value)
                for name in _PASSED_HEADERS
                if (value := response.headers.get(name)) is not None
            ]
            headers.append(("Docker-Distribution-Api-Version", "registry/2.0"))
            headers += list((extra or {}).items())
            exchange.relay(response.status, headers, response)
            return response.status

    def _backend_name(self, name: str) -> str:
        return f"/v2/{repository_path(f'{self.host}/{name}')}"


_DEFAULT_ERRORS: Mapping[int, tuple[str, str]] = {
    401: ("UNAUTHORIZED", "authentication required"),
    403: ("DENIED", "requested access to the resource is denied"),
    404: ("NOT_FOUND", "not found"),
    429: ("TOOMANYREQUESTS", "You have reached your pull rate limit."),
}
