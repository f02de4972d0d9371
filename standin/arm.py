"""Azure Resource Manager for the one registry, and the imports it runs.

Routes (``api-version`` required on all but the cloud metadata):

- ``POST .../registries/{name}/importImage``: checks the caller's token and role,
  then answers 202 with ``Azure-AsyncOperation`` and ``Location`` (absolute URLs
  on this port) and ``retry-after-ms``; the import runs in the background;
- ``GET .../registries/{name}/operationStatuses/{id}``: ``{"status":
  "InProgress" | "Succeeded" | "Failed", "error": {"code", "message"}}``;
- ``GET .../registries/{name}/operationResults/{id}``: 202 while running, 204
  once it succeeded, the error once it failed;
- ``GET .../registries/{name}``, the registry lists by resource group and by
  subscription, the generic resource lists (``.../resources`` with a
  ``$filter`` of ``eq`` clauses, how the Azure CLI finds a registry's resource
  group), ``GET /subscriptions[/{id}]``, resource group, ``GET /tenants``,
  ``GET /metadata/endpoints`` (what ``az cloud register`` reads).

Errors are ARM's ``{"error": {"code", "message"}}``: 401 for a missing, expired,
forged or wrongly addressed token; 404 ``SubscriptionNotFound``,
``ResourceGroupNotFound``, ``ResourceNotFound``; 403 ``AuthorizationFailed``
naming the action, the principal and the scope; 400 for a malformed request.
Import errors are listed in ``standin.copying``; an unknown source registry
fails the import with ``InvalidParameters``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from standin.copying import (
    Backend,
    CopyError,
    CopyPlan,
    RegistryReader,
    RegistryWriter,
    copy_image,
    is_digest,
)
from standin.stats import IMPORT_USER_AGENT, RequestLabel, Stats
from standin.tokens import (
    IMPORT_ACTION,
    READ_REGISTRY_ACTION,
    Claims,
    TokenError,
    TokenProblem,
    TokenSigner,
    allows_arm_action,
)

if TYPE_CHECKING:
    import ssl

    from standin.faults import Fault
    from standin.server import Exchange, Tunables

logger = logging.getLogger(__name__)

ARM_AUDIENCES = frozenset(
    {
        "https://management.azure.com",
        "https://management.azure.com/",
        "https://management.core.windows.net",
        "https://management.core.windows.net/",
    }
)
DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
MODES = frozenset({"NoForce", "Force"})
TERMINAL = frozenset({"Succeeded", "Failed", "Canceled"})
PROVIDER = "Microsoft.ContainerRegistry/registries"

# Repository names and tags: the OCI distribution specification, "Pulling manifests".
_NAME = re.compile(
    r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_REGISTRY_ROUTE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.ContainerRegistry/registries/(?P<name>[^/]+)"
    r"(?:/(?P<action>importImage|operationStatuses|operationResults)(?:/(?P<op>[^/]+))?)?/?$",
    re.IGNORECASE,
)
_GROUP_REGISTRIES = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.ContainerRegistry/registries/?$",
    re.IGNORECASE,
)
_SUBSCRIPTION_REGISTRIES = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.ContainerRegistry/registries/?$",
    re.IGNORECASE,
)
_GROUP = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/?$", re.IGNORECASE
)
_SUBSCRIPTION = re.compile(r"^/subscriptions/(?P<sub>[^/]+)/?$", re.IGNORECASE)
_RESOURCES = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)(?:/resourceGroups/(?P<rg>[^/]+))?/resources/?$",
    re.IGNORECASE,
)
# One clause of an OData ``$filter`` on the resource list: ``field eq 'value'``.
_FILTER_CLAUSE = re.compile(r"^\s*(?P<field>\w+)\s+eq\s+'(?P<value>[^']*)'\s*$")
_FILTER_FIELDS = {"resourcetype": "type", "name": "name", "location": "location"}


def _timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def registry_id(subscription_id: str, resource_group: str, registry_name: str) -> str:
    """The ARM resource id of the registry."""
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
        f"/providers/{PROVIDER}/{registry_name}"
    )


class ImportRequestError(ValueError):
    """An import body breaks the API's rules; the message names the field."""


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """An ``importImage`` body, checked: where from, what, and where to."""

    registry_uri: str | None
    resource_id: str | None
    source_image: str
    repository: str
    tag: str | None
    digest: str | None
    credentials: tuple[str, str] | None
    target_tags: tuple[tuple[str, str], ...]
    untagged_repositories: tuple[str, ...]
    mode: str

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    @property
    def repositories(self) -> frozenset[str]:
        targets = {repository for repository, _ in self.target_tags}
        return frozenset({self.repository, *targets, *self.untagged_repositories})

    def plan(self, *, write_tags: bool) -> CopyPlan:
        return CopyPlan(
            source_repository=self.repository,
            reference=self.reference,
            target_tags=self.target_tags,
            untagged_repositories=self.untagged_repositories,
            force=self.mode == "Force",
            write_tags=write_tags,
        )

    def details(self) -> dict[str, Any]:
        """The request as the stats list it; never the password."""
        return {
            "source": self.registry_uri or self.resource_id,
            "sourceImage": self.source_image,
            "targetTags": [
                f"{repository}:{tag}" for repository, tag in self.target_tags
            ],
            "untaggedTargetRepositories": list(self.untagged_repositories),
            "mode": self.mode,
            "credentials": self.credentials is not None,
            "username": self.credentials[0] if self.credentials else None,
        }


