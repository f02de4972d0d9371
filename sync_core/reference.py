"""Image references: parsed by the OCI distribution reference grammar, normalised.

A source reference follows the grammar the distribution project publishes for
references (``distribution/reference``)::

    reference         := name [ ":" tag ] [ "@" digest ]
    name              := [ domain "/" ] path
    domain            := host [ ":" port-number ]
    host              := domain-name | IPv4address | "[" IPv6address "]"
    domain-name       := domain-component [ "." domain-component ]*
    domain-component  := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    port-number       := /[0-9]+/
    path              := path-component [ "/" path-component ]*
    path-component    := alpha-numeric [ separator alpha-numeric ]*
    alpha-numeric     := /[a-z0-9]+/
    separator         := /[_.]|__|[-]+/
    tag               := /[\\w][\\w.-]{0,127}/
    digest            := algorithm ":" encoded
    algorithm         := algorithm-component [ /[+._-]/ algorithm-component ]*
    algorithm-component := /[A-Za-z][A-Za-z0-9]*/
    encoded           := /[0-9a-fA-F]{32,}/

The same project caps the name (domain, ``/`` and path) at 255 characters. The
first path segment is a registry only when it holds a ``.`` or a ``:`` or is
``localhost``; otherwise the whole name is a Docker Hub path. Hosts are held to
what the grammar's names mean: IPv4 octets up to 255, a real IPv6 address in the
brackets, domain labels of at most 63 characters (RFC 1035), ports 1 to 65535.

Normalising follows Docker's conventions so that two spellings of one image
compare equal: the registry host is lowercased, ``index.docker.io`` and
``registry-1.docker.io`` become ``docker.io`` (also the registry of a name without
one), a single-segment Docker Hub path gains ``library/`` (a namespaced one never
does), and a reference with neither tag nor digest gets the tag ``latest``.

A digest must use an algorithm the OCI image specification registers
(``descriptor.md``: ``sha256`` with 64 and ``sha512`` with 128 lowercase hex
characters). The grammar admits other algorithms so that it can grow; a digest in
one of them names nothing a registry can be asked to verify today.

A target is ``[host/]repository[:tag]`` in the app's own registry. The host is
allowed only when it is that registry's login server; a target never carries a
digest, because the import copies whatever the source names.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final, NewType

from sync_core.errors import InvalidReference

Digest = NewType("Digest", str)

DOCKER_HUB: Final = "docker.io"
DEFAULT_TAG: Final = "latest"
MAX_NAME_LENGTH: Final = 255
MAX_TAG_LENGTH: Final = 128

_DOCKER_HUB_ALIASES: Final = frozenset(
    {DOCKER_HUB, "index.docker.io", "registry-1.docker.io"}
)
_DOCKER_HUB_LIBRARY: Final = "library/"

# Encoded length of each algorithm the OCI image specification registers
# (descriptor.md, "Registered algorithms"); both are lowercase hex only.
_REGISTERED_DIGESTS: Final = {"sha256": 64, "sha512": 128}

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_DOMAIN_COMPONENT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_PORT = re.compile(r"[0-9]+")
_ALGORITHM = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[+._-][A-Za-z][A-Za-z0-9]*)*")
_LOWER_HEX = re.compile(r"[0-9a-f]+")
# Every character the grammar can use anywhere in a reference.
_REFERENCE_CHARACTERS = re.compile(r"[A-Za-z0-9._/:@+\[\]-]*")
_MAX_PORT = 65535
_MAX_LABEL_LENGTH = 63  # RFC 1035, section 2.3.4


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A normalised source reference: where an image comes from and which one."""

    registry: str
    repository: str
    tag: str | None
    digest: Digest | None

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def name(self) -> str:
        """The registry and repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What to resolve or import: the digest when pinned, else the tag."""
        if self.digest is not None:
            return self.digest
        return self.tag if self.tag is not None else DEFAULT_TAG


@dataclass(frozen=True, slots=True)
class TargetReference:
    """Where an image lands in this registry; ``tag=None`` is an untagged import."""

    repository: str
    tag: str | None

    def __str__(self) -> str:
        if self.tag is None:
            return self.repository
        return f"{self.repository}:{self.tag}"


def is_docker_hub(registry: str) -> bool:
    """Tell whether a registry host names Docker Hub under any of its names."""
    return registry.lower() in _DOCKER_HUB_ALIASES


