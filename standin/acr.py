"""The ACR data plane: token exchange, the distribution API and ``/acr/v1``.

The login server is ``127.0.0.1:<port>``; content lives in the ACR backend (a
docker-registry without auth) and this front adds what ACR adds:

- ``POST /oauth2/exchange`` (``grant_type=access_token``, ``service``,
  ``access_token`` from Entra ID) answers ``{"refresh_token"}``;
- ``POST /oauth2/token`` (``grant_type=refresh_token``, ``service``, one or more
  ``scope``, ``refresh_token``) answers ``{"access_token"}`` scoped to exactly the
  repositories and actions asked, less what the caller's roles do not allow;
- ``GET /oauth2/token?service=&scope=`` with Basic auth (user
  ``00000000-0000-0000-0000-000000000000``, password a refresh token) does the same
  for docker-style clients such as skopeo;
- ``/v2/...`` answers 401 with ``WWW-Authenticate: Bearer realm,service,scope``
  until a token covers the route, then proxies to the backend;
- ``/acr/v1/_catalog``, ``/acr/v1/{repo}``, ``/_tags``, ``/_tags/{tag}``,
  ``/_manifests`` and ``/_manifests/{digest}`` answer in the shapes the
  azure-containerregistry SDK deserializes (its ``_generated/models``).

Times the backend does not keep (when a tag was created or moved) are noted as
the stand-in writes tags; a tag it never saw written dates from the stand-in's
start.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from standin.copying import (
    INDEX_TYPES,
    MANIFEST_ACCEPT,
    Backend,
    Manifest,
    digest_of,
    is_digest,
    repository_path,
)
from standin.stats import RequestLabel
from standin.tokens import (
    CATALOG,
    REGISTRY,
    REPOSITORY,
    Access,
    Claims,
    TokenError,
    TokenSigner,
    data_actions,
    granted,
    parse_scopes,
)

if TYPE_CHECKING:
    from standin.faults import Fault
    from standin.server import Exchange, Tunables

logger = logging.getLogger(__name__)

# The audiences ACR accepts in an exchanged Entra ID token: its own, and ARM's.
AAD_AUDIENCES = frozenset(
    {
        "https://containerregistry.azure.net",
        "https://containerregistry.azure.net/",
        "https://management.azure.com",
        "https://management.azure.com/",
        "https://management.core.windows.net",
        "https://management.core.windows.net/",
    }
)
# The user name ACR expects with a refresh token as the password.
TOKEN_USER = "00000000-0000-0000-0000-000000000000"  # noqa: S105 - a fixed user name
REFRESH_GRANT = "refresh_token"
ACCESS_GRANT = "access_token"
ISSUER = "Azure Container Registry"
CATALOG_PAGE = 1000

_V2_ROUTE = re.compile(
    r"^/v2/(?P<name>.+?)/(?P<kind>manifests|blobs|tags)/(?P<rest>.*)$"
)
_ACR_ROUTE = re.compile(
    r"^/acr/v1/(?P<name>.+?)(?:/(?P<kind>_tags|_manifests)(?:/(?P<ref>[^/]+))?)?/?$"
)
_PASSED_HEADERS = (
    "Content-Type",
    "Content-Length",
    "Docker-Content-Digest",
    "Docker-Upload-UUID",
    "Etag",
    "Range",
    "Accept-Ranges",
    "Content-Range",
    "Location",
    "Link",
)
_CHANGEABLE = {
    "deleteEnabled": True,
    "writeEnabled": True,
    "readEnabled": True,
    "listEnabled": True,
}


class AcrStore:
    """The registry's content: the backend, and when tags and manifests were written."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._started = _timestamp(datetime.now(UTC))
        self._lock = threading.Lock()
        self._tags: dict[tuple[str, str], tuple[str, str, str]] = {}
        self._manifests: dict[tuple[str, str], str] = {}

    def manifest_written(self, repository: str, digest: str) -> None:
        with self._lock:
            self._manifests.setdefault(
                (repository, digest), _timestamp(datetime.now(UTC))
            )

    def tag_written(self, repository: str, tag: str, digest: str) -> None:
        now = _timestamp(datetime.now(UTC))
        with self._lock:
            known = self._tags.get((repository, tag))
            if known is None:
                self._tags[(repository, tag)] = (digest, now, now)
            elif known[0] != digest:
                self._tags[(repository, tag)] = (digest, known[1], now)
            self._manifests.setdefault((repository, digest), now)

    def tag_times(self, repository: str, tag: str, digest: str) -> tuple[str, str]:
        """When the tag was created and last moved."""
        with self._lock:
            known = self._tags.get((repository, tag))
        if known is None:
            return self._started, self._started
        created, updated = known[1], known[2]
        if known[0] != digest:
            # Moved behind the stand-in's back: all it knows is that it moved.
            updated = _timestamp(datetime.now(UTC))
        return created, updated

    def manifest_time(self, repository: str, digest: str) -> str:
        with self._lock:
            return self._manifests.get((repository, digest), self._started)

    def repositories(self) -> list[str]:
        names: list[str] = []
        target: str | None = f"/v2/_catalog?n={CATALOG_PAGE}"
        while target:
            reply = self.backend.request("GET", target)
            if reply.status != 200:
                break
            names += reply.json().get("repositories") or []
            link = reply.header("Link")
            target = link[1 : link.index(">")] if link else None
        return sorted(names)

    def tags(self, repository: str) -> list[str] | None:
        """The repository's tags; None when the repository is unknown."""
        reply = self.backend.request(
            "GET", f"/v2/{repository_path(repository)}/tags/list"
        )
        if reply.status != 200:
            return None
        return sorted(reply.json().get("tags") or [])

    def resolve(self, repository: str, reference: str) -> Manifest | None:
        target = f"/v2/{repository_path(repository)}/manifests/{reference}"
        reply = self.backend.request("GET", target, {"Accept": MANIFEST_ACCEPT})
        if reply.status != 200:
            return None
        media_type = (reply.header("Content-Type") or "").split(";")[0].strip()
        return Manifest(media_type, reply.body, digest_of(reply.body))

    def config_of(self, repository: str, manifest: Manifest) -> dict[str, Any]:
        """The image config an image manifest points at; empty when unreadable."""
        config = manifest.document().get("config") or {}
        digest = config.get("digest")
        if not digest:
            return {}
        reply = self.backend.request(
            "GET", f"/v2/{repository_path(repository)}/blobs/{digest}"
        )
        if reply.status != 200:
            return {}
        try:
            document = reply.json()
        except ValueError:
            return {}
        return document if isinstance(document, dict) else {}


