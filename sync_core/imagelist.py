"""The image list: the reviewed file that says which public images to mirror.

One entry a line::

    SOURCE => TARGET      # a comment
    SOURCE

SOURCE is a reference by the OCI distribution grammar (see ``sync_core.reference``);
TARGET is ``repository[:tag]`` in this registry, optionally prefixed by this
registry's login server. Spaces and tabs around the arrow and at either end of a
line are ignored. ``#`` starts a comment at the start of a line or after a space or
tab; elsewhere it is an error, because no reference may hold one. Blank lines are
ignored. The file is UTF-8, with or without a byte order mark, and its lines end in
LF, CRLF or a lone CR; the last line needs no line end.

Which target an entry writes:

- ``SOURCE`` alone writes the source's normalised repository path and tag, as
  ``az acr import`` does: ``alpine:3.20`` writes ``library/alpine:3.20``.
- A target without a tag takes the source's tag; a source with neither tag nor
  digest has the tag ``latest``. A source with tag and digest imports the digest
  and the tag names the target.
- A digest-only source whose target has no tag is an untagged import (ACR's
  ``untaggedTargetRepositories``): the manifest lands in the repository with no tag,
  and the target's ``tag`` is ``None``. Give the target a tag to name it.

As in Docker, a target's first segment that holds a ``.`` or a ``:``, or is
``localhost``, reads as a registry host; to name a repository that starts with such a
segment, write the login server in front of it.

Whole-list rules: two entries that write the same target tag from different sources
are an error naming both lines; an entry repeated exactly (after normalising) is a
warning and counts once. Size limits guard the parser (see ``Limits``).

Every problem in the whole list is gathered before anything is decided, and a list
with any error raises ``InvalidImageList`` holding all of them: a run applies all of
a list or none of it. ``RULES`` names every rule a problem can cite.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from sync_core.errors import InvalidImageList, InvalidReference
from sync_core.reference import (
    ImageReference,
    TargetReference,
    parse_image_reference,
    parse_target_reference,
)

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule a list can break, as the README documents it."""

    severity: Severity
    summary: str


def _error(summary: str) -> Rule:
    return Rule("error", summary)


def _warning(summary: str) -> Rule:
    return Rule("warning", summary)


