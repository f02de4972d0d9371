"""The image list: its format, the targets it implies, and every rule it enforces."""

from __future__ import annotations

import pytest

from sync_core.errors import InvalidImageList
from sync_core.imagelist import (
    DEFAULT_LIMITS,
    RULES,
    Entry,
    ImageList,
    Limits,
    Problem,
    parse_image_list,
)
from sync_core.reference import Digest, ImageReference, TargetReference

D = "a" * 64
E = "e" * 64
SHA256 = Digest(f"sha256:{D}")


def errors_of(
    data: str | bytes,
    *,
    login_server: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[Problem, ...]:
    with pytest.raises(InvalidImageList) as caught:
        parse_image_list(data, login_server=login_server, limits=limits)
    return caught.value.errors


def pairs(image_list: ImageList) -> list[tuple[str, str]]:
    return [(str(entry.source), str(entry.target)) for entry in image_list.entries]


# Field cases: each stands for its whole kind of fault.


def test_field_case_1_tag_and_digest_import_the_digest_under_the_tag() -> None:
    text = (
        f"registry.k8s.io/ingress-nginx/controller:v1.11.1@sha256:{D}"
        " => ingress-nginx/controller\n"
    )

    (entry,) = parse_image_list(text).entries

    assert entry.source == ImageReference(
        "registry.k8s.io", "ingress-nginx/controller", "v1.11.1", SHA256
    )
    assert entry.source.reference == SHA256
    assert entry.target == TargetReference("ingress-nginx/controller", "v1.11.1")


@pytest.mark.parametrize(
    ("digest", "rule", "offset"),
    [
        pytest.param(
            "sha256:" + "a" * 63,
            "reference-digest-encoding",
            7,
            id="reference-digest-encoding: one hex short",
        ),
        pytest.param(
            "sha256:" + "a" * 65,
            "reference-digest-encoding",
            7,
            id="reference-digest-encoding: one hex long",
        ),
        pytest.param(
            "md5:" + "a" * 32,
            "reference-digest-algorithm-unknown",
            0,
            id="reference-digest-algorithm-unknown: md5",
        ),
        pytest.param(
            "sha256" + D,
            "reference-digest-invalid",
            0,
            id="reference-digest-invalid: colon missing",
        ),
    ],
)
def test_field_case_1_a_malformed_digest_is_an_error_naming_the_line(
    digest: str, rule: str, offset: int
) -> None:
    text = (
        "alpine:3.20 => mirror/alpine\n"
        f"registry.k8s.io/ingress-nginx/controller:v1.11.1@{digest}"
        " => ingress-nginx/controller\n"
    )
    digest_column = text.splitlines()[1].index("@") + 2

    (problem,) = errors_of(text)

    assert (problem.line, problem.rule) == (2, rule)
    assert problem.column == digest_column + offset
    assert digest[:20] in problem.text


def test_field_case_2_a_namespaced_docker_hub_path_gets_no_library() -> None:
    (entry,) = parse_image_list(
        "docker.io/axoniq/axonserver:2024.1 => axoniq/axonserver"
    ).entries

    assert entry.source == ImageReference(
        "docker.io", "axoniq/axonserver", "2024.1", None
    )
    assert entry.target == TargetReference("axoniq/axonserver", "2024.1")


@pytest.mark.parametrize(
    ("line", "source"),
    [
        pytest.param(
            "alpine:3.20 => mirror/alpine",
            "docker.io/library/alpine:3.20",
            id="short name is docker hub library",
        ),
        pytest.param(
            "registry.fedoraproject.org/fedora:40 => fedora",
            "registry.fedoraproject.org/fedora:40",
            id="dotted first segment is a registry",
        ),
        pytest.param(
            "localhost/fedora:40 => fedora",
            "localhost/fedora:40",
            id="localhost is a registry",
        ),
        pytest.param(
            "myhost:5000/fedora:40 => fedora",
            "myhost:5000/fedora:40",
            id="first segment with a port is a registry",
        ),
        pytest.param(
            "myhost/fedora:40 => fedora",
            "docker.io/myhost/fedora:40",
            id="plain first segment is a docker hub namespace",
        ),
        pytest.param(
            "index.docker.io/alpine:3.20 => mirror/alpine",
            "docker.io/library/alpine:3.20",
            id="index.docker.io is docker hub",
        ),
        pytest.param(
            "registry-1.docker.io/alpine:3.20 => mirror/alpine",
            "docker.io/library/alpine:3.20",
            id="registry-1.docker.io is docker hub",
        ),
    ],
)
def test_field_case_3_short_names_and_other_registries(line: str, source: str) -> None:
    (entry,) = parse_image_list(line).entries

    assert str(entry.source) == source


def test_field_case_3_short_and_long_names_of_one_image_are_one_entry() -> None:
    text = (
        "alpine:3.20 => mirror/alpine\n"
        "docker.io/library/alpine:3.20 => mirror/alpine:3.20\n"
        "index.docker.io/alpine:3.20 => mirror/alpine\n"
    )

    image_list = parse_image_list(text)

    assert len(image_list.entries) == 1
    assert [warning.rule for warning in image_list.warnings] == ["entry-duplicate"] * 2


@pytest.mark.parametrize(
    "line_end", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "lone CR"]
)
def test_field_case_4_the_last_line_needs_no_line_end(line_end: str) -> None:
    text = (
        f"docker.io/library/busybox:1.36 => busybox{line_end}"
        "quay.io/prometheus/node-exporter:v1.8.2 => prometheus/node-exporter"
    )

    image_list = parse_image_list(text)

    assert pairs(image_list) == [
        ("docker.io/library/busybox:1.36", "busybox:1.36"),
        ("quay.io/prometheus/node-exporter:v1.8.2", "prometheus/node-exporter:v1.8.2"),
    ]
    assert [entry.line for entry in image_list.entries] == [1, 2]


