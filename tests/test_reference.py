"""Source and target references parse by the OCI grammar and normalise to one form."""

from __future__ import annotations

import pytest

from sync_core.errors import InvalidReference
from sync_core.reference import (
    DOCKER_HUB,
    Digest,
    ImageReference,
    TargetReference,
    is_docker_hub,
    parse_digest,
    parse_image_reference,
    parse_target_reference,
)

D = "a" * 64
SHA256 = f"sha256:{D}"
SHA512 = "sha512:" + "b" * 128


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        pytest.param(
            "alpine", DOCKER_HUB, "library/alpine", "latest", None, id="short name"
        ),
        pytest.param(
            "alpine:3.20", DOCKER_HUB, "library/alpine", "3.20", None, id="short tag"
        ),
        pytest.param(
            "docker.io/axoniq/axonserver:2024.1",
            DOCKER_HUB,
            "axoniq/axonserver",
            "2024.1",
            None,
            id="namespaced hub path gets no library",
        ),
        pytest.param(
            "axoniq/axonserver",
            DOCKER_HUB,
            "axoniq/axonserver",
            "latest",
            None,
            id="namespaced hub path without registry",
        ),
        pytest.param(
            "index.docker.io/nginx",
            DOCKER_HUB,
            "library/nginx",
            "latest",
            None,
            id="index.docker.io is docker hub",
        ),
        pytest.param(
            "registry-1.docker.io/library/nginx:1.27",
            DOCKER_HUB,
            "library/nginx",
            "1.27",
            None,
            id="registry-1.docker.io is docker hub",
        ),
        pytest.param(
            "Docker.IO/nginx",
            DOCKER_HUB,
            "library/nginx",
            "latest",
            None,
            id="registry host is case-insensitive",
        ),
        pytest.param(
            "registry.fedoraproject.org/fedora:40",
            "registry.fedoraproject.org",
            "fedora",
            "40",
            None,
            id="other registry keeps single segment",
        ),
        pytest.param(
            "localhost/app",
            "localhost",
            "app",
            "latest",
            None,
            id="localhost is a registry",
        ),
        pytest.param(
            "localhost:5000/team/app:v1",
            "localhost:5000",
            "team/app",
            "v1",
            None,
            id="registry with port",
        ),
        pytest.param(
            "10.0.0.1:5000/app",
            "10.0.0.1:5000",
            "app",
            "latest",
            None,
            id="ipv4 registry",
        ),
        pytest.param(
            "[::1]:5000/app:v1",
            "[::1]:5000",
            "app",
            "v1",
            None,
            id="bracketed ipv6 registry",
        ),
        pytest.param(
            "[2001:db8::1]/app", "[2001:db8::1]", "app", "latest", None, id="ipv6"
        ),
        pytest.param(
            "my-registry.example.com/a/b/c",
            "my-registry.example.com",
            "a/b/c",
            "latest",
            None,
            id="deep path",
        ),
        pytest.param(
            "quay.io/a.b_c__d---e/f",
            "quay.io",
            "a.b_c__d---e/f",
            "latest",
            None,
            id="every separator",
        ),
        pytest.param(
            f"registry.k8s.io/ingress-nginx/controller:v1.11.1@{SHA256}",
            "registry.k8s.io",
            "ingress-nginx/controller",
            "v1.11.1",
            SHA256,
            id="tag and digest",
        ),
        pytest.param(
            f"alpine@{SHA256}",
            DOCKER_HUB,
            "library/alpine",
            None,
            SHA256,
            id="digest only has no tag",
        ),
        pytest.param(
            f"quay.io/app@{SHA512}", "quay.io", "app", None, SHA512, id="sha512"
        ),
        pytest.param(
            "alpine:" + "t" * 128,
            DOCKER_HUB,
            "library/alpine",
            "t" * 128,
            None,
            id="tag of 128 characters",
        ),
        pytest.param(
            "alpine:_Under.score-1",
            DOCKER_HUB,
            "library/alpine",
            "_Under.score-1",
            None,
            id="tag keeps its case",
        ),
        pytest.param(
            "quay.io", DOCKER_HUB, "library/quay.io", "latest", None, id="no slash"
        ),
    ],
)
def test_valid_references_normalise(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    reference = parse_image_reference(text)

    assert reference == ImageReference(
        registry, repository, tag, None if digest is None else Digest(digest)
    )


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        pytest.param("", "reference-empty", id="reference-empty: nothing"),
        pytest.param(
            "alpine 3.20",
            "reference-invalid-character",
            id="reference-invalid-character: a space",
        ),
        pytest.param(
            "nginx:1.27#pinned",
            "reference-invalid-character",
            id="reference-invalid-character: '#' never belongs to a reference",
        ),
        pytest.param(
            "alpine\u2013edge",
            "reference-invalid-character",
            id="reference-invalid-character: a pasted en dash",
        ),
        pytest.param(
            "https://quay.io/app",
            "reference-registry-invalid",
            id="reference-registry-invalid: a URL scheme",
        ),
        pytest.param(
            "my_registry.io/app",
            "reference-registry-invalid",
            id="reference-registry-invalid: underscore in host",
        ),
        pytest.param(
            "-quay.io/app",
            "reference-registry-invalid",
            id="reference-registry-invalid: label starts with a dash",
        ),
        pytest.param(
            "a" * 64 + ".io/app",
            "reference-registry-invalid",
            id="reference-registry-invalid: label over 63 characters",
        ),
        pytest.param(
            "999.0.0.1/app",
            "reference-registry-invalid",
            id="reference-registry-invalid: ipv4 octet over 255",
        ),
        pytest.param(
            "[::g]/app",
            "reference-registry-invalid",
            id="reference-registry-invalid: not an ipv6 address",
        ),
        pytest.param(
            "[::1/app",
            "reference-registry-invalid",
            id="reference-registry-invalid: unclosed bracket",
        ),
        pytest.param(
            "localhost:0/app",
            "reference-registry-invalid",
            id="reference-registry-invalid: port zero",
        ),
        pytest.param(
            "localhost:65536/app",
            "reference-registry-invalid",
            id="reference-registry-invalid: port over 65535",
        ),
        pytest.param(
            "localhost:http/app",
            "reference-registry-invalid",
            id="reference-registry-invalid: port not a number",
        ),
        pytest.param(
            "[::1]x/app",
            "reference-registry-invalid",
            id="reference-registry-invalid: text after ipv6 bracket",
        ),
        pytest.param(
            "Alpine",
            "reference-repository-uppercase",
            id="reference-repository-uppercase: capital in short name",
        ),
        pytest.param(
            "quay.io/Jetstack/cert-manager",
            "reference-repository-uppercase",
            id="reference-repository-uppercase: capital in namespace",
        ),
        pytest.param(
            "quay.io/",
            "reference-repository-invalid",
            id="reference-repository-invalid: registry without repository",
        ),
        pytest.param(
            "quay.io/a//b",
            "reference-repository-invalid",
            id="reference-repository-invalid: empty segment",
        ),
        pytest.param(
            "quay.io/a/",
            "reference-repository-invalid",
            id="reference-repository-invalid: trailing slash",
        ),
        pytest.param(
            "quay.io/-app",
            "reference-repository-invalid",
            id="reference-repository-invalid: leading dash",
        ),
        pytest.param(
            "quay.io/app.",
            "reference-repository-invalid",
            id="reference-repository-invalid: trailing dot",
        ),
        pytest.param(
            "quay.io/a___b",
            "reference-repository-invalid",
            id="reference-repository-invalid: three underscores",
        ),
        pytest.param(
            "quay.io/a..b",
            "reference-repository-invalid",
            id="reference-repository-invalid: two dots",
        ),
        pytest.param(
            "quay.io/" + "a" * 248,
            "reference-name-too-long",
            id="reference-name-too-long: 256 characters with registry",
        ),
        pytest.param(
            "a" * 250,
            "reference-name-too-long",
            id="reference-name-too-long: counted after normalising",
        ),
        pytest.param(
            "alpine:", "reference-tag-invalid", id="reference-tag-invalid: empty tag"
        ),
        pytest.param(
            "alpine:.hidden",
            "reference-tag-invalid",
            id="reference-tag-invalid: starts with a dot",
        ),
        pytest.param(
            "alpine:-rc",
            "reference-tag-invalid",
            id="reference-tag-invalid: starts with a dash",
        ),
        pytest.param(
            "alpine:3.20:1",
            "reference-repository-invalid",
            id="reference-repository-invalid: a second colon",
        ),
        pytest.param(
            "alpine:" + "t" * 129,
            "reference-tag-too-long",
            id="reference-tag-too-long: 129 characters",
        ),
        pytest.param(
            "alpine@" + D,
            "reference-digest-invalid",
            id="reference-digest-invalid: no algorithm",
        ),
        pytest.param(
            "alpine@",
            "reference-digest-invalid",
            id="reference-digest-invalid: empty digest",
        ),
        pytest.param(
            "alpine@sha256:" + D + "@" + SHA256,
            "reference-digest-encoding",
            id="reference-digest-encoding: two digests",
        ),
        pytest.param(
            "alpine@1sha:" + D,
            "reference-digest-invalid",
            id="reference-digest-invalid: algorithm starts with a digit",
        ),
        pytest.param(
            "alpine@md5:" + "a" * 32,
            "reference-digest-algorithm-unknown",
            id="reference-digest-algorithm-unknown: md5",
        ),
        pytest.param(
            "alpine@SHA256:" + D,
            "reference-digest-algorithm-unknown",
            id="reference-digest-algorithm-unknown: algorithm names are lowercase",
        ),
        pytest.param(
            "alpine@sha256:" + "a" * 63,
            "reference-digest-encoding",
            id="reference-digest-encoding: 63 hex",
        ),
        pytest.param(
            "alpine@sha256:" + "a" * 65,
            "reference-digest-encoding",
            id="reference-digest-encoding: 65 hex",
        ),
        pytest.param(
            "alpine@sha256:" + "A" * 64,
            "reference-digest-encoding",
            id="reference-digest-encoding: uppercase hex",
        ),
        pytest.param(
            "alpine@sha256:" + "g" * 64,
            "reference-digest-encoding",
            id="reference-digest-encoding: not hex",
        ),
        pytest.param(
            "alpine@sha512:" + D,
            "reference-digest-encoding",
            id="reference-digest-encoding: sha512 needs 128 hex",
        ),
    ],
)
def test_invalid_references_name_their_rule(text: str, rule: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse_image_reference(text)

    assert caught.value.rule == rule
    assert str(caught.value).startswith(f"{rule}: ")
    assert caught.value.text == text


@pytest.mark.parametrize(
    ("text", "position"),
    [
        pytest.param("alpine:-rc", 7, id="tag"),
        pytest.param("quay.io/a/B", 10, id="path segment"),
        pytest.param(f"alpine@sha256:{'a' * 63}", 14, id="digest hex"),
        pytest.param(f"alpine:1@md5:{D}", 9, id="digest algorithm"),
        pytest.param("alpine 3", 6, id="character"),
        pytest.param("localhost:99999/a", 9, id="port"),
    ],
)
def test_an_invalid_reference_points_at_the_fault(text: str, position: int) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse_image_reference(text)

    assert caught.value.position == position


def test_a_reference_renders_in_canonical_form() -> None:
    reference = parse_image_reference(f"index.docker.io/nginx:1.27@{SHA256}")

    assert str(reference) == f"docker.io/library/nginx:1.27@{SHA256}"
    assert reference.name == "docker.io/library/nginx"


def test_the_reference_to_import_is_the_digest_when_pinned() -> None:
    pinned = parse_image_reference(f"nginx:1.27@{SHA256}")
    tagged = parse_image_reference("nginx:1.27")
    bare = parse_image_reference("nginx")

    assert pinned.reference == SHA256
    assert tagged.reference == "1.27"
    assert bare.reference == "latest"


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        ("docker.io", True),
        ("index.docker.io", True),
        ("registry-1.docker.io", True),
        ("Docker.IO", True),
        ("quay.io", False),
        ("docker.io:443", False),
    ],
)
def test_docker_hub_has_three_names(registry: str, expected: bool) -> None:
    assert is_docker_hub(registry) is expected


