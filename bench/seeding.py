"""Putting a generated list's images in place, fast, before anything is measured.

Every source tag gets an image of its own in the public backend. All of them share
one base image's blobs, as images built on one base layer do: the blobs are pushed
once, every repository mounts them (the distribution specification's cross-
repository blob mount), and a tag costs one manifest upload, made distinct by an
annotation naming the repository and the tag. The target side can be filled with
the very same manifests, which is the state a finished sync leaves: the next run
finds every entry unchanged. Both go straight to the docker-registry backends, in
parallel, outside the stand-in's fronts and so outside its counters and latency.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.lists import GeneratedEntry
from standin.harness import Standin
from standin.images import (
    Digest,
    Image,
    RegistryError,
    annotated,
    build_image,
    push_image,
    push_manifests,
    registry_session,
)
from standin.seed import CATALOG_FILE, Catalog, SourceImage

WORKERS = 8
BASE_REPOSITORY = "bench/base"
REQUEST_TIMEOUT_SECONDS = 30.0
_REFERENCE_ANNOTATION = "org.opencontainers.image.ref.name"
_BASE = build_image("bench base image")


def tag_image(entry: GeneratedEntry) -> Image:
    """Generation 0 of an entry's source tag: the base's blobs, its own digest."""
    return annotated(
        _BASE, {_REFERENCE_ANNOTATION: f"{entry.host}/{entry.repository}:{entry.tag}"}
    )


def seed_sources(
    standin: Standin, entries: Iterable[GeneratedEntry]
) -> dict[GeneratedEntry, Digest]:
    """Pushes every source not seeded yet and records it where ``move_tag`` looks."""
    catalog = Catalog(standin.state_dir / CATALOG_FILE)
    known = catalog.entries()
    missing = [entry for entry in entries if str(_source(entry)) not in known]
    digests = _push_all(
        standin.public_backend,
        missing,
        lambda entry: _source(entry).backend_repository,
    )
    catalog.record_many(
        (_source(entry), 0, False, digest) for entry, digest in digests.items()
    )
    return digests


def seed_targets(
    standin: Standin, entries: Iterable[GeneratedEntry]
) -> dict[GeneratedEntry, Digest]:
    """Puts generation 0 of each entry's source under its target tag in the ACR."""
    return _push_all(
        standin.acr_backend, list(entries), lambda entry: entry.target_repository
    )


def _source(entry: GeneratedEntry) -> SourceImage:
    return SourceImage.of(entry.host, entry.repository, entry.tag)


def _push_all(
    registry_url: str,
    entries: list[GeneratedEntry],
    repository_of: Callable[[GeneratedEntry], str],
) -> dict[GeneratedEntry, Digest]:
    by_repository: dict[str, list[GeneratedEntry]] = defaultdict(list)
    for entry in entries:
        by_repository[repository_of(entry)].append(entry)
    sessions = _Sessions()

    def push_repository(
        repository: str, tags: list[GeneratedEntry]
    ) -> list[tuple[GeneratedEntry, Digest]]:
        session = sessions.get()
        for blob in _BASE.blobs:
            _mount(session, registry_url, repository, blob.digest)
        pushed = []
        for entry in tags:
            image = tag_image(entry)
            digest = push_manifests(session, registry_url, repository, entry.tag, image)
            pushed.append((entry, digest))
        return pushed

    try:
        if by_repository:
            push_image(sessions.get(), registry_url, BASE_REPOSITORY, "base", _BASE)
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="bench-seed") as pool:
            results = pool.map(
                lambda item: push_repository(*item), by_repository.items()
            )
            return {entry: digest for pushed in results for entry, digest in pushed}
    finally:
        sessions.close()


def _mount(
    session: requests.Session, registry_url: str, repository: str, digest: str
) -> None:
    """Links a blob of the base repository into another: one request, no upload."""
    answer = session.post(
        f"{registry_url}/v2/{repository}/blobs/uploads/",
        params={"mount": digest, "from": BASE_REPOSITORY},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    if answer.status_code != 201:
        raise RegistryError(
            f"a blob mount must answer 201: {repository} from {BASE_REPOSITORY} "
            f"{digest} answered {answer.status_code}: {answer.text[:200]}"
        )


class _Sessions:
    """One HTTP session per pushing thread, all closed at the end."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[requests.Session] = []

    def get(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = registry_session()
            with self._lock:
                self._opened.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            for session in self._opened:
                session.close()
            self._opened.clear()