@pytest.mark.parametrize(
    "line",
    [
        "docker.io/library/nginx:1.27 => nginx   # pinned by ops",
        "docker.io/library/nginx:1.27 => nginx\t# pinned by ops",
        "docker.io/library/nginx:1.27 => nginx #",
        "docker.io/library/nginx:1.27 => nginx # has => and # inside",
    ],
)
def test_field_case_5_a_comment_after_an_entry_is_not_part_of_it(line: str) -> None:
    (entry,) = parse_image_list(line).entries

    assert entry.target == TargetReference("nginx", "1.27")


@pytest.mark.parametrize(
    ("line", "column"),
    [
        pytest.param(
            "docker.io/library/nginx:1.27 => nginx#pinned", 38, id="in the target"
        ),
        pytest.param("docker.io/library/nginx:1.27#pinned => nginx", 29, id="source"),
    ],
)
def test_field_case_5_a_hash_without_space_before_it_is_an_error(
    line: str, column: int
) -> None:
    (problem,) = errors_of(line)

    assert (problem.rule, problem.line, problem.column) == (
        "reference-invalid-character",
        1,
        column,
    )
    assert "comment" in problem.message


# The format.


def test_comments_blank_lines_and_blanks_around_the_arrow_are_ignored() -> None:
    text = (
        "# mirrored for the ingress team\n"
        "\n"
        "   \t \n"
        "  #indented comment\n"
        "\talpine:3.20\t=>\tmirror/alpine  \n"
        "nginx:1.27=>nginx\n"
    )

    image_list = parse_image_list(text)

    assert pairs(image_list) == [
        ("docker.io/library/alpine:3.20", "mirror/alpine:3.20"),
        ("docker.io/library/nginx:1.27", "nginx:1.27"),
    ]
    assert [entry.line for entry in image_list.entries] == [5, 6]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xef\xbb\xbfalpine:3.20 => mirror/alpine\n", id="bytes BOM"),
        pytest.param("\ufeffalpine:3.20 => mirror/alpine\n", id="text BOM"),
        pytest.param(b"alpine:3.20 => mirror/alpine\r\n", id="bytes CRLF"),
        pytest.param("alpine:3.20 => mirror/alpine", id="text"),
    ],
)
def test_utf8_with_or_without_bom_as_bytes_or_text(data: str | bytes) -> None:
    image_list = parse_image_list(data)

    assert pairs(image_list) == [
        ("docker.io/library/alpine:3.20", "mirror/alpine:3.20")
    ]