def parse_import(body: Any) -> ImportRequest:
    """Checks an ``importImage`` body (ImportImageParameters in the REST API)."""
    if not isinstance(body, dict):
        raise ImportRequestError("The request body must be a JSON object.")
    source = body.get("source")
    if not isinstance(source, dict):
        raise ImportRequestError("The 'source' property is required.")

    registry_uri = _optional_text(source, "registryUri")
    resource_id = _optional_text(source, "resourceId")
    if not registry_uri and not resource_id:
        raise ImportRequestError(
            "One of 'source.registryUri' or 'source.resourceId' is required."
        )
    source_image = source.get("sourceImage")
    if not isinstance(source_image, str) or not source_image:
        raise ImportRequestError("The 'source.sourceImage' property is required.")
    repository, tag, digest = _split_image(source_image)

    credentials = None
    given = source.get("credentials")
    if given is not None:
        if not isinstance(given, dict) or not isinstance(given.get("password"), str):
            raise ImportRequestError(
                "'source.credentials' needs 'password'; a Key Vault secret is not "
                "supported."
            )
        credentials = (str(given.get("username") or ""), given["password"])

    mode = body.get("mode") or "NoForce"
    if mode not in MODES:
        raise ImportRequestError(f"'mode' must be NoForce or Force, got {mode!r}.")

    target_tags = tuple(
        _split_target(entry, tag) for entry in _text_list(body, "targetTags")
    )
    untagged = tuple(
        _checked_name(entry) for entry in _text_list(body, "untaggedTargetRepositories")
    )
    if not target_tags and not untagged:
        # Without targets the image lands where it came from.
        if tag or not digest:
            target_tags = ((repository, tag or "latest"),)
        else:
            untagged = (repository,)

    return ImportRequest(
        registry_uri=registry_uri,
        resource_id=resource_id,
        source_image=source_image,
        repository=repository,
        tag=tag,
        digest=digest,
        credentials=credentials,
        target_tags=target_tags,
        untagged_repositories=untagged,
        mode=mode,
    )