@dataclass(frozen=True, slots=True)
class _Need:
    """What a data-plane route needs from the access token."""

    access: Access | None

    @property
    def challenge_scope(self) -> str | None:
        return str(self.access) if self.access else None


class AcrFront:
    """The ACR login server: OAuth2 token endpoints, ``/v2`` and ``/acr/v1``."""

    def __init__(
        self,
        *,
        port: int,
        store: AcrStore,
        signer: TokenSigner,
        tunables: Tunables,
        tenant_id: str,
        role_assignments: Mapping[str, Iterable[str]],
    ) -> None:
        self.login_server = f"127.0.0.1:{port}"
        self._realm = f"https://{self.login_server}/oauth2/token"
        self._store = store
        self._signer = signer
        self._tunables = tunables
        self._tenant_id = tenant_id
        self._roles = {
            principal: tuple(roles) for principal, roles in role_assignments.items()
        }

    # Labels

    def label(self, exchange: Exchange) -> RequestLabel:
        path, method = exchange.path, exchange.method
        if path == "/oauth2/exchange":
            return RequestLabel("acr", "exchange")
        if path == "/oauth2/token":
            fields = exchange.query if method == "GET" else exchange.form()
            scopes = parse_scopes(fields.get("scope", []))
            names = frozenset(
                scope.name for scope in scopes if scope.type == REPOSITORY
            )
            return RequestLabel("acr", "token", names)
        if path.startswith("/acr/v1/"):
            acr_match = _ACR_ROUTE.match(path)
            names = frozenset()
            if acr_match is not None and acr_match["name"] != "_catalog":
                names = frozenset({unquote(acr_match["name"])})
            return RequestLabel("acr", "acr_api", names)

        match = _V2_ROUTE.match(path)
        if match is None:
            return RequestLabel("acr", "other")
        names = frozenset({unquote(match["name"])})
        kind = "other"
        if match["kind"] == "manifests" and method in {"GET", "HEAD"}:
            kind = f"manifest_{method.lower()}"
        elif (
            match["kind"] == "blobs" and method == "GET" and match["rest"] != "uploads"
        ):
            kind = "blob_get"
        return RequestLabel("acr", kind, names)

    # Dispatch

    def handle(self, exchange: Exchange, fault: Fault | None) -> None:
        path = exchange.path
        if path == "/oauth2/exchange" and exchange.method == "POST":
            self._exchange(exchange)
        elif path == "/oauth2/token" and exchange.method in {"GET", "POST"}:
            self._token(exchange)
        elif path in {"/v2", "/v2/"}:
            if self._authorize(exchange, _Need(None)) is not None:
                exchange.send_json(
                    200, {}, {"Docker-Distribution-Api-Version": "registry/2.0"}
                )
        elif path == "/v2/_catalog":
            need = _Need(Access(REGISTRY, CATALOG, ("*",)))
            if self._authorize(exchange, need) is not None:
                self._proxy(exchange, exchange.target)
        elif path.startswith("/v2/"):
            self._serve_v2(exchange)
        elif path.startswith("/acr/v1/"):
            self._serve_acr_api(exchange)
        else:
            exchange.send_registry_errors(404, "NOT_FOUND", f"no route for {path}")

    def send_status(
        self,
        exchange: Exchange,
        status: int,
        code: str | None,
        message: str | None,
        headers: Mapping[str, str],
    ) -> None:
        default_code, default_message = _DEFAULT_ERRORS.get(
            status, ("UNAVAILABLE", "The service is unavailable.")
        )
        exchange.send_registry_errors(
            status, code or default_code, message or default_message, headers
        )

    # OAuth2

    def _refuse_other_service(
        self, exchange: Exchange, form: Mapping[str, list[str]]
    ) -> bool:
        """Answers 400 when a token request names another registry's service."""
        if _first(form, "service") == self.login_server:
            return False
        exchange.send_registry_errors(
            400, "DENIED", f"service must be {self.login_server}"
        )
        return True

    def _exchange(self, exchange: Exchange) -> None:
        form = exchange.form()
        grant_type = _first(form, "grant_type")
        if grant_type not in {"access_token", "access_token_refresh_token"}:
            exchange.send_registry_errors(
                400,
                "UNSUPPORTED",
                f"grant_type {grant_type!r} is not supported",
            )
            return
        if self._refuse_other_service(exchange, form):
            return

        try:
            aad = self._signer.verify(
                _first(form, "access_token") or "", audiences=AAD_AUDIENCES
            )
        except TokenError as error:
            exchange.send_registry_errors(
                401, "UNAUTHORIZED", f"invalid access token: {error}"
            )
            return
        if aad.get("tid") != self._tenant_id:
            exchange.send_registry_errors(
                401,
                "UNAUTHORIZED",
                f"the token's tenant must be {self._tenant_id}",
            )
            return

        principal = str(aad.get("oid") or "")
        refresh = self._signer.mint(
            {
                "sub": principal,
                "aud": self.login_server,
                "iss": ISSUER,
                "version": "1.0",
                "grant_type": REFRESH_GRANT,
                "tenant": self._tenant_id,
                "appid": aad.get("appid"),
                "permissions": {"actions": ["read"], "notActions": None},
                "roles": [],
            },
            self._tunables.token_ttl_seconds,
        )
        logger.debug("acr refresh token issued principal=%s", principal)
        exchange.send_json(200, {"refresh_token": refresh})

    def _token(self, exchange: Exchange) -> None:
        if exchange.method == "GET":
            fields = exchange.query
            basic = exchange.basic_credentials()
            if basic is None or basic[0] != TOKEN_USER:
                exchange.send_registry_errors(
                    401,
                    "UNAUTHORIZED",
                    f"authentication required: Basic auth as {TOKEN_USER} with a "
                    "refresh token as password",
                    {"WWW-Authenticate": f'Basic realm="{self._realm}"'},
                )
                return
            refresh_token = basic[1]
        else:
            fields = exchange.form()
            grant_type = _first(fields, "grant_type")
            if grant_type == "password" and _first(fields, "username") == TOKEN_USER:
                refresh_token = _first(fields, "password") or ""
            elif grant_type == REFRESH_GRANT:
                refresh_token = _first(fields, "refresh_token") or ""
            else:
                exchange.send_registry_errors(
                    400,
                    "UNSUPPORTED",
                    f"grant_type {grant_type!r} is not supported",
                )
                return

        if self._refuse_other_service(exchange, fields):
            return
        try:
            refresh = self._signer.verify(
                refresh_token, audiences={self.login_server}, grant_type=REFRESH_GRANT
            )
        except TokenError as error:
            exchange.send_registry_errors(
                401, "UNAUTHORIZED", f"invalid refresh token: {error}"
            )
            return

        principal = str(refresh.get("sub") or "")
        allowed = data_actions(self._roles.get(principal, ()))
        access = [
            Access(scope.type, scope.name, actions)
            for scope in parse_scopes(fields.get("scope", []))
            if (actions := _permitted(scope, allowed))
        ]
        token = self._signer.mint(
            {
                "sub": principal,
                "aud": self.login_server,
                "iss": ISSUER,
                "version": "1.0",
                "grant_type": ACCESS_GRANT,
                "tenant": self._tenant_id,
                "access": [entry.to_claim() for entry in access],
                "roles": [],
            },
            self._tunables.token_ttl_seconds,
        )
        exchange.send_json(200, {"access_token": token})

    def _authorize(self, exchange: Exchange, need: _Need) -> Claims | None:
        """The access token's claims when they cover the need; otherwise 401."""
        token = exchange.bearer_token()
        claims: Claims | None = None
        if token:
            try:
                claims = self._signer.verify(
                    token, audiences={self.login_server}, grant_type=ACCESS_GRANT
                )
            except TokenError:
                claims = None
        access = need.access
        if claims is not None and (
            access is None
            or all(
                granted(claims, access.type, access.name, action)
                for action in access.actions
            )
        ):
            return claims

        challenge = f'Bearer realm="{self._realm}",service="{self.login_server}"'
        detail = None
        if access is not None:
            challenge += f',scope="{need.challenge_scope}"'
            detail = [
                {"Type": access.type, "Name": access.name, "Action": action}
                for action in access.actions
            ]
        exchange.send_registry_errors(
            401,
            "UNAUTHORIZED",
            "authentication required, visit https://aka.ms/acr/authorization for more "
            "information.",
            {"WWW-Authenticate": challenge},
            detail=detail,
        )
        return None

    # Distribution API

    def _serve_v2(self, exchange: Exchange) -> None:
        match = _V2_ROUTE.match(exchange.path)
        if match is None:
            exchange.send_registry_errors(
                404, "NOT_FOUND", f"no route for {exchange.path}"
            )
            return
        name = unquote(match["name"])
        actions = _actions_for(exchange.method, match["kind"], match["rest"])
        if actions is None:
            exchange.send_registry_errors(
                405, "UNSUPPORTED", "The operation is unsupported."
            )
            return
        if self._authorize(exchange, _Need(Access(REPOSITORY, name, actions))) is None:
            return

        suffix = exchange.target[match.start("kind") :]
        target = f"/v2/{repository_path(name)}/{suffix}"
        status = self._proxy(exchange, target)
        if match["kind"] == "manifests" and exchange.method == "PUT" and status == 201:
            reference = unquote(match["rest"])
            digest = digest_of(exchange.body)
            if is_digest(reference):
                self._store.manifest_written(name, digest)
            else:
                self._store.tag_written(name, reference, digest)

    def _proxy(self, exchange: Exchange, target: str) -> int:
        forwarded = {
            name: value
            for name in (
                "Accept",
                "Content-Type",
                "Range",
                "Content-Range",
                "If-None-Match",
            )
            if (value := exchange.header(name))
        }
        body = exchange.body if exchange.method in {"PUT", "POST", "PATCH"} else None
        with self._store.backend.stream(
            exchange.method, target, forwarded, body
        ) as response:
            headers = [
                (name, self._front_location(value) if name == "Location" else value)
                for name in _PASSED_HEADERS
                if (value := response.headers.get(name)) is not None
            ]
            headers.append(("Docker-Distribution-Api-Version", "registry/2.0"))
            exchange.relay(response.status, headers, response)
            return response.status

    def _front_location(self, location: str) -> str:
        """A backend Location made relative, so the client comes back to the front."""
        parts = urlsplit(location)
        return f"{parts.path}?{parts.query}" if parts.query else parts.path

    # /acr/v1

    def _serve_acr_api(self, exchange: Exchange) -> None:
        if exchange.method != "GET":
            exchange.send_registry_errors(
                405, "UNSUPPORTED", "The operation is unsupported."
            )
            return
        if exchange.path.rstrip("/") == "/acr/v1/_catalog":
            need = _Need(Access(REGISTRY, CATALOG, ("*",)))
            if self._authorize(exchange, need) is not None:
                self._send_catalog(exchange)
            return

        match = _ACR_ROUTE.match(exchange.path)
        if match is None:
            exchange.send_registry_errors(
                404, "NOT_FOUND", f"no route for {exchange.path}"
            )
            return
        name = unquote(match["name"])
        need = _Need(Access(REPOSITORY, name, ("metadata_read",)))
        if self._authorize(exchange, need) is None:
            return

        tags = self._store.tags(name)
        if tags is None:
            exchange.send_registry_errors(
                404,
                "NAME_UNKNOWN",
                "repository name not known to registry",
                detail={"name": name},
            )
            return
        reference = unquote(match["ref"]) if match["ref"] else None
        kind = match["kind"]
        if kind is None:
            self._send_repository(exchange, name, tags)
        elif kind == "_tags" and reference is None:
            self._send_tag_list(exchange, name, tags)
        elif kind == "_tags" and reference is not None:
            self._send_tag(exchange, name, reference)
        elif reference is None:
            self._send_manifest_list(exchange, name, tags)
        else:
            self._send_manifest(exchange, name, reference, tags)

    def _send_catalog(self, exchange: Exchange) -> None:
        names = self._store.repositories()
        page, link = _page(exchange, names, lambda name: name, "/acr/v1/_catalog")
        exchange.send_json(200, {"repositories": page}, link)

    def _send_repository(self, exchange: Exchange, name: str, tags: list[str]) -> None:
        pairs = self._tag_digests(name, tags)
        digests = {digest for _, digest in pairs}
        times = [self._store.tag_times(name, tag, digest) for tag, digest in pairs]
        exchange.send_json(
            200,
            {
                "registry": self.login_server,
                "imageName": name,
                "createdTime": min((created for created, _ in times), default=_now()),
                "lastUpdateTime": max(
                    (updated for _, updated in times), default=_now()
                ),
                "manifestCount": len(digests),
                "tagCount": len(tags),
                "changeableAttributes": {**_CHANGEABLE, "teleportEnabled": False},
            },
        )

    def _send_tag_list(self, exchange: Exchange, name: str, tags: list[str]) -> None:
        wanted = exchange.query_value("digest")
        entries = [
            self._tag_attributes(name, tag, digest)
            for tag, digest in self._tag_digests(name, tags)
            if wanted is None or digest == wanted
        ]
        order = exchange.query_value("orderby")
        if order in {"timedesc", "timeasc"}:
            entries.sort(
                key=lambda entry: entry["lastUpdateTime"], reverse=order == "timedesc"
            )
        page, link = _page(
            exchange,
            entries,
            lambda entry: entry["name"],
            f"/acr/v1/{quote(name, safe='')}/_tags",
        )
        exchange.send_json(
            200, {"registry": self.login_server, "imageName": name, "tags": page}, link
        )

    def _send_tag(self, exchange: Exchange, name: str, tag: str) -> None:
        manifest = self._store.resolve(name, tag)
        if manifest is None:
            exchange.send_registry_errors(
                404, "TAG_UNKNOWN", "the specified tag does not exist"
            )
            return
        exchange.send_json(
            200,
            {
                "registry": self.login_server,
                "imageName": name,
                "tag": self._tag_attributes(name, tag, manifest.digest),
            },
        )

    def _send_manifest_list(
        self, exchange: Exchange, name: str, tags: list[str]
    ) -> None:
        by_digest: dict[str, list[str]] = {}
        for tag, digest in self._tag_digests(name, tags):
            by_digest.setdefault(digest, []).append(tag)
        entries: list[dict[str, Any]] = []
        seen: set[str] = set()
        for digest in list(by_digest):
            manifest = self._store.resolve(name, digest)
            if manifest is None:
                continue
            pending = [manifest]
            while pending:
                current = pending.pop()
                if current.digest in seen:
                    continue
                seen.add(current.digest)
                entries.append(
                    self._manifest_attributes(
                        name, current, by_digest.get(current.digest, [])
                    )
                )
                if current.media_type in INDEX_TYPES:
                    pending += [
                        child
                        for child_digest in current.children()
                        if (child := self._store.resolve(name, child_digest))
                        is not None
                    ]
        order = exchange.query_value("orderby")
        if order in {"timedesc", "timeasc"}:
            entries.sort(
                key=lambda entry: entry["lastUpdateTime"], reverse=order == "timedesc"
            )
        page, link = _page(
            exchange,
            entries,
            lambda entry: entry["digest"],
            f"/acr/v1/{quote(name, safe='')}/_manifests",
        )
        exchange.send_json(
            200,
            {"registry": self.login_server, "imageName": name, "manifests": page},
            link,
        )

    def _send_manifest(
        self, exchange: Exchange, name: str, reference: str, tags: list[str]
    ) -> None:
        manifest = self._store.resolve(name, reference)
        if manifest is None:
            exchange.send_registry_errors(
                404,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
                detail={"Tag": reference},
            )
            return
        pointing = [
            tag
            for tag, digest in self._tag_digests(name, tags)
            if digest == manifest.digest
        ]
        exchange.send_json(
            200,
            {
                "registry": self.login_server,
                "imageName": name,
                "manifest": self._manifest_attributes(name, manifest, pointing),
            },
        )

    def _tag_digests(self, name: str, tags: list[str]) -> list[tuple[str, str]]:
        pairs = []
        for tag in tags:
            manifest = self._store.resolve(name, tag)
            if manifest is not None:
                pairs.append((tag, manifest.digest))
        return pairs

    def _tag_attributes(self, name: str, tag: str, digest: str) -> dict[str, Any]:
        created, updated = self._store.tag_times(name, tag, digest)
        return {
            "name": tag,
            "digest": digest,
            "createdTime": created,
            "lastUpdateTime": updated,
            "signed": False,
            "changeableAttributes": dict(_CHANGEABLE),
        }

    def _manifest_attributes(
        self, name: str, manifest: Manifest, tags: list[str]
    ) -> dict[str, Any]:
        document = manifest.document()
        created = self._store.manifest_time(name, manifest.digest)
        attributes: dict[str, Any] = {
            "digest": manifest.digest,
            "imageSize": len(manifest.data),
            "createdTime": created,
            "lastUpdateTime": created,
            "mediaType": manifest.media_type,
            "tags": tags,
            "changeableAttributes": {**_CHANGEABLE, "quarantineState": "Passed"},
        }
        if manifest.media_type in INDEX_TYPES:
            entries = document.get("manifests") or []
            attributes["imageSize"] = sum(
                int(entry.get("size", 0)) for entry in entries
            )
            attributes["references"] = [
                {
                    "digest": entry.get("digest"),
                    "architecture": (entry.get("platform") or {}).get("architecture"),
                    "os": (entry.get("platform") or {}).get("os"),
                }
                for entry in entries
            ]
            return attributes
        config = self._store.config_of(name, manifest)
        attributes["imageSize"] = sum(size for _, size in manifest.blobs())
        attributes["configMediaType"] = (document.get("config") or {}).get("mediaType")
        if config.get("architecture"):
            attributes["architecture"] = config["architecture"]
        if config.get("os"):
            attributes["os"] = config["os"]
        return attributes