def test_mixed_line_ends_count_lines_as_an_editor_does() -> None:
    text = "# a\r\n# b\r# c\nalpine:3.20\r\n\rnginx:1.27"

    image_list = parse_image_list(text)

    assert [entry.line for entry in image_list.entries] == [4, 6]


def test_only_lf_cr_and_crlf_end_a_line() -> None:
    # str.splitlines would also split at these; a reference can hold none of them.
    text = "alpine:3.20\x0bnginx\n"

    (problem,) = errors_of(text)

    assert (problem.rule, problem.line, problem.column) == (
        "reference-invalid-character",
        1,
        12,
    )
    assert problem.text == "alpine:3.20\\x0bnginx"


# The target an entry writes.


@pytest.mark.parametrize(
    ("line", "target"),
    [
        pytest.param(
            "alpine:3.20", TargetReference("library/alpine", "3.20"), id="source alone"
        ),
        pytest.param(
            "quay.io/jetstack/cert-manager-controller:v1.15.2",
            TargetReference("jetstack/cert-manager-controller", "v1.15.2"),
            id="source alone keeps its path",
        ),
        pytest.param(
            "alpine => mirror/alpine",
            TargetReference("mirror/alpine", "latest"),
            id="no tag anywhere means latest",
        ),
        pytest.param(
            "alpine:3.20 => mirror/alpine:stable",
            TargetReference("mirror/alpine", "stable"),
            id="target tag wins",
        ),
        pytest.param(
            f"alpine:3.20@sha256:{D} => mirror/alpine",
            TargetReference("mirror/alpine", "3.20"),
            id="tag and digest: the tag names the target",
        ),
        pytest.param(
            f"alpine@sha256:{D} => mirror/alpine:3.20",
            TargetReference("mirror/alpine", "3.20"),
            id="digest only with a target tag",
        ),
        pytest.param(
            f"alpine@sha256:{D} => mirror/alpine",
            TargetReference("mirror/alpine", None),
            id="digest only, untagged target: an untagged import",
        ),
        pytest.param(
            f"alpine@sha256:{D}",
            TargetReference("library/alpine", None),
            id="digest only alone: an untagged import",
        ),
    ],
)
def test_the_target_each_entry_writes(line: str, target: TargetReference) -> None:
    (entry,) = parse_image_list(line).entries

    assert entry.target == target


def test_a_target_may_name_this_registrys_login_server() -> None:
    line = "alpine:3.20 => myacr.azurecr.io/mirror/alpine"

    (entry,) = parse_image_list(line, login_server="myacr.azurecr.io").entries

    assert entry.target == TargetReference("mirror/alpine", "3.20")


# Invalid lines: each row names the rule it breaks, and where.


