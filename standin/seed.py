"""Fills the public backend with an image for every source in an image list.

The backend is one docker-registry for all public registries; a repository there
is named ``<host>/<repository>``, as in ``docker.io/cloudflare/cloudflared``.

What was pushed is kept in ``<state_dir>/images.json``: per source reference its
generation (how often the tag moved), whether it is multi-platform and its digest.
The seed string of an image is the reference and its generation, so seeding again
gives the same digests and every move gives a new one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from standin.images import (
    MULTI_PLATFORM,
    SINGLE_PLATFORM,
    Digest,
    Image,
    build_image,
    push_image,
    registry_session,
)

logger = logging.getLogger(__name__)

CATALOG_FILE = "images.json"
# Pushes at once while seeding: enough to keep docker-registry busy on two cores.
SEED_WORKERS = 8
DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = frozenset({"index.docker.io", "registry-1.docker.io"})

# Multi-platform upstream too; the rest of the example list is seeded single-platform
# so both shapes are exercised.
MULTI_PLATFORM_SOURCES = frozenset(
    {
        ("registry.k8s.io", "ingress-nginx/controller"),
        ("docker.io", "cloudflare/cloudflared"),
    }
)


@dataclass(frozen=True, slots=True, order=True)
class SourceImage:
    """A tag in a public registry, with Docker Hub's defaults filled in."""

    host: str
    repository: str
    tag: str

    @classmethod
    def of(cls, host: str, repository: str, tag: str) -> SourceImage:
        host = DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host
        # Docker Hub puts single-segment names under library/, and only those.
        if host == DOCKER_HUB and "/" not in repository:
            repository = f"library/{repository}"
        return cls(host, repository, tag)

    @property
    def backend_repository(self) -> str:
        """The repository's name in the public backend."""
        return f"{self.host}/{self.repository}"

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"


def parse_source(line: str) -> SourceImage | None:
    """The source of one image-list line, or None for a blank line, a comment, or a
    reference pinned by digest alone (no tag to seed under).

    Only the source is read (``SOURCE [=> TARGET]``); the project's own parser owns
    the full grammar.
    """
    source = line.split("#", 1)[0].split("=>", 1)[0].strip()
    name = source.partition("@")[0]
    if not name:
        return None

    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    elif "@" in source:
        return None
    else:
        tag = "latest"

    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return SourceImage.of(first, rest, tag)
    return SourceImage.of(DOCKER_HUB, name, tag)


def read_sources(path: Path) -> list[SourceImage]:
    """Every distinct source in an image list, in list order."""
    sources: dict[SourceImage, None] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        source = parse_source(line)
        if source is not None:
            sources[source] = None
    return list(sources)


class Catalog:
    """What has been pushed to the public backend, kept in ``images.json``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        entries: dict[str, dict[str, Any]] = json.loads(
            self.path.read_text(encoding="utf-8")
        )
        return entries

    def digests(self) -> dict[str, Digest]:
        """The digest each seeded source reference points at."""
        return {
            reference: Digest(entry["digest"])
            for reference, entry in self.entries().items()
        }

    def record(
        self,
        source: SourceImage,
        *,
        generation: int,
        multi_platform: bool,
        digest: Digest,
    ) -> None:
        self.record_many([(source, generation, multi_platform, digest)])

    def record_many(
        self, pushed: Iterable[tuple[SourceImage, int, bool, Digest]]
    ) -> None:
        """Records many pushes with one write: (source, generation, multi-platform,
        digest) each."""
        entries = self.entries()
        for source, generation, multi_platform, digest in pushed:
            entries[str(source)] = {
                "generation": generation,
                "multi_platform": multi_platform,
                "digest": digest,
            }
        self.path.write_text(
            json.dumps(entries, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )


def seed_public_backend(
    public_backend: str,
    sources: Iterable[SourceImage],
    catalog: Catalog,
    *,
    workers: int = SEED_WORKERS,
) -> dict[str, Digest]:
    """Pushes generation 0 of every source, ``workers`` at a time; returns the digest
    of each reference. The catalog is written once, after the last push."""
    sessions = _SessionPerThread()

    def push(source: SourceImage) -> tuple[SourceImage, int, bool, Digest]:
        multi_platform = (source.host, source.repository) in MULTI_PLATFORM_SOURCES
        image = _image(source, 0, multi_platform)
        digest = push_image(
            sessions.get(), public_backend, source.backend_repository, source.tag, image
        )
        return source, 0, multi_platform, digest

    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="seed") as pool:
            pushed = list(pool.map(push, sources))
    finally:
        sessions.close()
    catalog.record_many(pushed)
    logger.info("seeded source images count=%s", len(pushed))
    return {str(source): digest for source, _, _, digest in pushed}


def move_tag(
    public_backend: str,
    catalog: Catalog,
    host: str,
    repository: str,
    tag: str,
    *,
    multi_platform: bool | None = None,
) -> Digest:
    """Pushes new content under a tag, as an upstream re-push does; returns its digest.

    The image keeps the shape it was seeded with unless ``multi_platform`` says
    otherwise; a tag never seeded becomes single-platform by default.
    """
    source = SourceImage.of(host, repository, tag)
    entry = catalog.entries().get(str(source), {})
    generation = int(entry.get("generation", -1)) + 1
    if multi_platform is None:
        multi_platform = bool(entry.get("multi_platform", False))
    return _push(
        public_backend,
        source,
        catalog,
        generation=generation,
        multi_platform=multi_platform,
    )


def _push(
    public_backend: str,
    source: SourceImage,
    catalog: Catalog,
    *,
    generation: int,
    multi_platform: bool,
) -> Digest:
    image = _image(source, generation, multi_platform)
    with registry_session() as session:
        digest = push_image(
            session, public_backend, source.backend_repository, source.tag, image
        )

    catalog.record(
        source, generation=generation, multi_platform=multi_platform, digest=digest
    )
    logger.info(
        "seeded source image %s digest=%s generation=%s", source, digest, generation
    )
    return digest


def _image(source: SourceImage, generation: int, multi_platform: bool) -> Image:
    return build_image(
        f"{source}#{generation}", MULTI_PLATFORM if multi_platform else SINGLE_PLATFORM
    )


class _SessionPerThread:
    """One HTTP session per pushing thread, all closed at the end."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[requests.Session] = []

    def get(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = registry_session()
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