def _optional_text(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is not None and not isinstance(value, str):
        raise ImportRequestError(f"'{name}' must be a string, got {value!r}.")
    return value or None


def _text_list(raw: Mapping[str, Any], name: str) -> list[str]:
    value = raw.get(name) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ImportRequestError(f"'{name}' must be a list of strings, got {value!r}.")
    return value


def _split_image(image: str) -> tuple[str, str | None, str | None]:
    """``repository[:tag][@digest]`` into its parts."""
    name, _, digest = image.partition("@")
    if digest and not is_digest(digest):
        raise ImportRequestError(f"'sourceImage' has an invalid digest: {image!r}.")
    repository, tag = name, None
    head, colon, tail = name.rpartition(":")
    if colon and "/" not in tail:
        repository, tag = head, tail
        if not _TAG.match(tail):
            raise ImportRequestError(f"'sourceImage' has an invalid tag: {image!r}.")
    return _checked_name(repository), tag, digest or None


def _split_target(entry: str, source_tag: str | None) -> tuple[str, str]:
    """A target tag ``repository[:tag]``; without a tag, the source's (or latest)."""
    if "@" in entry:
        raise ImportRequestError(f"A target tag cannot hold a digest: {entry!r}.")
    head, colon, tail = entry.rpartition(":")
    if colon and "/" not in tail:
        if not _TAG.match(tail):
            raise ImportRequestError(f"Invalid target tag: {entry!r}.")
        return _checked_name(head), tail
    return _checked_name(entry), source_tag or "latest"


def _checked_name(name: str) -> str:
    if not _NAME.match(name):
        raise ImportRequestError(f"Invalid repository name: {name!r}.")
    return name


@dataclass(slots=True)
class ImportOperation:
    """One import, as its async-operation resource reports it."""

    id: str
    request: ImportRequest
    status: str = "InProgress"
    error: dict[str, str] | None = None
    digest: str | None = None
    start_time: str = field(default_factory=_timestamp)
    end_time: str | None = None


class SourceResolver:
    """Finds the registry an import reads from; never one off this machine."""

    def __init__(
        self,
        *,
        public_ports: Mapping[str, int],
        acr_login_server: str,
        acr_backend: Backend,
        client_tls: ssl.SSLContext,
        own_registry_id: str,
    ) -> None:
        self._public = {
            host: Backend(
                f"https://127.0.0.1:{port}",
                ssl_context=client_tls,
                headers={"User-Agent": IMPORT_USER_AGENT},
            )
            for host, port in public_ports.items()
        }
        port = acr_login_server.rpartition(":")[2]
        self._own_hosts = {acr_login_server, f"localhost:{port}"}
        self._acr_backend = acr_backend
        self._own_id = own_registry_id.lower()

    def reader(self, request: ImportRequest) -> RegistryReader:
        if request.resource_id and not request.registry_uri:
            if request.resource_id.lower().rstrip("/") != self._own_id:
                raise CopyError(
                    "InvalidParameters",
                    f"The source registry {request.resource_id} does not exist in the "
                    "stand-in, which has only one registry.",
                )
            return RegistryReader(self._acr_backend, request.resource_id)

        uri = request.registry_uri or ""
        host = uri.split("://", 1)[-1].rstrip("/").lower()
        if host in DOCKER_HUB_ALIASES:
            host = DOCKER_HUB
        if host in self._own_hosts:
            return RegistryReader(self._acr_backend, host)
        backend = self._public.get(host)
        if backend is None:
            raise CopyError(
                "InvalidParameters",
                f"The source registry {uri} cannot be reached. The stand-in serves "
                f"{', '.join(sorted(self._public))} and its own login server.",
            )
        return RegistryReader(backend, host, request.credentials)


class _Gate:
    """At most ``limit()`` holders at once; the limit may change while waiting."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self._condition = threading.Condition()
        self._active = 0

    def __enter__(self) -> None:
        with self._condition:
            while self._active >= max(1, self._limit()):
                self._condition.wait(timeout=0.1)
            self._active += 1

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._condition:
            self._active -= 1
            self._condition.notify()


class Importer:
    """Runs imports in the background, a bounded number at a time."""

    def __init__(
        self,
        *,
        resolver: SourceResolver,
        writer: RegistryWriter,
        tunables: Tunables,
        stats: Stats,
    ) -> None:
        self._resolver = resolver
        self._writer = writer
        self._tunables = tunables
        self._stats = stats
        self._gate = _Gate(lambda: self._tunables.max_concurrent_imports)
        self._lock = threading.Lock()
        self._operations: dict[str, ImportOperation] = {}

    def submit(self, request: ImportRequest, fault: Fault | None) -> ImportOperation:
        operation = ImportOperation(id=f"registries-{uuid.uuid4()}", request=request)
        with self._lock:
            self._operations[operation.id] = operation
        self._stats.import_started(operation.id, request.details())
        thread = threading.Thread(
            target=self._run, args=(operation, fault), name=operation.id, daemon=True
        )
        thread.start()
        return operation

    def get(self, operation_id: str) -> ImportOperation | None:
        with self._lock:
            return self._operations.get(operation_id)

    def _run(self, operation: ImportOperation, fault: Fault | None) -> None:
        if fault is not None and fault.import_status is not None:
            logger.info(
                "fault: import stays %s id=%s", fault.import_status, operation.id
            )
            self._finish(operation, fault.import_status)
            return

        with self._gate:
            duration_ms = self._tunables.import_duration_ms
            if duration_ms > 0:
                time.sleep(duration_ms / 1000)
            if fault is not None and fault.import_error is not None:
                failure = fault.import_error
                self._finish(
                    operation,
                    "Failed",
                    error={"code": failure.code, "message": failure.message},
                )
                return
            write_tags = not (fault is not None and fault.dangling_tag)
            try:
                reader = self._resolver.reader(operation.request)
                digest = copy_image(
                    reader, self._writer, operation.request.plan(write_tags=write_tags)
                )
            except CopyError as error:
                logger.error(
                    "import failed id=%s source=%s code=%s",
                    operation.id,
                    operation.request.source_image,
                    error.code,
                )
                self._finish(
                    operation,
                    "Failed",
                    error={"code": error.code, "message": error.message},
                )
            except Exception as error:
                logger.exception("import broke id=%s", operation.id)
                self._finish(
                    operation,
                    "Failed",
                    error={
                        "code": "InternalServerError",
                        "message": f"The import failed: {error}",
                    },
                )
            else:
                self._finish(operation, "Succeeded", digest=digest)

    def _finish(
        self,
        operation: ImportOperation,
        status: str,
        *,
        digest: str | None = None,
        error: dict[str, str] | None = None,
    ) -> None:
        with self._lock:
            operation.status = status
            operation.digest = digest
            operation.error = error
            if status in TERMINAL:
                operation.end_time = _timestamp()
        self._stats.import_updated(operation.id, status, digest=digest, error=error)


class ArmFront:
    """ARM's routes for one subscription, resource group and registry."""

    def __init__(
        self,
        *,
        port: int,
        acr_login_server: str,
        tenant_id: str,
        subscription_id: str,
        resource_group: str,
        registry_name: str,
        location: str,
        role_assignments: Mapping[str, Iterable[str]],
        signer: TokenSigner,
        tunables: Tunables,
        importer: Importer,
    ) -> None:
        self.base_url = f"https://127.0.0.1:{port}"
        self._login_server = acr_login_server
        self._tenant_id = tenant_id
        self._subscription_id = subscription_id
        self._resource_group = resource_group
        self._registry_name = registry_name
        self._location = location
        self._roles = {
            principal: tuple(roles) for principal, roles in role_assignments.items()
        }
        self._signer = signer
        self._tunables = tunables
        self._importer = importer
        self._registry_id = registry_id(subscription_id, resource_group, registry_name)
        self._created = _timestamp()

    # Labels

    def label(self, exchange: Exchange) -> RequestLabel:
        match = _REGISTRY_ROUTE.match(exchange.path)
        action = (match["action"] or "").lower() if match else ""
        if action == "importimage" and exchange.method == "POST":
            try:
                repositories = parse_import(exchange.json_body()).repositories
            except (ValueError, ImportRequestError):
                repositories = frozenset()
            return RequestLabel("arm-import", "import", repositories)
        if match and action in {"operationstatuses", "operationresults"}:
            operation = self._importer.get(match["op"] or "")
            repositories = operation.request.repositories if operation else frozenset()
            return RequestLabel("arm-poll", "poll", repositories)
        return RequestLabel("arm", "other")

    # Dispatch

    def handle(self, exchange: Exchange, fault: Fault | None) -> None:
        if (
            exchange.path.rstrip("/") == "/metadata/endpoints"
            and exchange.method == "GET"
        ):
            self._send_metadata(exchange)
            return
        claims = self._authenticate(exchange)
        if claims is None:
            return
        if not exchange.query_value("api-version"):
            self._send_error(
                exchange,
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all "
                "requests.",
            )
            return

        match = _REGISTRY_ROUTE.match(exchange.path)
        if match is not None:
            self._serve_registry(exchange, claims, match, fault)
        elif exchange.method == "GET":
            self._serve_reads(exchange)
        else:
            self._send_error(
                exchange,
                404,
                "NotFound",
                f"No route matches {exchange.method} {exchange.path}.",
            )

    def _serve_reads(self, exchange: Exchange) -> None:
        """The GETs around the registry: lists, resource group, subscription, tenant."""
        path = exchange.path
        headers = self._headers(exchange)
        if found := _RESOURCES.match(path):
            self._send_resources(exchange, found["sub"], found["rg"])
        elif found := _GROUP_REGISTRIES.match(path):
            if self._known_group(exchange, found["sub"], found["rg"]):
                exchange.send_json(200, {"value": [self._registry_resource()]}, headers)
        elif found := _SUBSCRIPTION_REGISTRIES.match(path):
            if self._known_subscription(exchange, found["sub"]):
                exchange.send_json(200, {"value": [self._registry_resource()]}, headers)
        elif found := _GROUP.match(path):
            if self._known_group(exchange, found["sub"], found["rg"]):
                exchange.send_json(200, self._group_resource(), headers)
        elif found := _SUBSCRIPTION.match(path):
            if self._known_subscription(exchange, found["sub"]):
                exchange.send_json(200, self._subscription_resource(), headers)
        elif path.rstrip("/") == "/subscriptions":
            value = [self._subscription_resource()]
            body = {"value": value, "count": {"type": "Total", "value": 1}}
            exchange.send_json(200, body, headers)
        elif path.rstrip("/") == "/tenants":
            exchange.send_json(200, {"value": [self._tenant_resource()]}, headers)
        else:
            self._send_error(exchange, 404, "NotFound", f"No route matches GET {path}.")

    def _send_resources(
        self, exchange: Exchange, subscription: str, group: str | None
    ) -> None:
        """The generic resource list, filtered as ``$filter`` asks; the Azure CLI
        finds a registry's resource group this way when it is not given."""
        known = (
            self._known_group(exchange, subscription, group)
            if group is not None
            else self._known_subscription(exchange, subscription)
        )
        if not known:
            return
        registry = self._registry_resource()
        resource = {
            key: registry[key] for key in ("id", "name", "type", "location", "tags")
        }
        resource["sku"] = registry["sku"]
        wanted: dict[str, str] = {}
        text = exchange.query_value("$filter") or ""
        for clause in filter(None, re.split(r"\s+and\s+", text.strip(), flags=re.I)):
            match = _FILTER_CLAUSE.match(clause)
            field_name = _FILTER_FIELDS.get(match["field"].lower()) if match else None
            if match is None or field_name is None:
                self._send_error(
                    exchange,
                    400,
                    "InvalidFilterInQueryString",
                    f"The $filter '{text}' is not supported by the stand-in, which "
                    "knows 'resourceType', 'name' and 'location' eq clauses.",
                )
                return
            wanted[field_name] = match["value"]
        matches = all(
            str(resource[name]).lower() == value.lower()
            for name, value in wanted.items()
        )
        body = {"value": [resource] if matches else []}
        exchange.send_json(200, body, self._headers(exchange))

    def send_status(
        self,
        exchange: Exchange,
        status: int,
        code: str | None,
        message: str | None,
        headers: Mapping[str, str],
    ) -> None:
        if status == 403 and code in {None, "AuthorizationFailed"} and message is None:
            self._send_forbidden(
                exchange, self._caller(exchange), IMPORT_ACTION, headers
            )
            return
        default_code, default_message = _DEFAULT_ERRORS.get(
            status, ("InternalServerError", "The server encountered an internal error.")
        )
        self._send_error(
            exchange, status, code or default_code, message or default_message, headers
        )

    # Registry routes

    def _serve_registry(
        self,
        exchange: Exchange,
        claims: Claims,
        match: re.Match[str],
        fault: Fault | None,
    ) -> None:
        if not self._known_group(exchange, match["sub"], match["rg"]):
            return
        if match["name"].lower() != self._registry_name.lower():
            self._send_error(
                exchange,
                404,
                "ResourceNotFound",
                f"The Resource '{PROVIDER}/{match['name']}' under resource group "
                f"'{match['rg']}' was not found. For more details please go to "
                "https://aka.ms/ARMResourceNotFoundFix",
            )
            return

        action = (match["action"] or "").lower()
        principal = str(claims.get("oid") or "")
        if action == "" and exchange.method == "GET":
            if self._allowed(exchange, principal, READ_REGISTRY_ACTION):
                exchange.send_json(
                    200, self._registry_resource(), self._headers(exchange)
                )
        elif action == "importimage" and exchange.method == "POST":
            if self._allowed(exchange, principal, IMPORT_ACTION):
                self._start_import(exchange, fault)
        elif action == "operationstatuses" and exchange.method == "GET":
            self._send_operation_status(exchange, match["op"] or "")
        elif action == "operationresults" and exchange.method == "GET":
            self._send_operation_result(exchange, match["op"] or "")
        else:
            self._send_error(
                exchange,
                405,
                "MethodNotAllowed",
                f"The method {exchange.method} is not allowed on {exchange.path}.",
            )

    def _start_import(self, exchange: Exchange, fault: Fault | None) -> None:
        try:
            request = parse_import(exchange.json_body())
        except ValueError as error:
            code = (
                "InvalidParameters"
                if isinstance(error, ImportRequestError)
                else "InvalidRequestContent"
            )
            self._send_error(exchange, 400, code, str(error))
            return

        operation = self._importer.submit(request, fault)
        logger.info(
            "import accepted id=%s source=%s image=%s targets=%s",
            operation.id,
            request.registry_uri or request.resource_id,
            request.source_image,
            request.target_tags,
        )
        api_version = exchange.query_value("api-version")
        operation_url = f"{self.base_url}{self._registry_id}/%s/{operation.id}"
        query = f"?api-version={api_version}"
        status_url = operation_url % "operationStatuses" + query
        result_url = operation_url % "operationResults" + query
        headers = {
            **self._headers(exchange),
            "Azure-AsyncOperation": status_url,
            "Location": result_url,
            "retry-after-ms": str(self._tunables.poll_after_ms),
        }
        exchange.send(202, b"", headers)

    def _send_operation_status(self, exchange: Exchange, operation_id: str) -> None:
        operation = self._importer.get(operation_id)
        if operation is None:
            self._send_error(
                exchange,
                404,
                "NotFound",
                f"The operation {operation_id} was not found.",
            )
            return
        body: dict[str, Any] = {
            "id": f"{self._registry_id}/operationStatuses/{operation.id}",
            "name": operation.id,
            "status": operation.status,
            "startTime": operation.start_time,
        }
        if operation.end_time:
            body["endTime"] = operation.end_time
        if operation.error:
            body["error"] = dict(operation.error)
        headers = dict(self._headers(exchange))
        if operation.status not in TERMINAL:
            headers["retry-after-ms"] = str(self._tunables.poll_after_ms)
        exchange.send_json(200, body, headers)

    def _send_operation_result(self, exchange: Exchange, operation_id: str) -> None:
        operation = self._importer.get(operation_id)
        if operation is None:
            self._send_error(
                exchange,
                404,
                "NotFound",
                f"The operation {operation_id} was not found.",
            )
            return
        headers = dict(self._headers(exchange))
        if operation.status == "Succeeded":
            exchange.send(204, b"", headers)
        elif operation.status in TERMINAL:
            error = operation.error or {
                "code": "Failed",
                "message": "The import failed.",
            }
            self._send_error(exchange, 400, error["code"], error["message"])
        else:
            headers["Location"] = f"{self.base_url}{exchange.target}"
            headers["retry-after-ms"] = str(self._tunables.poll_after_ms)
            exchange.send(202, b"", headers)

    # Checks

    def _authenticate(self, exchange: Exchange) -> Claims | None:
        """The caller's verified claims; otherwise answers 401 as ARM does."""
        token = exchange.bearer_token()
        if token is None:
            self._send_unauthenticated(
                exchange,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                "The authentication failed because of missing 'Authorization' header.",
            )
            return None
        try:
            claims = self._signer.verify(token, audiences=ARM_AUDIENCES)
        except TokenError as error:
            code, message = _token_failure(error, token)
            self._send_unauthenticated(exchange, code, message, message)
            return None
        if claims.get("tid") != self._tenant_id:
            message = (
                f"The access token is from the wrong issuer '{claims.get('iss')}'. It "
                f"must match the tenant 'https://sts.windows.net/{self._tenant_id}/' "
                "associated with this subscription. Please use the authority (URL) "
                f"'https://login.windows.net/{self._tenant_id}' to get the token."
            )
            self._send_unauthenticated(
                exchange, "InvalidAuthenticationTokenTenant", message, message
            )
            return None
        return claims

    def _allowed(self, exchange: Exchange, principal: str, action: str) -> bool:
        if allows_arm_action(self._roles.get(principal, ()), action):
            return True
        self._send_forbidden(exchange, principal, action, {})
        return False

    def _known_subscription(self, exchange: Exchange, subscription: str) -> bool:
        if subscription.lower() == self._subscription_id.lower():
            return True
        self._send_error(
            exchange,
            404,
            "SubscriptionNotFound",
            f"The subscription '{subscription}' could not be found.",
        )
        return False

    def _known_group(self, exchange: Exchange, subscription: str, group: str) -> bool:
        if not self._known_subscription(exchange, subscription):
            return False
        if group.lower() == self._resource_group.lower():
            return True
        self._send_error(
            exchange,
            404,
            "ResourceGroupNotFound",
            f"Resource group '{group}' could not be found.",
        )
        return False

    def _caller(self, exchange: Exchange) -> str:
        token = exchange.bearer_token()
        if not token:
            return "unknown"
        try:
            return str(TokenSigner.read_unverified(token).get("oid") or "unknown")
        except TokenError:
            return "unknown"

    # Answers

    def _send_forbidden(
        self,
        exchange: Exchange,
        principal: str,
        action: str,
        headers: Mapping[str, str],
    ) -> None:
        message = (
            f"The client '{principal}' with object id '{principal}' does not have "
            f"authorization to perform action '{action}' over scope "
            f"'{self._registry_id}' or the scope is invalid. If access was recently "
            "granted, please refresh your credentials."
        )
        self._send_error(exchange, 403, "AuthorizationFailed", message, headers)

    def _send_unauthenticated(
        self, exchange: Exchange, code: str, message: str, description: str
    ) -> None:
        challenge = f'Bearer error="invalid_token", error_description="{description}"'
        self._send_error(exchange, 401, code, message, {"WWW-Authenticate": challenge})

    def _send_error(
        self,
        exchange: Exchange,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        exchange.send_json(
            status,
            {"error": {"code": code, "message": message}},
            {**self._headers(exchange), **(headers or {})},
        )

    def _headers(self, exchange: Exchange) -> dict[str, str]:
        request_id = str(uuid.uuid4())
        return {
            "x-ms-request-id": request_id,
            "x-ms-correlation-request-id": exchange.header(
                "x-ms-correlation-request-id"
            )
            or request_id,
            "Cache-Control": "no-cache",
        }

    # Resources

    def _registry_resource(self) -> dict[str, Any]:
        return {
            "sku": {"name": "Standard", "tier": "Standard"},
            "type": PROVIDER,
            "id": self._registry_id,
            "name": self._registry_name,
            "location": self._location,
            "tags": {},
            "systemData": {
                "createdBy": "standin",
                "createdByType": "Application",
                "createdAt": self._created,
                "lastModifiedBy": "standin",
                "lastModifiedByType": "Application",
                "lastModifiedAt": self._created,
            },
            "properties": {
                "loginServer": self._login_server,
                "creationDate": self._created,
                "provisioningState": "Succeeded",
                "adminUserEnabled": False,
                "policies": {
                    "quarantinePolicy": {"status": "disabled"},
                    "trustPolicy": {"type": "Notary", "status": "disabled"},
                    "retentionPolicy": {
                        "days": 7,
                        "lastUpdatedTime": self._created,
                        "status": "disabled",
                    },
                    "exportPolicy": {"status": "enabled"},
                },
                "encryption": {"status": "disabled"},
                "dataEndpointEnabled": False,
                "dataEndpointHostNames": [],
                "privateEndpointConnections": [],
                "publicNetworkAccess": "Enabled",
                "networkRuleBypassOptions": "AzureServices",
                "zoneRedundancy": "Disabled",
                "anonymousPullEnabled": False,
            },
        }

    def _group_resource(self) -> dict[str, Any]:
        return {
            "id": self._registry_id.rsplit("/providers/", 1)[0],
            "name": self._resource_group,
            "type": "Microsoft.Resources/resourceGroups",
            "location": self._location,
            "properties": {"provisioningState": "Succeeded"},
        }

    def _subscription_resource(self) -> dict[str, Any]:
        return {
            "id": f"/subscriptions/{self._subscription_id}",
            "authorizationSource": "RoleBased",
            "managedByTenants": [],
            "subscriptionId": self._subscription_id,
            "tenantId": self._tenant_id,
            "displayName": "Stand-in subscription",
            "state": "Enabled",
            "subscriptionPolicies": {
                "locationPlacementId": "Public_2014-09-01",
                "quotaId": "PayAsYouGo_2014-09-01",
                "spendingLimit": "Off",
            },
        }

    def _tenant_resource(self) -> dict[str, Any]:
        return {
            "id": f"/tenants/{self._tenant_id}",
            "tenantId": self._tenant_id,
            "tenantCategory": "Home",
            "displayName": "Stand-in tenant",
            "defaultDomain": "standin.onmicrosoft.com",
            "tenantType": "AAD",
            "domains": ["standin.onmicrosoft.com"],
        }

    def _send_metadata(self, exchange: Exchange) -> None:
        """Cloud endpoints, each of them this stand-in, in the shape the api-version
        asks for: before 2019-05-01 the old flat document; at 2019-05-01 a list of
        clouds (what ``ARM_CLOUD_METADATA_URL`` points the Azure CLI at); from
        2019-10-01 on the one cloud this endpoint serves (what ``az cloud
        register --endpoint-resource-manager`` reads, with 2022-09-01)."""
        base = f"{self.base_url}/"
        audiences = [
            "https://management.core.windows.net/",
            "https://management.azure.com/",
        ]
        api_version = exchange.query_value("api-version") or ""
        if api_version < "2019-05-01":
            exchange.send_json(
                200,
                {
                    "galleryEndpoint": base,
                    "graphEndpoint": base,
                    "portalEndpoint": base,
                    "authentication": {"loginEndpoint": base, "audiences": audiences},
                },
            )
            return
        cloud = {
            "name": "AzureStandin",
            "resourceManager": base,
            "portal": base,
            "gallery": base,
            "graph": base,
            "graphAudience": base,
            "microsoftGraphResourceId": base,
            "activeDirectoryDataLake": base,
            "batch": base,
            "media": base,
            "sqlManagement": base,
            "vmImageAliasDoc": base,
            "authentication": {
                "loginEndpoint": base,
                "audiences": audiences,
                "tenant": "common",
                "identityProvider": "AAD",
            },
            "suffixes": {
                "acrLoginServer": "127.0.0.1",
                "keyvaultDns": "vault.standin.invalid",
                "storage": "core.standin.invalid",
                "sqlServerHostname": "database.standin.invalid",
            },
        }
        exchange.send_json(200, [cloud] if api_version < "2019-10-01" else cloud)


def _token_failure(error: TokenError, token: str) -> tuple[str, str]:
    """ARM's error code and message for a refused token."""
    if error.problem is TokenProblem.EXPIRED:
        try:
            expires = int(TokenSigner.read_unverified(token).get("exp") or 0)
        except TokenError:
            expires = 0
        expired_at = datetime.fromtimestamp(expires, UTC).strftime("%m/%d/%Y %H:%M:%S")
        now = datetime.now(UTC).strftime("%m/%d/%Y %H:%M:%S")
        return (
            "ExpiredAuthenticationToken",
            f"The access token expiry UTC time '{expired_at}' is earlier than current "
            f"UTC time '{now}'.",
        )
    if error.problem is TokenProblem.AUDIENCE:
        try:
            audience = TokenSigner.read_unverified(token).get("aud")
        except TokenError:
            audience = None
        allowed = ",".join(f"'{item}'" for item in sorted(ARM_AUDIENCES))
        return (
            "InvalidAuthenticationTokenAudience",
            f"The access token has been obtained for wrong audience or resource "
            f"'{audience}'. It should exactly match with one of the allowed audiences "
            f"{allowed}.",
        )
    return "InvalidAuthenticationToken", "The access token is invalid."


_DEFAULT_ERRORS: Mapping[int, tuple[str, str]] = {
    400: ("BadRequest", "The request is invalid."),
    401: ("AuthenticationFailed", "Authentication failed."),
    403: ("AuthorizationFailed", "The client does not have authorization."),
    404: ("NotFound", "The resource was not found."),
    409: ("Conflict", "The request conflicts with the resource's state."),
    429: (
        "TooManyRequests",
        "The request is being throttled as the limit has been reached for operation "
        "type - Write. For more information, see https://aka.ms/armthrottling",
    ),
    500: ("InternalServerError", "The server encountered an internal error."),
    502: ("BadGateway", "The gateway did not receive a response in time."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
    504: (
        "GatewayTimeout",
        "The gateway did not receive a response within the time limit.",
    ),
}