@pytest.mark.parametrize(
    ("line", "rule", "column"),
    [
        pytest.param(
            "alpine:3.20 mirror/alpine",
            "line-syntax",
            12,
            id="line-syntax: arrow missing",
        ),
        pytest.param(
            "alpine:3.20 -> mirror/alpine",
            "line-syntax",
            12,
            id="line-syntax: wrong arrow",
        ),
        pytest.param("a => b => c", "line-syntax", 8, id="line-syntax: second arrow"),
        pytest.param(
            "alpine 3.20 => mirror/alpine",
            "line-syntax",
            7,
            id="line-syntax: space inside the source",
        ),
        pytest.param(
            "alpine => mirror alpine",
            "line-syntax",
            17,
            id="line-syntax: space inside the target",
        ),
        pytest.param(
            "  => mirror/alpine", "line-source-missing", 3, id="line-source-missing"
        ),
        pytest.param(
            "alpine:3.20 =>  ", "line-target-missing", 15, id="line-target-missing"
        ),
        pytest.param(
            "alpine:3.20 => # later",
            "line-target-missing",
            15,
            id="line-target-missing: only a comment after the arrow",
        ),
        pytest.param(
            "alpine:3.20=>mirror/alpine=",
            "reference-invalid-character",
            27,
            id="reference-invalid-character: stray '='",
        ),
        pytest.param(
            "\u00a0alpine:3.20",
            "reference-invalid-character",
            1,
            id="reference-invalid-character: no-break space is not a blank",
        ),
        pytest.param(
            "https://quay.io/app => app",
            "reference-registry-invalid",
            1,
            id="reference-registry-invalid: URL scheme",
        ),
        pytest.param(
            "quay.io/Jetstack/app => app",
            "reference-repository-uppercase",
            9,
            id="reference-repository-uppercase: source",
        ),
        pytest.param(
            "alpine => Mirror/alpine",
            "reference-repository-uppercase",
            11,
            id="reference-repository-uppercase: target",
        ),
        pytest.param(
            "quay.io//app => app",
            "reference-repository-invalid",
            9,
            id="reference-repository-invalid: empty segment",
        ),
        pytest.param(
            "quay.io/" + "a" * 248 + " => app",
            "reference-name-too-long",
            1,
            id="reference-name-too-long",
        ),
        pytest.param(
            "alpine:.1 => mirror/alpine",
            "reference-tag-invalid",
            8,
            id="reference-tag-invalid: starts with a dot",
        ),
        pytest.param(
            "alpine:" + "t" * 129 + " => mirror/alpine",
            "reference-tag-too-long",
            8,
            id="reference-tag-too-long: source",
        ),
        pytest.param(
            "alpine => mirror/alpine:" + "t" * 129,
            "reference-tag-too-long",
            25,
            id="reference-tag-too-long: target",
        ),
        pytest.param(
            "alpine@" + D + " => mirror/alpine",
            "reference-digest-invalid",
            8,
            id="reference-digest-invalid: algorithm missing",
        ),
        pytest.param(
            "alpine@sha1:" + "a" * 40 + " => mirror/alpine",
            "reference-digest-algorithm-unknown",
            8,
            id="reference-digest-algorithm-unknown: sha1",
        ),
        pytest.param(
            "alpine@sha256:" + "A" * 64 + " => mirror/alpine",
            "reference-digest-encoding",
            15,
            id="reference-digest-encoding: uppercase hex",
        ),
        pytest.param(
            "alpine => quay.io/mirror/alpine",
            "target-registry-not-allowed",
            11,
            id="target-registry-not-allowed: another registry",
        ),
        pytest.param(
            f"alpine => mirror/alpine@sha256:{D}",
            "target-digest-not-allowed",
            24,
            id="target-digest-not-allowed",
        ),
    ],
)
def test_invalid_lines_name_their_rule_line_and_column(
    line: str, rule: str, column: int
) -> None:
    text = "# header\n" + line + "\n"

    (problem,) = errors_of(text, login_server="myacr.azurecr.io")

    assert (problem.rule, problem.line, problem.column) == (rule, 2, column)
    assert problem.message.endswith(f"'{problem.text}'")
    assert rule in RULES


def test_an_invalid_utf8_line_is_an_error_and_the_others_are_still_checked() -> None:
    data = b"alpine:3.20\nnginx\xff:1.27\nQuay.io/App\n"

    problems = errors_of(data)

    assert [(p.line, p.column, p.rule) for p in problems] == [
        (2, 6, "encoding-invalid"),
        (3, 9, "reference-repository-uppercase"),
    ]
    assert problems[0].text == "\\xff"


def test_a_utf16_file_is_reported_as_not_utf8() -> None:
    data = "alpine:3.20\n".encode("utf-16")

    problems = errors_of(data)

    assert problems[0].rule == "encoding-invalid"
    assert problems[0].line == 1


# Whole-list rules.


def test_two_sources_for_one_target_tag_name_both_lines() -> None:
    text = (
        "alpine:3.20 => mirror/alpine\n"
        "nginx:1.27 => nginx\n"
        "alpine:3.19 => mirror/alpine:3.20\n"
    )

    (problem,) = errors_of(text)

    assert (problem.rule, problem.line, problem.column) == ("target-conflict", 3, 16)
    assert "line 1 and line 3" in problem.message
    assert "docker.io/library/alpine:3.20" in problem.message
    assert "docker.io/library/alpine:3.19" in problem.message