RULES: Final[Mapping[str, Rule]] = MappingProxyType(
    {
        # The file as a whole.
        "file-unreadable": _error("the validator cannot read the file"),
        "list-too-large": _error("the file is larger than the byte limit"),
        "list-too-many-lines": _error("the file has more lines than the line limit"),
        "encoding-invalid": _error("a line is not valid UTF-8"),
        "list-empty": _warning("the list has no entries, so a run imports nothing"),
        # The shape of one line.
        "line-too-long": _error("a line is longer than the line-length limit"),
        "line-syntax": _error(
            "a line is not 'SOURCE => TARGET' or 'SOURCE': a second '=>', "
            "or a space inside a reference"
        ),
        "line-source-missing": _error("'=>' has no source before it"),
        "line-target-missing": _error("'=>' has no target after it"),
        # One reference, source or target (reference grammar).
        "reference-empty": _error("the reference is empty"),
        "reference-invalid-character": _error(
            "a character no reference may hold: whitespace, '#', '=', non-ASCII"
        ),
        "reference-registry-invalid": _error(
            "the registry is not a domain name, IPv4 address, bracketed IPv6 "
            "address or localhost, with an optional port from 1 to 65535"
        ),
        "reference-repository-uppercase": _error("a repository holds capitals"),
        "reference-repository-invalid": _error(
            "a repository segment is not lowercase letters and digits joined by "
            "'.', '_', '__' or dashes, or a segment is empty"
        ),
        "reference-name-too-long": _error(
            "registry and repository together exceed 255 characters"
        ),
        "reference-tag-invalid": _error(
            "a tag is not letters, digits, '_', '.' and '-', starting with a "
            "letter, digit or '_'"
        ),
        "reference-tag-too-long": _error("a tag exceeds 128 characters"),
        "reference-digest-invalid": _error("a digest is not 'algorithm:hex'"),
        "reference-digest-algorithm-unknown": _error(
            "a digest's algorithm is not sha256 or sha512"
        ),
        "reference-digest-encoding": _error(
            "a digest's hex is not lowercase or not the algorithm's length "
            "(64 for sha256, 128 for sha512)"
        ),
        # A target and the registry it writes to.
        "target-registry-not-allowed": _error(
            "a target names a registry host other than this registry's login server"
        ),
        "target-digest-not-allowed": _error("a target carries a digest"),
        # The list as a whole.
        "target-conflict": _error(
            "two entries write the same target tag from different sources"
        ),
        "entry-duplicate": _warning(
            "an entry repeats an earlier one exactly; it counts once"
        ),
    }
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what the parser reads; each one broken is its own error."""

    max_bytes: int = 4 * 1024 * 1024
    max_lines: int = 10_000
    max_line_length: int = 1024


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True, slots=True)
class Entry:
    """One import the list asks for: which source, to which target, from which line."""

    line: int
    source: ImageReference
    target: TargetReference


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule: where (1-based line and column), which rule, what text.

    ``text`` is the offending text with anything unprintable or non-ASCII escaped;
    ``message`` says what is wrong and ends with that text.
    """

    line: int | None
    column: int | None
    rule: str
    text: str
    message: str

    def __str__(self) -> str:
        place = "" if self.line is None else f"line {self.line}"
        if self.line is not None and self.column is not None:
            place += f", column {self.column}"
        prefix = f"{place}: " if place else ""
        return f"{prefix}{self.rule}: {self.message}"


@dataclass(frozen=True, slots=True)
class ImageList:
    """A valid list: its entries in file order, and any warnings."""

    entries: tuple[Entry, ...]
    warnings: tuple[Problem, ...]


def parse_image_list(
    data: str | bytes,
    *,
    login_server: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> ImageList:
    """Parse and check a whole list; raise ``InvalidImageList`` with every error."""
    size = _size_in_bytes(data)
    if size > limits.max_bytes:
        raise InvalidImageList(
            (
                _problem(
                    None,
                    None,
                    "list-too-large",
                    "",
                    f"the list is larger than the limit of {limits.max_bytes} bytes",
                ),
            ),
            (),
        )

    collector = _Collector(login_server)
    lines = _split_lines(data)
    if len(lines) > limits.max_lines:
        collector.errors.append(
            _problem(
                limits.max_lines + 1,
                None,
                "list-too-many-lines",
                "",
                f"the list holds at most {limits.max_lines} lines; "
                f"this one has {len(lines)}",
            )
        )
    for number, raw in enumerate(lines, start=1):
        collector.read_line(number, raw, limits.max_line_length)

    entries = collector.merge_entries()
    if not entries and not collector.errors:
        collector.warnings.append(
            _problem(None, None, "list-empty", "", "the list has no entries")
        )
    warnings = tuple(sorted(collector.warnings, key=_position))
    if collector.errors:
        raise InvalidImageList(tuple(sorted(collector.errors, key=_position)), warnings)
    return ImageList(entries, warnings)


@dataclass(frozen=True, slots=True)
class _ParsedLine:
    entry: Entry
    text: str
    target_column: int


class _Collector:
    """Reads lines one by one, keeping the entries and the problems found so far."""

    def __init__(self, login_server: str | None) -> None:
        self.login_server = login_server
        self.parsed: list[_ParsedLine] = []
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def read_line(self, number: int, raw: str | bytes, max_length: int) -> None:
        text = self._decode(number, raw)
        if text is None:
            return
        if len(text) > max_length:
            self.errors.append(
                _problem(
                    number,
                    max_length + 1,
                    "line-too-long",
                    text,
                    f"a line holds at most {max_length} characters; "
                    f"this one has {len(text)}",
                )
            )
            return
        self._parse_line(number, text)

    def merge_entries(self) -> tuple[Entry, ...]:
        """Drop exact repeats with a warning; report two sources for one tag."""
        kept: list[Entry] = []
        first_of_pair: dict[tuple[ImageReference, TargetReference], Entry] = {}
        first_of_tag: dict[TargetReference, Entry] = {}
        for parsed in self.parsed:
            entry = parsed.entry
            pair = (entry.source, entry.target)
            earlier = first_of_pair.get(pair)
            if earlier is not None:
                self.warnings.append(_duplicate(parsed, earlier))
                continue
            first_of_pair[pair] = entry

            # An untagged import names no tag, so two of them cannot collide.
            if entry.target.tag is not None:
                earlier = first_of_tag.get(entry.target)
                if earlier is not None:
                    self.errors.append(_conflict(parsed, earlier))
                    continue
                first_of_tag[entry.target] = entry
            kept.append(entry)
        return tuple(kept)

    def _decode(self, number: int, raw: str | bytes) -> str | None:
        if isinstance(raw, str):
            return raw
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            column = len(raw[: error.start].decode("utf-8")) + 1
            bad = raw[error.start : error.end]
            self.errors.append(
                _problem(
                    number,
                    column,
                    "encoding-invalid",
                    "".join(f"\\x{byte:02x}" for byte in bad),
                    "the list must be UTF-8; these bytes are not (save the file "
                    "as UTF-8)",
                )
            )
            return None

    def _parse_line(self, number: int, text: str) -> None:
        content = _strip_comment(text)
        if not content.strip(_BLANKS):
            return
        fields = content.split(_ARROW)
        if len(fields) > 2:
            second = content.index(_ARROW, len(fields[0]) + len(_ARROW))
            self.errors.append(
                _problem(
                    number,
                    second + 1,
                    "line-syntax",
                    content.strip(_BLANKS),
                    "an entry holds one '=>' between source and target",
                )
            )
            return

        if len(fields) == 1:
            self._parse_source_only(number, content)
        else:
            self._parse_mapping(number, content, fields[0], fields[1])

    def _parse_source_only(self, number: int, content: str) -> None:
        text, column = _field(content, 0)
        source = self._parse_source(number, text, column, " (is '=>' missing?)")
        if source is not None:
            target = TargetReference(source.repository, source.tag)
            self._keep(Entry(number, source, target), content, column)

    def _parse_mapping(
        self, number: int, content: str, source_field: str, target_field: str
    ) -> None:
        source_text, source_column = _field(source_field, 0)
        source = None
        if source_text:
            source = self._parse_source(number, source_text, source_column, "")
        else:
            self.errors.append(
                _problem(
                    number,
                    len(source_field) + 1,
                    "line-source-missing",
                    content.strip(_BLANKS),
                    "an entry starts with a source reference before '=>'",
                )
            )

        target_start = len(source_field) + len(_ARROW)
        target_text, target_column = _field(target_field, target_start)
        if not target_text:
            self.errors.append(
                _problem(
                    number,
                    target_start + 1,
                    "line-target-missing",
                    content.strip(_BLANKS),
                    "'=>' is followed by a target repository",
                )
            )
            return
        default_tag = None if source is None else source.tag
        target = self._parse_target(number, target_text, target_column, default_tag)
        if source is not None and target is not None:
            self._keep(Entry(number, source, target), content, target_column)

    def _parse_source(
        self, number: int, text: str, column: int, hint: str
    ) -> ImageReference | None:
        if not self._check_blanks(number, text, column, "source", hint):
            return None
        try:
            return parse_image_reference(text)
        except InvalidReference as error:
            self.errors.append(_reference_problem(number, column, "source", error))
            return None

    def _parse_target(
        self, number: int, text: str, column: int, default_tag: str | None
    ) -> TargetReference | None:
        if not self._check_blanks(number, text, column, "target", ""):
            return None
        try:
            return parse_target_reference(
                text, default_tag=default_tag, login_server=self.login_server
            )
        except InvalidReference as error:
            self.errors.append(_reference_problem(number, column, "target", error))
            return None

    def _check_blanks(
        self, number: int, text: str, column: int, role: str, hint: str
    ) -> bool:
        blank = _BLANK.search(text)
        if blank is None:
            return True
        self.errors.append(
            _problem(
                number,
                column + blank.start(),
                "line-syntax",
                text,
                f"a {role} is one reference with no space or tab inside{hint}",
            )
        )
        return False

    def _keep(self, entry: Entry, content: str, target_column: int) -> None:
        self.parsed.append(_ParsedLine(entry, content.strip(_BLANKS), target_column))


_ARROW: Final = "=>"
_BLANKS: Final = " \t"
_BLANK = re.compile(r"[ \t]")
_BOM: Final = "\ufeff"
_BOM_BYTES: Final = _BOM.encode("utf-8")
# A comment starts at '#' at the start of a line or after a space or tab.
_COMMENT = re.compile(r"(?:^|(?<=[ \t]))#")
_LINE_END = re.compile(r"\r\n|\r|\n")
_LINE_END_BYTES = re.compile(rb"\r\n|\r|\n")
_SHOWN_TEXT_LENGTH = 120


def _size_in_bytes(data: str | bytes) -> int:
    if isinstance(data, bytes):
        return len(data)
    return len(data.encode("utf-8", "surrogatepass"))


def _split_lines(data: str | bytes) -> list[str | bytes]:
    """Split at LF, CRLF and lone CR only; a final line end opens no new line."""
    lines: list[str | bytes]
    if isinstance(data, bytes):
        lines = [*_LINE_END_BYTES.split(data.removeprefix(_BOM_BYTES))]
    else:
        lines = [*_LINE_END.split(data.removeprefix(_BOM))]
    if lines[-1] in ("", b""):
        lines.pop()
    return lines


def _strip_comment(text: str) -> str:
    comment = _COMMENT.search(text)
    return text if comment is None else text[: comment.start()]


def _field(text: str, start: int) -> tuple[str, int]:
    """A field without its blanks, and the 1-based column where it begins."""
    stripped = text.lstrip(_BLANKS)
    return stripped.rstrip(_BLANKS), start + len(text) - len(stripped) + 1


def _reference_problem(
    number: int, column: int, role: str, error: InvalidReference
) -> Problem:
    offset = 0 if error.position is None else error.position
    return _problem(
        number, column + offset, error.rule, error.text, f"{role}: {error.detail}"
    )


def _duplicate(parsed: _ParsedLine, earlier: Entry) -> Problem:
    return _problem(
        parsed.entry.line,
        None,
        "entry-duplicate",
        parsed.text,
        f"repeats line {earlier.line} ({earlier.source} => {earlier.target}); "
        "it counts once",
    )


def _conflict(parsed: _ParsedLine, earlier: Entry) -> Problem:
    entry = parsed.entry
    return _problem(
        entry.line,
        parsed.target_column,
        "target-conflict",
        str(entry.target),
        f"line {earlier.line} and line {entry.line} both write {entry.target}, "
        f"from {earlier.source} and from {entry.source}; keep one",
    )


def _problem(
    line: int | None, column: int | None, rule: str, text: str, detail: str
) -> Problem:
    shown = _visible(text)
    message = f"{detail}: '{shown}'" if shown else detail
    return Problem(line, column, rule, shown, message)


def _visible(text: str) -> str:
    """The text with unprintable and non-ASCII characters escaped, cut short."""
    if len(text) > _SHOWN_TEXT_LENGTH:
        text = text[:_SHOWN_TEXT_LENGTH] + "..."
    if text.isascii() and text.isprintable():
        return text
    return "".join(
        character
        if character.isascii() and character.isprintable()
        else character.encode("unicode_escape", "backslashreplace").decode("ascii")
        for character in text
    )


def _position(problem: Problem) -> tuple[int, int]:
    return (problem.line or 0, problem.column or 0)
