"""App settings, read once into a frozen, typed object.

Every setting carries the ``ACRSYNC_`` prefix except the ones Azure defines itself
(``IDENTITY_ENDPOINT`` and friends, read by azure-identity). A missing required
setting or a malformed value fails the run before any request, and the error names
the setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sync_core.errors import ConfigurationError

PREFIX = "ACRSYNC_"

DEFAULT_SCHEDULE = "0 0 2 * * *"
DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
DEFAULT_ARM_AUDIENCE = "https://management.azure.com"
DEFAULT_ACR_AUDIENCE = "https://containerregistry.azure.net"
DEFAULT_LIST_CONTAINER = "image-lists"
DEFAULT_LIST_BLOB = "images.txt"
DEFAULT_REPORT_CONTAINER = "sync-reports"
DEFAULT_STORAGE_CONNECTION = "ACRSYNC_STORAGE"

# host.json's functionTimeout is 10 minutes, the most the Consumption plan allows; a
# run stops starting imports early enough to report before the host stops it.
DEFAULT_RUN_BUDGET = 540.0

# Docker Hub serves its registry API from a host other than its name.
DEFAULT_REGISTRY_ENDPOINTS: Mapping[str, str] = {
    "docker.io": "https://registry-1.docker.io"
}

_CRON_FIELD = re.compile(r"^[0-9*/,\-A-Za-z?]+$")


@dataclass(frozen=True, slots=True)
class DockerHubCredentials:
    """A Docker Hub account; sent with Docker Hub imports and nothing else."""

    username: str
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where the image list lives, and how to reach it.

    Locally a connection string; in Azure an identity-based connection, the way the
    Functions host reads ``<NAME>__blobServiceUri`` and ``<NAME>__credential``.
    """

    connection_string: str | None = field(repr=False)
    blob_service_uri: str | None
    queue_service_uri: str | None
    client_id: str | None
    container: str
    blob: str
    report_container: str


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a run needs to know, validated."""

    subscription_id: str
    resource_group: str
    registry_name: str
    login_server: str
    arm_endpoint: str
    arm_audience: str
    acr_audience: str
    managed_identity_client_id: str | None
    storage: StorageSettings
    registry_endpoints: Mapping[str, str]
    dockerhub: DockerHubCredentials | None
    max_concurrency: int
    read_concurrency: int
    run_budget_seconds: float
    dockerhub_pull_floor: int
    import_timeout_seconds: float
    request_timeout_seconds: float
    poll_interval_seconds: float
    max_retry_wait_seconds: float

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """Reads and validates every setting; raises ConfigurationError naming one."""
        reader = _Reader(environ)
        registry_name = reader.required("REGISTRY_NAME")
        return cls(
            subscription_id=reader.required("SUBSCRIPTION_ID"),
            resource_group=reader.required("RESOURCE_GROUP"),
            registry_name=registry_name,
            login_server=reader.optional("LOGIN_SERVER")
            or f"{registry_name}.azurecr.io",
            arm_endpoint=reader.url("ARM_ENDPOINT", DEFAULT_ARM_ENDPOINT),
            arm_audience=reader.url("ARM_AUDIENCE", DEFAULT_ARM_AUDIENCE),
            acr_audience=reader.url("ACR_AUDIENCE", DEFAULT_ACR_AUDIENCE),
            managed_identity_client_id=reader.optional("MANAGED_IDENTITY_CLIENT_ID"),
            storage=_read_storage(reader),
            registry_endpoints=reader.endpoints("REGISTRY_ENDPOINTS"),
            dockerhub=_read_dockerhub(reader),
            max_concurrency=reader.integer("MAX_CONCURRENCY", 8, minimum=1, maximum=64),
            read_concurrency=reader.integer(
                "READ_CONCURRENCY", 16, minimum=1, maximum=128
            ),
            run_budget_seconds=reader.number("RUN_BUDGET_SECONDS", DEFAULT_RUN_BUDGET),
            dockerhub_pull_floor=reader.integer(
                "DOCKERHUB_PULL_FLOOR", 10, minimum=0, maximum=100_000
            ),
            import_timeout_seconds=reader.number("IMPORT_TIMEOUT_SECONDS", 240.0),
            request_timeout_seconds=reader.number("REQUEST_TIMEOUT_SECONDS", 30.0),
            poll_interval_seconds=reader.number("POLL_INTERVAL_SECONDS", 2.0),
            max_retry_wait_seconds=reader.number("MAX_RETRY_WAIT_SECONDS", 30.0),
        )

    def registry_endpoint(self, registry: str) -> str:
        """The base URL serving a registry's API: a configured mirror, or its host."""
        return self.registry_endpoints.get(registry, f"https://{registry}")