def test_a_pinned_and_an_unpinned_source_for_one_tag_conflict() -> None:
    text = f"nginx:1.27 => nginx\nnginx:1.27@sha256:{D} => nginx\n"

    (problem,) = errors_of(text)

    assert problem.rule == "target-conflict"


def test_untagged_imports_into_one_repository_do_not_conflict() -> None:
    text = f"alpine@sha256:{D} => mirror/alpine\nalpine@sha256:{E} => mirror/alpine\n"

    image_list = parse_image_list(text)

    assert len(image_list.entries) == 2


def test_one_source_may_write_two_targets() -> None:
    text = "alpine:3.20 => mirror/alpine\nalpine:3.20 => mirror/alpine:stable\n"

    image_list = parse_image_list(text)

    assert len(image_list.entries) == 2
    assert image_list.warnings == ()


def test_an_identical_duplicate_is_a_warning_and_one_entry() -> None:
    text = "alpine:3.20 => mirror/alpine\nnginx\nalpine:3.20 => mirror/alpine:3.20\n"

    image_list = parse_image_list(text)

    assert [entry.line for entry in image_list.entries] == [1, 2]
    (warning,) = image_list.warnings
    assert (warning.rule, warning.line) == ("entry-duplicate", 3)
    assert "line 1" in warning.message


def test_warnings_travel_with_the_errors_of_an_invalid_list() -> None:
    text = "alpine:3.20 => m/a\nalpine:3.20 => m/a\nAlpine\n"

    with pytest.raises(InvalidImageList) as caught:
        parse_image_list(text)

    assert [p.rule for p in caught.value.errors] == ["reference-repository-uppercase"]
    assert [p.rule for p in caught.value.warnings] == ["entry-duplicate"]


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing yet\n", "\ufeff"])
def test_a_list_without_entries_is_valid_with_a_warning(text: str) -> None:
    image_list = parse_image_list(text)

    assert image_list.entries == ()
    assert [warning.rule for warning in image_list.warnings] == ["list-empty"]


# Limits.


def test_the_byte_limit_stops_before_parsing() -> None:
    limits = Limits(max_bytes=20)

    (problem,) = errors_of("alpine:3.20 => mirror/alpine\n", limits=limits)

    assert (problem.rule, problem.line) == ("list-too-large", None)
    assert "20 bytes" in problem.message


def test_the_byte_limit_counts_utf8_bytes_of_text() -> None:
    text = "# \u00e9\u00e9\u00e9\n"

    image_list = parse_image_list(text, limits=Limits(max_bytes=9))
    with pytest.raises(InvalidImageList):
        parse_image_list(text, limits=Limits(max_bytes=8))

    assert image_list.entries == ()


def test_the_line_limit_names_the_first_line_past_it() -> None:
    text = "alpine\n# a\n# b\n"

    (problem,) = errors_of(text, limits=Limits(max_lines=2))

    assert (problem.rule, problem.line) == ("list-too-many-lines", 3)


def test_a_line_past_the_length_limit_is_reported_and_not_parsed() -> None:
    long_line = "alpine:3.20 => mirror/alpine   # " + "x" * 100

    problems = errors_of(f"{long_line}\nAlpine\n", limits=Limits(max_line_length=80))

    assert [(p.rule, p.line, p.column) for p in problems] == [
        ("line-too-long", 1, 81),
        ("reference-repository-uppercase", 2, 1),
    ]


def test_the_default_limits_admit_a_long_pinned_line() -> None:
    source = "r.io/" + "p" * 200 + ":" + "t" * 128 + "@sha512:" + "b" * 128
    line = f"{source} => " + "m" * 250 + ":" + "t" * 128 + "   # " + "c" * 100

    image_list = parse_image_list(line)

    assert len(line) < DEFAULT_LIMITS.max_line_length
    assert len(image_list.entries) == 1


# Gathering.