def test_a_digest_is_checked_on_its_own() -> None:
    assert parse_digest(SHA256) == SHA256
    with pytest.raises(InvalidReference, match="reference-digest-encoding"):
        parse_digest("sha256:abc")


@pytest.mark.parametrize(
    ("text", "default_tag", "login_server", "expected"),
    [
        pytest.param(
            "mirror/alpine",
            "3.20",
            None,
            TargetReference("mirror/alpine", "3.20"),
            id="takes the default tag",
        ),
        pytest.param(
            "mirror/alpine:edge",
            "3.20",
            None,
            TargetReference("mirror/alpine", "edge"),
            id="own tag wins",
        ),
        pytest.param(
            "mirror/alpine",
            None,
            None,
            TargetReference("mirror/alpine", None),
            id="untagged import",
        ),
        pytest.param(
            "alpine",
            "3.20",
            None,
            TargetReference("alpine", "3.20"),
            id="single segment gets no library",
        ),
        pytest.param(
            "myacr.azurecr.io/mirror/alpine:1",
            None,
            "myacr.azurecr.io",
            TargetReference("mirror/alpine", "1"),
            id="own login server is dropped",
        ),
        pytest.param(
            "MyAcr.AzureCR.io/mirror/alpine",
            "1",
            "myacr.azurecr.io",
            TargetReference("mirror/alpine", "1"),
            id="login server compares without case",
        ),
    ],
)
def test_valid_targets(
    text: str,
    default_tag: str | None,
    login_server: str | None,
    expected: TargetReference,
) -> None:
    target = parse_target_reference(
        text, default_tag=default_tag, login_server=login_server
    )

    assert target == expected