def timer_schedule(environ: Mapping[str, str]) -> str:
    """The timer's NCRONTAB schedule: ``ACRSYNC_SCHEDULE`` or nightly at 02:00 UTC.

    A six-field expression whose seconds field is a wildcard fires every second, so
    the seconds field must be a fixed number.
    """
    name = PREFIX + "SCHEDULE"
    schedule = environ.get(name, "").strip() or DEFAULT_SCHEDULE
    fields = schedule.split()
    if len(fields) != 6 or not all(_CRON_FIELD.match(part) for part in fields):
        raise ConfigurationError(
            name, f"a six-field NCRONTAB expression is required, got {schedule!r}"
        )
    if not fields[0].isdigit():
        raise ConfigurationError(
            name,
            f"the seconds field must be a single number, or the timer fires every "
            f"second, got {fields[0]!r}",
        )
    return schedule


class _Reader:
    """Reads prefixed settings and names the setting in every error."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def optional(self, suffix: str) -> str | None:
        return self.raw(PREFIX + suffix)

    def required(self, suffix: str) -> str:
        value = self.optional(suffix)
        if value is None:
            raise ConfigurationError(PREFIX + suffix, "a value is required")
        return value

    def url(self, suffix: str, default: str) -> str:
        value = self.optional(suffix) or default
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ConfigurationError(
                PREFIX + suffix, f"an absolute http(s) URL is required, got {value!r}"
            )
        return value.rstrip("/")

    def integer(self, suffix: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self.optional(suffix)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if not minimum <= number <= maximum:
            raise ConfigurationError(
                PREFIX + suffix,
                f"a whole number from {minimum} to {maximum} is required, "
                f"got {value!r}",
            )
        return number

    def number(self, suffix: str, default: float) -> float:
        value = self.optional(suffix)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not number > 0:
            raise ConfigurationError(
                PREFIX + suffix,
                f"a positive number of seconds is required, got {value!r}",
            )
        return number

    def endpoints(self, suffix: str) -> Mapping[str, str]:
        endpoints = dict(DEFAULT_REGISTRY_ENDPOINTS)
        value = self.optional(suffix)
        if value is None:
            return endpoints
        for item in value.split(","):
            if not item.strip():
                continue
            host, separator, url = item.partition("=")
            parts = urlsplit(url.strip())
            if (
                not separator
                or not host.strip()
                or parts.scheme not in ("https", "http")
                or not parts.netloc
            ):
                raise ConfigurationError(
                    PREFIX + suffix,
                    f"comma-separated REGISTRY=URL pairs are required, got {item!r}",
                )
            endpoints[host.strip().lower()] = url.strip().rstrip("/")
        return endpoints


def _read_storage(reader: _Reader) -> StorageSettings:
    connection = reader.optional("STORAGE_CONNECTION") or DEFAULT_STORAGE_CONNECTION
    connection_string = reader.raw(connection)
    blob_service_uri = reader.raw(f"{connection}__blobServiceUri")
    if connection_string is None and blob_service_uri is None:
        raise ConfigurationError(
            connection,
            f"a connection string, or {connection}__blobServiceUri for an "
            f"identity-based connection, is required",
        )
    credential = reader.raw(f"{connection}__credential")
    if blob_service_uri is not None and credential not in (None, "managedidentity"):
        raise ConfigurationError(
            f"{connection}__credential",
            f"only 'managedidentity' is supported, got {credential!r}",
        )
    return StorageSettings(
        connection_string=connection_string,
        blob_service_uri=blob_service_uri,
        queue_service_uri=reader.raw(f"{connection}__queueServiceUri"),
        client_id=reader.raw(f"{connection}__clientId"),
        container=reader.optional("LIST_CONTAINER") or DEFAULT_LIST_CONTAINER,
        blob=reader.optional("LIST_BLOB") or DEFAULT_LIST_BLOB,
        report_container=reader.optional("REPORT_CONTAINER")
        or DEFAULT_REPORT_CONTAINER,
    )


def _read_dockerhub(reader: _Reader) -> DockerHubCredentials | None:
    username = reader.optional("DOCKERHUB_USERNAME")
    token = reader.optional("DOCKERHUB_TOKEN")
    if username is None and token is None:
        return None
    if username is None or token is None:
        missing = "DOCKERHUB_USERNAME" if username is None else "DOCKERHUB_TOKEN"
        raise ConfigurationError(
            PREFIX + missing,
            "Docker Hub credentials need both a username and a token",
        )
    return DockerHubCredentials(username=username, token=token)