def test_every_error_in_the_list_is_reported_in_line_order() -> None:
    text = (
        "Alpine => mirror/alpine\n"
        "alpine:3.20 => mirror/alpine\n"
        "quay.io/app@sha256:abc => Quay\n"
        "nginx =>\n"
    )

    problems = errors_of(text)

    assert [(p.line, p.rule) for p in problems] == [
        (1, "reference-repository-uppercase"),
        (3, "reference-digest-encoding"),
        (3, "reference-repository-uppercase"),
        (4, "line-target-missing"),
    ]


def test_the_error_message_summarises_the_count_and_the_first_errors() -> None:
    text = "A\nB\nC\nD\nE\n"

    with pytest.raises(InvalidImageList) as caught:
        parse_image_list(text)

    message = str(caught.value)
    assert message.startswith("the image list is invalid, 5 errors: line 1, column 1")
    assert "reference-repository-uppercase" in message
    assert message.endswith("and 2 more")


def test_a_problem_reads_as_line_column_rule_message() -> None:
    problem = Problem(3, 8, "reference-tag-invalid", ".1", "source: bad tag: '.1'")

    assert (
        str(problem) == "line 3, column 8: reference-tag-invalid: source: bad tag: '.1'"
    )


def test_unprintable_offending_text_is_escaped_and_cut_short() -> None:
    line = "alp\u2013ine:" + "t" * 300

    (problem,) = errors_of(line)

    assert problem.text.startswith("alp\\u2013ine:ttt")
    assert problem.text.endswith("...")
    assert problem.text.isascii()


def test_the_example_list_is_valid() -> None:
    from pathlib import Path

    data = (Path(__file__).parent.parent / "examples" / "images.txt").read_bytes()

    image_list = parse_image_list(data)

    assert len(image_list.entries) > 0
    assert all(isinstance(entry, Entry) for entry in image_list.entries)


# The rule table is the one list of rules; every rule is tested somewhere.

RULE_EXAMPLES: dict[str, str | bytes] = {
    "list-too-many-lines": "\n" * (DEFAULT_LIMITS.max_lines + 1),
    "list-too-large": "#" * (DEFAULT_LIMITS.max_bytes + 1),
    "encoding-invalid": b"\xc3\x28\n",
    "list-empty": "# nothing\n",
    "line-too-long": "#" * (DEFAULT_LIMITS.max_line_length + 1),
    "line-syntax": "a => b => c",
    "line-source-missing": "=> b",
    "line-target-missing": "a =>",
    "reference-invalid-character": "a\u00e9",
    "reference-registry-invalid": "a_b.io/c",
    "reference-repository-uppercase": "A",
    "reference-repository-invalid": "a-",
    "reference-name-too-long": "a" * 250,
    "reference-tag-invalid": "a:-",
    "reference-tag-too-long": "a:" + "t" * 129,
    "reference-digest-invalid": "a@b",
    "reference-digest-algorithm-unknown": "a@md5:" + "0" * 32,
    "reference-digest-encoding": "a@sha256:0",
    "target-registry-not-allowed": "a => b.io/c",
    "target-digest-not-allowed": f"a => b@sha256:{D}",
    "target-conflict": "a => c\nb => c",
    "entry-duplicate": "a\na",
}
# Rules no list can break: an empty reference never reaches the reference parser
# (the line rules catch it first), and an unreadable file is the validator's.
RULES_OUTSIDE_A_LIST = {"reference-empty", "file-unreadable"}


def test_every_rule_in_the_table_has_an_example() -> None:
    assert set(RULE_EXAMPLES) | RULES_OUTSIDE_A_LIST == set(RULES)


@pytest.mark.parametrize(
    ("rule", "data"), list(RULE_EXAMPLES.items()), ids=list(RULE_EXAMPLES)
)
def test_each_rule_example_breaks_its_rule(rule: str, data: str | bytes) -> None:
    try:
        image_list = parse_image_list(data)
    except InvalidImageList as error:
        found = [p.rule for p in (*error.errors, *error.warnings)]
    else:
        found = [p.rule for p in image_list.warnings]

    assert rule in found
    assert RULES[rule].severity == (
        "warning" if rule in {"list-empty", "entry-duplicate"} else "error"
    )