def parse_image_reference(text: str) -> ImageReference:
    """Parse and normalise a source reference; raise ``InvalidReference``."""
    _check_characters(text)
    name, tag, digest = _split_reference(text)

    registry, path, _ = _split_registry(name, text)
    if registry is None:
        registry = DOCKER_HUB
    if is_docker_hub(registry) and "/" not in path:
        path = _DOCKER_HUB_LIBRARY + path
    _check_name_length(f"{registry}/{path}", text)

    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageReference(registry, path, tag, digest)


def parse_digest(text: str, *, reference: str | None = None, offset: int = 0) -> Digest:
    """Check a digest against the grammar and the registered algorithms."""
    shown = text if reference is None else reference
    algorithm, colon, encoded = text.partition(":")
    if not colon or not _ALGORITHM.fullmatch(algorithm):
        raise InvalidReference(
            "reference-digest-invalid",
            shown,
            f"a digest is 'algorithm:hex', such as 'sha256:' and 64 hex characters, "
            f"not {text!r}",
            offset,
        )

    length = _REGISTERED_DIGESTS.get(algorithm)
    if length is None:
        known = ", ".join(sorted(_REGISTERED_DIGESTS))
        raise InvalidReference(
            "reference-digest-algorithm-unknown",
            shown,
            f"digest algorithm {algorithm!r} is not registered; use one of {known}",
            offset,
        )
    if len(encoded) != length or not _LOWER_HEX.fullmatch(encoded):
        found = (
            f"{len(encoded)} characters"
            if len(encoded) != length
            else "characters other than lowercase hex"
        )
        raise InvalidReference(
            "reference-digest-encoding",
            shown,
            f"a {algorithm} digest is '{algorithm}:' and exactly {length} lowercase "
            f"hex characters; this one has {found}",
            offset + len(algorithm) + 1,
        )
    return Digest(text)


def parse_target_reference(
    text: str, *, default_tag: str | None, login_server: str | None = None
) -> TargetReference:
    """Parse a target ``[host/]repository[:tag]``; raise ``InvalidReference``.

    ``default_tag`` is the tag a target without one takes (the source's tag, or
    ``None`` for an untagged import). A host is accepted only when it equals
    ``login_server``.
    """
    _check_characters(text)
    at = text.find("@")
    if at >= 0:
        raise InvalidReference(
            "target-digest-not-allowed",
            text,
            "a target names a repository and tag; the digest belongs on the source",
            at,
        )
    name, tag = _split_tag(text)

    registry, path, path_start = _split_registry(name, text)
    if registry is not None and registry != _normalise_login_server(login_server):
        raise InvalidReference(
            "target-registry-not-allowed",
            text,
            _describe_foreign_registry(registry, login_server),
            0,
        )
    limit = MAX_NAME_LENGTH
    if login_server is not None:
        limit -= len(login_server) + 1
    if len(path) > limit:
        raise InvalidReference(
            "reference-name-too-long",
            text,
            f"a repository in this registry holds at most {limit} characters; "
            f"this one has {len(path)}",
            path_start,
        )

    return TargetReference(path, tag if tag is not None else default_tag)


def _check_characters(text: str) -> None:
    if not text:
        raise InvalidReference("reference-empty", text, "the reference is empty")
    scheme_end = text.find("://")
    if scheme_end >= 0:
        raise InvalidReference(
            "reference-registry-invalid",
            text,
            f"a reference names no URL scheme; drop {text[: scheme_end + 3]!r}",
            0,
        )
    if _REFERENCE_CHARACTERS.fullmatch(text):
        return
    position = next(
        index
        for index, character in enumerate(text)
        if not _REFERENCE_CHARACTERS.fullmatch(character)
    )
    raise InvalidReference(
        "reference-invalid-character",
        text,
        _describe_character(text[position]),
        position,
    )


def _describe_character(character: str) -> str:
    shown = f"U+{ord(character):04X}"
    if character in " \t":
        return f"a reference holds no whitespace ({shown})"
    if character == "#":
        return "'#' is not part of a reference; a comment needs a space before '#'"
    if character in "=>":
        return (
            f"{character!r} is not part of a reference; entries read 'SOURCE => TARGET'"
        )
    if character.isascii() and character.isprintable():
        return f"{character!r} is not allowed in a reference"
    return f"character {shown} is not allowed in a reference"


def _split_reference(text: str) -> tuple[str, str | None, Digest | None]:
    name, at, digest_text = text.partition("@")
    digest = None
    if at:
        digest = parse_digest(digest_text, reference=text, offset=len(name) + 1)
    name, tag = _split_tag(name, reference=text)
    return name, tag, digest


