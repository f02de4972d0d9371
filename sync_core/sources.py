"""The public registries entries come from, each reached at its configured endpoint.

A registry is named in the list by its host (``docker.io``, ``quay.io``); the URL
that serves its API may differ: Docker Hub answers at ``registry-1.docker.io``, and
``ACRSYNC_REGISTRY_ENDPOINTS`` can point any host at a mirror. Docker Hub
credentials, when set, go to Docker Hub's token service and to no other.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable

from sync_core.distribution import DistributionClient
from sync_core.http import HttpClient, HttpOptions
from sync_core.reference import Digest, ImageReference, is_docker_hub
from sync_core.settings import Settings
from sync_core.tokens import RegistryTokenSource


class SourceRegistries:
    """One distribution client per source registry, made when first needed."""

    def __init__(
        self,
        settings: Settings,
        options: HttpOptions,
        *,
        on_pulls_remaining: Callable[[str, int | None], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_pulls_remaining = on_pulls_remaining
        self._options = options
        self._lock = threading.Lock()
        self._clients: dict[str, DistributionClient] = {}
        self._closers: list[HttpClient | RegistryTokenSource] = []

    def clients_for(
        self, sources: Iterable[ImageReference]
    ) -> list[tuple[DistributionClient, list[str]]]:
        """Each registry's client with the repositories whose tags a run will read."""
        by_registry: dict[str, set[str]] = defaultdict(set)
        for source in sources:
            if source.digest is None:
                by_registry[source.registry].add(source.repository)
        return [
            (self._client(registry), sorted(repositories))
            for registry, repositories in sorted(by_registry.items())
        ]

    def resolve(self, source: ImageReference) -> Digest | None:
        """The digest the source names now: its pinned digest, or its tag's."""
        if source.digest is not None:
            return source.digest
        client = self._client(source.registry)
        digest = client.manifest_digest(source.repository, source.reference)
        if self._on_pulls_remaining is not None:
            self._on_pulls_remaining(source.registry, client.pulls_remaining)
        return digest

    def confirm(self, source: ImageReference) -> Digest | None:
        """The digest the source has under its own reference, asked of the registry.

        For a pinned source, whether the registry holds that digest at all.
        """
        reference = source.digest or source.reference
        return self._client(source.registry).manifest_digest(
            source.repository, reference
        )

    def _client(self, registry: str) -> DistributionClient:
        with self._lock:
            client = self._clients.get(registry)
            if client is not None:
                return client
            credentials = self._settings.dockerhub if is_docker_hub(registry) else None
            http = HttpClient(self._settings.registry_endpoint(registry), self._options)
            tokens = RegistryTokenSource(self._options, credentials, shared=http)
            client = DistributionClient(http, tokens, name=registry)
            self._clients[registry] = client
            self._closers += [http, tokens]
            return client

    def close(self) -> None:
        with self._lock:
            for closer in self._closers:
                closer.close()
            self._closers.clear()
            self._clients.clear()