@pytest.mark.parametrize(
    ("text", "login_server", "rule"),
    [
        pytest.param(
            "quay.io/app",
            None,
            "target-registry-not-allowed",
            id="target-registry-not-allowed: host without a login server",
        ),
        pytest.param(
            "other.azurecr.io/app",
            "myacr.azurecr.io",
            "target-registry-not-allowed",
            id="target-registry-not-allowed: another registry",
        ),
        pytest.param(
            "localhost:5000/app",
            "myacr.azurecr.io",
            "target-registry-not-allowed",
            id="target-registry-not-allowed: localhost",
        ),
        pytest.param(
            f"app@{SHA256}",
            None,
            "target-digest-not-allowed",
            id="target-digest-not-allowed: digest on the target",
        ),
        pytest.param(
            "Mirror/app",
            None,
            "reference-repository-uppercase",
            id="reference-repository-uppercase: capital in target",
        ),
        pytest.param(
            "app:" + "t" * 129,
            None,
            "reference-tag-too-long",
            id="reference-tag-too-long: target tag",
        ),
        pytest.param(
            "app:-x", None, "reference-tag-invalid", id="reference-tag-invalid: target"
        ),
        pytest.param(
            "a/" + "b" * 254,
            None,
            "reference-name-too-long",
            id="reference-name-too-long: target repository",
        ),
        pytest.param(
            "a/" + "b" * 240,
            "myacr.azurecr.io",
            "reference-name-too-long",
            id="reference-name-too-long: counted with the login server",
        ),
        pytest.param(
            "app name",
            None,
            "reference-invalid-character",
            id="reference-invalid-character: target",
        ),
    ],
)
def test_invalid_targets_name_their_rule(
    text: str, login_server: str | None, rule: str
) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse_target_reference(text, default_tag="1", login_server=login_server)

    assert caught.value.rule == rule


def test_an_untagged_target_renders_as_its_repository() -> None:
    assert str(TargetReference("mirror/alpine", None)) == "mirror/alpine"
    assert str(TargetReference("mirror/alpine", "3.20")) == "mirror/alpine:3.20"
