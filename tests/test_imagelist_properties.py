"""Properties of the reference and list parsers, over generated input."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from sync_core.errors import InvalidImageList, InvalidReference
from sync_core.imagelist import ImageList, parse_image_list
from sync_core.reference import (
    MAX_NAME_LENGTH,
    parse_image_reference,
)

LOGIN_SERVER = "myacr.azurecr.io"

# Valid pieces, generated from the grammar in sync_core.reference.
path_components = st.from_regex(
    r"[a-z0-9]{1,8}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,8}){0,2}", fullmatch=True
)
paths = st.lists(path_components, min_size=1, max_size=4).map("/".join)
first_labels = st.from_regex(
    r"[a-zA-Z](?:[a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True
)
labels = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True)
domain_names = st.builds(
    lambda first, rest: ".".join([first, *rest]),
    first_labels,
    st.lists(labels, min_size=1, max_size=3),
)
hosts = st.one_of(
    domain_names,
    st.just("localhost"),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda address: f"[{address}]"),
    st.sampled_from(["docker.io", "index.docker.io", "registry-1.docker.io"]),
)
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda port: f":{port}"))
registries = st.builds(lambda host, port: f"{host}{port}/", hosts, ports)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)
digests = st.one_of(
    st.text("0123456789abcdef", min_size=64, max_size=64).map("sha256:".__add__),
    st.text("0123456789abcdef", min_size=128, max_size=128).map("sha512:".__add__),
)


def is_read_as_registry(path: str) -> bool:
    first, slash, _ = path.partition("/")
    return bool(slash) and ("." in first or first == "localhost")


# Without a registry, a first segment holding '.' would itself be read as one.
names = st.one_of(
    st.builds(lambda registry, path: f"{registry}{path}", registries, paths),
    paths.filter(lambda path: not is_read_as_registry(path)),
)
references = st.builds(
    lambda name, tag, digest: (
        name
        + ("" if tag is None else f":{tag}")
        + ("" if digest is None else f"@{digest}")
    ),
    names,
    st.none() | tags,
    st.none() | digests,
)
targets = st.builds(
    lambda path, tag: path if tag is None else f"{path}:{tag}",
    paths.filter(lambda path: not is_read_as_registry(path)),
    st.none() | tags,
)

# Text close enough to the grammar to reach past the first checks.
reference_alphabet = st.sampled_from(list("aZ09._-/:@[]+#=> \t\u00e9"))
list_alphabet = st.sampled_from(list("aZ09._-/:@[]+#=> \t\r\n\ufeff\u00e9"))
near_references = st.text(reference_alphabet, max_size=40) | references
near_lists = st.text(list_alphabet, max_size=200)


def entries_of(image_list: ImageList) -> list[tuple[str, str]]:
    return [(str(entry.source), str(entry.target)) for entry in image_list.entries]


@given(st.text() | near_references)
def test_the_reference_parser_raises_only_its_own_error(text: str) -> None:
    with contextlib.suppress(InvalidReference):
        parse_image_reference(text)


@given(st.text() | st.binary() | near_lists)
@settings(deadline=None)
def test_the_list_parser_raises_only_its_own_error(data: str | bytes) -> None:
    with contextlib.suppress(InvalidImageList):
        parse_image_list(data, login_server=LOGIN_SERVER)


@given(references)
def test_generated_references_stay_within_the_name_limit(text: str) -> None:
    # The pieces are short enough that every generated reference is valid.
    reference = parse_image_reference(text)

    assert len(reference.name) <= MAX_NAME_LENGTH


@given(references)
def test_normalising_is_idempotent(text: str) -> None:
    reference = parse_image_reference(text)

    again = parse_image_reference(str(reference))

    assert again == reference
    assert str(again) == str(reference)


@given(references, st.none() | targets)
def test_a_valid_entry_rendered_back_parses_to_itself(
    source: str, target: str | None
) -> None:
    line = source if target is None else f"{source} => {target}"
    (entry,) = parse_image_list(line).entries
    rendered = str(entry.target)
    if is_read_as_registry(rendered):
        # A source alone can imply such a repository; written out, it needs the
        # login server in front, or its first segment reads as a host.
        rendered = f"{LOGIN_SERVER}/{rendered}"

    (again,) = parse_image_list(
        f"{entry.source} => {rendered}", login_server=LOGIN_SERVER
    ).entries

    assert (again.source, again.target) == (entry.source, entry.target)


@given(
    st.lists(st.tuples(references, st.none() | tags), min_size=1, max_size=8),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.sampled_from(["=>", " => ", "\t=>  ", " =>"]),
    st.booleans(),
    st.booleans(),
)
def test_layout_does_not_change_the_entries(
    rows: list[tuple[str, str | None]],
    line_end: str,
    arrow: str,
    bom: bool,
    final_line_end: bool,
) -> None:
    sources = [parse_image_reference(text) for text, _ in rows]
    # One target repository per row, so no two rows can conflict.
    plain = [
        f"{source} => mirror{index}" + ("" if tag is None else f":{tag}")
        for index, (source, (_, tag)) in enumerate(zip(sources, rows, strict=True))
    ]
    laid_out = [
        f"  {text}{arrow}mirror{index}" + ("" if tag is None else f":{tag}") + "  # ok"
        for index, (text, tag) in enumerate(rows)
    ]
    document = line_end.join(["# header", "", *laid_out])
    document = (
        ("\ufeff" if bom else "") + document + (line_end if final_line_end else "")
    )

    expected = parse_image_list("\n".join(plain))
    actual = parse_image_list(document.encode())

    assert entries_of(actual) == entries_of(expected)
    assert [entry.line for entry in actual.entries] == list(range(3, 3 + len(rows)))
