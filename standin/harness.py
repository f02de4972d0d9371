"""The local stand-in as one object: start it, point the app at it, stop it.

``Standin.start`` brings up, all on 127.0.0.1: Azurite (blob and queue, in memory),
two docker-registry backends (what the stand-in ACR holds, and every public
registry's images), and the Azure stand-in server in front of them (managed
identity, Resource Manager, the ACR data plane and the public registries over
https). It seeds the public backend from an image list and uploads that list where
the app reads it. ``Standin.attach`` picks up one started by ``python -m standin``.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests
from azure.storage.blob import BlobServiceClient

from standin.images import Digest, head_digest, registry_session
from standin.processes import (
    LOOPBACK,
    PIDS_FILE,
    PORTS_FILE,
    PROJECT_ROOT,
    Processes,
    ProcessRecord,
    read_records,
    stop_records,
)
from standin.seed import (
    CATALOG_FILE,
    Catalog,
    SourceImage,
    move_tag,
    read_sources,
    seed_public_backend,
)
from standin.tls import write_tls_files

EXAMPLE_IMAGE_LIST = PROJECT_ROOT / "examples" / "images.txt"
CONFIG_FILE = "config.json"
STATE_FILE = "standin.json"

PUBLIC_REGISTRIES = (
    "docker.io",
    "quay.io",
    "registry.k8s.io",
    "mcr.microsoft.com",
    "ghcr.io",
)
RESOURCE_GROUP = "rg-image-sync"
REGISTRY_NAME = "mirror"
IMPORTER_ROLE = "Container Registry Data Importer and Data Reader"
LIST_CONTAINER = "image-lists"
LIST_BLOB = "images.txt"
DOCKERHUB_USERNAME = "standin-user"

# Azurite's single account and its key are public and fixed: "Authorization for
# Azurite", Azure Storage documentation, "Use the Azurite emulator".
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
    "K1SZFPTOtr/KBHBeksoGMGw=="
)

CONTROL_TIMEOUT_SECONDS = 10.0


class StandinError(Exception):
    """The stand-in cannot do what was asked of it."""


class AlreadyRunningError(StandinError):
    """A stand-in already runs in the state directory."""


class NotRunningError(StandinError):
    """No stand-in runs in the state directory."""


class ControlError(StandinError):
    """The control API answered with an error."""


@dataclass(frozen=True, slots=True)
class Ports:
    """Every port the stand-in listens on, all on 127.0.0.1."""

    identity: int
    arm: int
    acr: int
    public: Mapping[str, int]
    blob: int
    queue: int


class ControlClient:
    """The stand-in server's control API, ``/_standin/`` on the ARM port."""

    def __init__(self, base_url: str, ca_bundle: Path) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.verify = str(ca_bundle)

    def stats(self) -> dict[str, Any]:
        """Counters the server keeps: requests, imports, tokens and so on."""
        stats: dict[str, Any] = self._call("GET", "stats").json()
        return stats

    def reset_stats(self) -> None:
        self._call("POST", "stats/reset")

    def tunables(self) -> dict[str, Any]:
        """The current tunables: latency, import duration, token lifetime and so on."""
        tunables: dict[str, Any] = self._call("GET", "config").json()
        return tunables

    def configure(self, **tunables: int) -> dict[str, Any]:
        """Sets tunables by name, such as ``latency_ms``, ``import_duration_ms``,
        ``max_concurrent_imports``, ``token_ttl_seconds`` or ``poll_after_ms``;
        returns all of them. The server rejects a name it does not know."""
        updated: dict[str, Any] = self._call("POST", "config", json=tunables).json()
        return updated

    def faults(self) -> list[dict[str, Any]]:
        """The fault rules in force, as the server describes them."""
        rules: list[dict[str, Any]] = self._call("GET", "faults").json()["rules"]
        return rules

    def set_faults(self, rules: Sequence[Mapping[str, Any]]) -> None:
        self._call("POST", "faults", json={"rules": list(rules)})

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, json: Any = None) -> requests.Response:
        url = f"{self.base_url}/{path}"
        response = self._session.request(
            method, url, json=json, timeout=CONTROL_TIMEOUT_SECONDS
        )
        if not response.ok:
            raise ControlError(
                f"the control API must accept {method} {url}, "
                f"got {response.status_code}: {response.text[:300]}"
            )
        return response


