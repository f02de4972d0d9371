"""Generated image lists: many entries over a few hundred repositories.

Entry ``i`` reads repository ``i // tags_per_repository`` at its
``i % tags_per_repository``-th tag, so a longer list starts with a shorter one and
one seeding serves both. Repositories are spread over the five public registries
the stand-in serves, Docker Hub taking the largest share, as in real lists.
"""

from __future__ import annotations

from dataclasses import dataclass

# The registry of each repository, in a cycle of 20: Docker Hub 8, quay.io 4,
# ghcr.io 3, registry.k8s.io 3, mcr.microsoft.com 2, interleaved so that even a
# short list reaches several registries.
REGISTRY_CYCLE = (
    "docker.io", "quay.io", "ghcr.io", "docker.io", "registry.k8s.io",
    "docker.io", "mcr.microsoft.com", "quay.io", "docker.io", "ghcr.io",
    "docker.io", "registry.k8s.io", "quay.io", "docker.io", "mcr.microsoft.com",
    "ghcr.io", "docker.io", "registry.k8s.io", "quay.io", "docker.io",
)  # fmt: skip
DEFAULT_TAGS_PER_REPOSITORY = 4
_ORGANISATIONS = 23


@dataclass(frozen=True, slots=True, order=True)
class GeneratedEntry:
    """One list line: a source tag in a public registry and its target."""

    host: str
    repository: str
    tag: str
    target_repository: str

    @property
    def source(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"

    @property
    def target(self) -> str:
        return f"{self.target_repository}:{self.tag}"

    @property
    def line(self) -> str:
        return f"{self.source} => {self.target}"


def generate_entries(
    count: int,
    *,
    tags_per_repository: int = DEFAULT_TAGS_PER_REPOSITORY,
    prefix: str = "",
) -> list[GeneratedEntry]:
    """``count`` distinct entries, ``tags_per_repository`` tags a repository; every
    repository name starts with ``prefix``, so lists with different prefixes
    share no repository."""
    if count < 0 or tags_per_repository < 1:
        raise ValueError(
            f"a list needs a count >= 0 and at least one tag a repository, got "
            f"{count} and {tags_per_repository}"
        )
    entries = []
    for index in range(count):
        number, tag_number = divmod(index, tags_per_repository)
        host = REGISTRY_CYCLE[number % len(REGISTRY_CYCLE)]
        repository = f"{prefix}team{number % _ORGANISATIONS}/app{number}"
        entries.append(
            GeneratedEntry(
                host=host,
                repository=repository,
                tag=f"1.{tag_number}.0",
                target_repository=f"mirror/{repository}",
            )
        )
    return entries


def render(entries: list[GeneratedEntry]) -> str:
    """The list's text, one entry a line."""
    return "".join(f"{entry.line}\n" for entry in entries)


def spread(entries: list[GeneratedEntry], count: int) -> list[GeneratedEntry]:
    """``count`` entries spread evenly over the list (every k-th), in list order."""
    if not 0 <= count <= len(entries):
        raise ValueError(
            f"the number picked must be between 0 and {len(entries)}, got {count}"
        )
    if count == 0:
        return []
    return [entries[index * len(entries) // count] for index in range(count)]


def repositories_of(entries: list[GeneratedEntry]) -> int:
    """How many distinct source repositories the entries read."""
    return len({(entry.host, entry.repository) for entry in entries})