def _actions_for(method: str, kind: str, rest: str) -> tuple[str, ...] | None:
    """The scope actions a ``/v2/<name>/...`` route needs; None when unsupported."""
    uploading = kind == "blobs" and (rest == "uploads" or rest.startswith("uploads/"))
    if uploading:
        return ("pull", "push")
    if method in {"GET", "HEAD"}:
        return ("pull",)
    if method == "PUT" and kind == "manifests":
        return ("pull", "push")
    if method == "DELETE" and kind in {"manifests", "blobs"}:
        return ("delete",)
    return None


def _permitted(scope: Access, allowed: frozenset[str]) -> tuple[str, ...]:
    """The actions of a requested scope the caller's roles allow."""
    if scope.type == REGISTRY and scope.name == CATALOG:
        return ("*",) if "catalog" in allowed else ()
    if scope.type != REPOSITORY:
        return ()
    if "*" in scope.actions:
        return tuple(sorted(allowed - {"catalog"}))
    return tuple(action for action in scope.actions if action in allowed)


def _page(
    exchange: Exchange,
    items: list[Any],
    key: Callable[[Any], str],
    path: str,
) -> tuple[list[Any], dict[str, str]]:
    """One page of a listing after ``last``, at most ``n`` long, with its next Link."""
    last = exchange.query_value("last")
    if last:
        items = [item for item in items if key(item) > last]
    size_text = exchange.query_value("n")
    if not size_text or not size_text.isdigit() or int(size_text) <= 0:
        return items, {}
    size = int(size_text)
    page = items[:size]
    if len(items) <= size:
        return page, {}
    query = {
        "last": key(page[-1]),
        "n": size,
        "orderby": exchange.query_value("orderby") or "",
    }
    return page, {"Link": f'<{path}?{urlencode(query)}>; rel="next"'}


def _first(fields: Mapping[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _now() -> str:
    return _timestamp(datetime.now(UTC))


_DEFAULT_ERRORS: Mapping[int, tuple[str, str]] = {
    401: ("UNAUTHORIZED", "authentication required"),
    403: ("DENIED", "requested access to the resource is denied"),
    404: ("NOT_FOUND", "not found"),
    429: ("TOOMANYREQUESTS", "Too many requests."),
}