def _split_tag(name: str, *, reference: str | None = None) -> tuple[str, str | None]:
    shown = name if reference is None else reference
    colon = name.rfind(":")
    if colon <= name.rfind("/"):
        return name, None

    tag = name[colon + 1 :]
    if len(tag) > MAX_TAG_LENGTH:
        raise InvalidReference(
            "reference-tag-too-long",
            shown,
            f"a tag holds at most {MAX_TAG_LENGTH} characters; this one has {len(tag)}",
            colon + 1,
        )
    if not _TAG.fullmatch(tag):
        raise InvalidReference(
            "reference-tag-invalid",
            shown,
            "a tag is letters, digits, '_', '.' and '-', and does not start with "
            f"'.' or '-'; got {tag!r}",
            colon + 1,
        )
    return name[:colon], tag


def _split_registry(name: str, reference: str) -> tuple[str | None, str, int]:
    """Split a name into its normalised registry (if any), path and path offset."""
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry = _parse_registry(first, reference)
        _check_path(rest, reference, len(first) + 1)
        return registry, rest, len(first) + 1
    _check_path(name, reference, 0)
    return None, name, 0


def _parse_registry(domain: str, reference: str) -> str:
    if domain.startswith("["):
        host, bracket, _ = domain.partition("]")
        host += bracket
        valid_host = bool(bracket) and _is_ipv6(host[1:-1])
    else:
        host = domain.partition(":")[0]
        valid_host = _is_host(host)
    if not valid_host:
        raise InvalidReference(
            "reference-registry-invalid",
            reference,
            f"registry host {host!r} is not a domain name, an IPv4 address, "
            "a bracketed IPv6 address or 'localhost'",
            0,
        )

    port = domain[len(host) :]
    if port and not (port.startswith(":") and _is_port(port[1:])):
        raise InvalidReference(
            "reference-registry-invalid",
            reference,
            f"registry port {port!r} is not ':' and a number from 1 to {_MAX_PORT}",
            len(host),
        )

    registry = domain.lower()
    return DOCKER_HUB if registry in _DOCKER_HUB_ALIASES else registry


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return "%" not in text


def _is_host(host: str) -> bool:
    labels = host.split(".")
    if len(labels) == 4 and all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    return all(
        len(label) <= _MAX_LABEL_LENGTH and _DOMAIN_COMPONENT.fullmatch(label)
        for label in labels
    )


def _is_port(text: str) -> bool:
    return bool(_PORT.fullmatch(text)) and 1 <= int(text) <= _MAX_PORT


def _check_path(path: str, reference: str, start: int) -> None:
    offset = start
    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            raise _path_component_error(component, reference, offset)
        offset += len(component) + 1


def _path_component_error(
    component: str, reference: str, offset: int
) -> InvalidReference:
    if not component:
        return InvalidReference(
            "reference-repository-invalid",
            reference,
            "a repository path has no empty segments (no leading, trailing or "
            "doubled '/')",
            offset,
        )
    if ":" in component:
        return InvalidReference(
            "reference-repository-invalid",
            reference,
            "':' appears in a name only before the tag (or the registry's port); "
            f"got {component!r}",
            offset + component.index(":"),
        )
    if _PATH_COMPONENT.fullmatch(component.lower()):
        return InvalidReference(
            "reference-repository-uppercase",
            reference,
            f"repository names are lowercase; write {component.lower()!r}, "
            f"not {component!r}",
            offset,
        )
    return InvalidReference(
        "reference-repository-invalid",
        reference,
        "each repository segment is lowercase letters and digits, joined by "
        f"'.', '_', '__' or dashes; got {component!r}",
        offset,
    )


def _check_name_length(name: str, reference: str) -> None:
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidReference(
            "reference-name-too-long",
            reference,
            f"registry and repository together hold at most {MAX_NAME_LENGTH} "
            f"characters; {name!r} has {len(name)}",
        )


def _normalise_login_server(login_server: str | None) -> str | None:
    return None if login_server is None else login_server.strip().lower()


def _describe_foreign_registry(registry: str, login_server: str | None) -> str:
    # Docker's rule: a first segment with '.' or ':', or 'localhost', is a host.
    reads_as = f"{registry!r} reads as a registry host"
    if login_server is None:
        return (
            f"a target is a repository in this registry and {reads_as}; drop it, "
            "or give this registry's login server to allow it"
        )
    return (
        f"a target is a repository in this registry ({login_server}) and "
        f"{reads_as}; to keep it as a repository segment, write "
        f"'{login_server}/' before it"
    )