class Standin:
    """A running stand-in and what a test or a script needs to use it."""

    def __init__(
        self,
        state_dir: Path,
        config: Mapping[str, Any],
        state: Mapping[str, Any],
        processes: Processes | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.config = config
        self.ports = _ports(state)
        self.start_tunables: Mapping[str, int] = state["tunables"]
        self.ca_cert = Path(config["ca_cert"])
        self.acr_backend: str = config["acr_backend"]
        self.public_backend: str = config["public_backend"]
        self.azurite_connection_string = _azurite_connection_string(self.ports)
        self.control = ControlClient(_control_url(self.ports.arm), self.ca_cert)
        self._processes = processes
        self._catalog = Catalog(state_dir / CATALOG_FILE)

    @classmethod
    def start(
        cls,
        state_dir: Path,
        *,
        image_list: Path = EXAMPLE_IMAGE_LIST,
    ) -> Standin:
        """Starts every process, seeds the public backend and uploads the image list.

        The processes outlive the caller until ``stop``, here or from another
        process through ``attach``.
        """
        state_dir = state_dir.resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        _refuse_if_running(state_dir)
        for name in (PIDS_FILE, PORTS_FILE, STATE_FILE, CATALOG_FILE, CONFIG_FILE):
            (state_dir / name).unlink(missing_ok=True)
        sources = read_sources(image_list)

        processes = Processes(state_dir)
        try:
            standin = cls._start_processes(state_dir, processes, sources)
            standin.upload_image_list(image_list.read_text(encoding="utf-8"))
        except BaseException:
            processes.stop()
            raise
        return standin

    @classmethod
    def attach(cls, state_dir: Path) -> Standin:
        """The stand-in that ``python -m standin start`` left running there."""
        state_dir = state_dir.resolve()
        records = read_records(state_dir)
        state_path = state_dir / STATE_FILE
        if (
            not state_path.exists()
            or not records
            or not all(r.is_alive() for r in records)
        ):
            raise NotRunningError(
                f"a running stand-in is required, found none in {state_dir}; "
                f"start one with `python -m standin start --dir {state_dir}`"
            )
        config = json.loads((state_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        state = json.loads(state_path.read_text(encoding="utf-8"))
        return cls(state_dir, config, state)

    @property
    def processes(self) -> list[ProcessRecord]:
        """The recorded processes, as in ``pids.json``."""
        return read_records(self.state_dir)

    def close(self) -> None:
        """Lets go of the stand-in without stopping it."""
        self.control.close()

    def stop(self) -> None:
        """Stops exactly the processes this stand-in started; safe to call twice."""
        self.close()
        if self._processes is not None:
            self._processes.stop()
        else:
            stop_records(read_records(self.state_dir))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Back to how it started: no faults, the start tunables, counters at zero.

        Images pushed or imported stay; tests that need a tag of their own use
        ``move_tag`` on a repository no other test uses.
        """
        self.control.clear_faults()
        self.control.configure(**self.start_tunables)
        self.control.reset_stats()

    def app_settings(
        self, *, with_dockerhub_credentials: bool = False
    ) -> dict[str, str]:
        """The environment that points the app at this stand-in."""
        identity = self.config["identity"]
        endpoints = ",".join(
            f"{host}=https://{LOOPBACK}:{port}"
            for host, port in self.ports.public.items()
        )
        settings = {
            "IDENTITY_ENDPOINT": f"http://{LOOPBACK}:{self.ports.identity}/msi/token",
            "IDENTITY_HEADER": identity["header_secret"],
            "REQUESTS_CA_BUNDLE": str(self.ca_cert),
            "SSL_CERT_FILE": str(self.ca_cert),
            "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
            "ACRSYNC_SUBSCRIPTION_ID": self.config["subscription_id"],
            "ACRSYNC_RESOURCE_GROUP": self.config["resource_group"],
            "ACRSYNC_REGISTRY_NAME": self.config["registry_name"],
            "ACRSYNC_LOGIN_SERVER": f"{LOOPBACK}:{self.ports.acr}",
            "ACRSYNC_ARM_ENDPOINT": f"https://{LOOPBACK}:{self.ports.arm}",
            "ACRSYNC_REGISTRY_ENDPOINTS": endpoints,
            "ACRSYNC_STORAGE": self.azurite_connection_string,
            "ACRSYNC_LIST_CONTAINER": LIST_CONTAINER,
            "ACRSYNC_LIST_BLOB": LIST_BLOB,
        }
        if with_dockerhub_credentials:
            credentials = self.config["dockerhub_credentials"]
            settings["ACRSYNC_DOCKERHUB_USERNAME"] = credentials["username"]
            settings["ACRSYNC_DOCKERHUB_TOKEN"] = credentials["password"]
        return settings

    def upload_image_list(self, text: str) -> None:
        """Writes the image list the app reads, replacing the one there."""
        # Loopback traffic must not follow proxy settings from the environment.
        with BlobServiceClient.from_connection_string(
            self.azurite_connection_string, use_env_settings=False
        ) as service:
            container = service.get_container_client(LIST_CONTAINER)
            if not container.exists():
                container.create_container()
            container.upload_blob(LIST_BLOB, text.encode(), overwrite=True)

    def seeded_digests(self) -> dict[str, Digest]:
        """The digest each public source reference points at, as pushed."""
        return self._catalog.digests()

    def move_tag(
        self,
        host: str,
        repository: str,
        tag: str,
        *,
        multi_platform: bool | None = None,
    ) -> Digest:
        """Pushes new content under a public tag; returns the tag's new digest."""
        return move_tag(
            self.public_backend,
            self._catalog,
            host,
            repository,
            tag,
            multi_platform=multi_platform,
        )

    def public_digest(self, host: str, repository: str, tag: str) -> Digest | None:
        """What a public tag points at, asked of the backend directly."""
        source = SourceImage.of(host, repository, tag)
        with registry_session() as session:
            return head_digest(
                session, self.public_backend, source.backend_repository, tag
            )

    def acr_digest(self, repository: str, tag: str) -> Digest | None:
        """What a tag in the stand-in ACR points at, or None when it has none."""
        with registry_session() as session:
            return head_digest(session, self.acr_backend, repository, tag)

    @classmethod
    def _start_processes(
        cls, state_dir: Path, processes: Processes, sources: Sequence[SourceImage]
    ) -> Standin:
        tls = write_tls_files(state_dir / "tls")
        azurite = processes.start_azurite("blob", "queue")
        acr_backend = processes.start_registry("acr-backend")
        public_backend = processes.start_registry("public-backend")

        config = _server_config(state_dir, tls.ca_bundle, acr_backend, public_backend)
        config["server_cert"] = str(tls.cert_chain)
        config["server_key"] = str(tls.private_key)
        config_path = state_dir / CONFIG_FILE
        config_path.touch(mode=0o600)
        config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

        # Seeding needs only the public backend, so it runs while the server starts.
        catalog = Catalog(state_dir / CATALOG_FILE)
        with ThreadPoolExecutor(max_workers=1) as pool:
            seeding = pool.submit(seed_public_backend, public_backend, sources, catalog)
            server_ports = processes.start_server(config_path, tls.ca_bundle)
            seeding.result()

        control = ControlClient(_control_url(server_ports["arm"]), tls.ca_bundle)
        with contextlib.closing(control):
            tunables = control.tunables()
        state = {"server": server_ports, "azurite": azurite, "tunables": tunables}
        (state_dir / STATE_FILE).write_text(
            json.dumps(state, indent=2) + "\n", encoding="utf-8"
        )
        return cls(state_dir, config, state, processes)


def _server_config(
    state_dir: Path, ca_bundle: Path, acr_backend: str, public_backend: str
) -> dict[str, Any]:
    system_assigned = {"principal_id": _new_id(), "client_id": _new_id()}
    user_assigned = {"client_id": _new_id(), "principal_id": _new_id()}
    return {
        "state_dir": str(state_dir),
        "ca_cert": str(ca_bundle),
        "tenant_id": _new_id(),
        "subscription_id": _new_id(),
        "resource_group": RESOURCE_GROUP,
        "registry_name": REGISTRY_NAME,
        "identity": {
            "header_secret": secrets.token_urlsafe(24),
            "system_assigned": system_assigned,
            "user_assigned": [user_assigned],
        },
        "role_assignments": {
            system_assigned["principal_id"]: [IMPORTER_ROLE],
            user_assigned["principal_id"]: [IMPORTER_ROLE],
        },
        "acr_backend": acr_backend,
        "public_backend": public_backend,
        "public_registries": list(PUBLIC_REGISTRIES),
        "dockerhub_credentials": {
            "username": DOCKERHUB_USERNAME,
            "password": secrets.token_urlsafe(24),
        },
    }


def _refuse_if_running(state_dir: Path) -> None:
    running = [record for record in read_records(state_dir) if record.is_alive()]
    if running:
        names = ", ".join(f"{record.name} (pid {record.pid})" for record in running)
        raise AlreadyRunningError(
            f"one stand-in per state directory: {state_dir} already runs {names}; "
            f"stop it with `python -m standin stop --dir {state_dir}`"
        )


def _ports(state: Mapping[str, Any]) -> Ports:
    server = state["server"]
    return Ports(
        identity=int(server["identity"]),
        arm=int(server["arm"]),
        acr=int(server["acr"]),
        public={host: int(port) for host, port in server["public"].items()},
        blob=int(state["azurite"]["blob"]),
        queue=int(state["azurite"]["queue"]),
    )


def _control_url(arm_port: int) -> str:
    return f"https://{LOOPBACK}:{arm_port}/_standin"


def _azurite_connection_string(ports: Ports) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://{LOOPBACK}:{ports.blob}/{AZURITE_ACCOUNT};"
        f"QueueEndpoint=http://{LOOPBACK}:{ports.queue}/{AZURITE_ACCOUNT};"
    )


def _new_id() -> str:
    return str(uuid.uuid4())
