"""The offline validator: ``python -m sync_core validate FILE``.

Pipelines run it on a pull request, before a list is published, with the parser the
app itself uses, so a list that passes here is a list the app accepts (given the same
login server). It contacts no registry.

Exit status: 0 for a valid list (warnings allowed), 1 for an invalid one, 2 when the
file cannot be read or the format is unknown. Output goes to standard output in one
of ``FORMATS``:

- ``text``: ``FILE:LINE:COLUMN: error: RULE: MESSAGE`` lines, then a summary;
- ``json``: one document with ``valid``, ``errors``, ``warnings`` and the normalised
  ``entries``;
- ``azure-devops``: Azure Pipelines ``##vso[task.logissue ...]`` logging commands;
- ``github``: GitHub Actions ``::error ...::`` workflow commands.

The rules a problem can cite are listed in ``sync_core.imagelist.RULES``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from sync_core.errors import InvalidImageList
from sync_core.imagelist import (
    DEFAULT_LIMITS,
    Entry,
    Limits,
    Problem,
    parse_image_list,
)

FORMATS: Final = ("text", "json", "azure-devops", "github")
EXIT_VALID: Final = 0
EXIT_INVALID: Final = 1
EXIT_USAGE: Final = 2
STDIN: Final = "-"


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Everything the validator found: the entries of a valid list, or its errors."""

    entries: tuple[Entry, ...]
    errors: tuple[Problem, ...]
    warnings: tuple[Problem, ...]

    @property
    def valid(self) -> bool:
        return not self.errors


def validate(
    data: str | bytes,
    *,
    login_server: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> ValidationResult:
    """Check a list's contents; an invalid list gives its errors, not an exception."""
    try:
        image_list = parse_image_list(data, login_server=login_server, limits=limits)
    except InvalidImageList as error:
        return ValidationResult((), error.errors, error.warnings)
    return ValidationResult(image_list.entries, (), image_list.warnings)


def validate_command(path: str, output_format: str, login_server: str | None) -> int:
    """Validate the list at ``path`` (``-`` for standard input) and print the result.

    Returns the exit status: 0 valid, 1 invalid, 2 unreadable file or unknown format.
    """
    if output_format not in FORMATS:
        sys.stderr.write(
            f"unknown format {output_format!r}; use one of {', '.join(FORMATS)}\n"
        )
        return EXIT_USAGE

    try:
        data = _read(path, DEFAULT_LIMITS.max_bytes + 1)
    except OSError as error:
        reason = error.strerror or str(error)
        problem = Problem(
            None,
            None,
            "file-unreadable",
            path,
            f"the list cannot be read ({reason}): '{path}'",
        )
        unreadable = ValidationResult((), (problem,), ())
        sys.stdout.write(render(unreadable, output_format, path))
        return EXIT_USAGE

    result = validate(data, login_server=login_server)
    sys.stdout.write(render(result, output_format, path))
    return EXIT_VALID if result.valid else EXIT_INVALID


def render(result: ValidationResult, output_format: str, path: str) -> str:
    """The result in one of ``FORMATS``, ending with a newline."""
    renderer = _RENDERERS.get(output_format)
    if renderer is None:
        raise ValueError(f"unknown format {output_format!r}")
    return renderer(result, path)


def _read(path: str, limit: int) -> bytes:
    # Reading one byte past the limit is enough for the parser to report the size.
    if path == STDIN:
        return sys.stdin.buffer.read(limit)
    with Path(path).open("rb") as file:
        return file.read(limit)


def _render_text(result: ValidationResult, path: str) -> str:
    shown = _shown_path(path)
    lines = [
        f"{_location(shown, problem)}: {severity}: {problem.rule}: {problem.message}"
        for severity, problem in _problems(result)
    ]
    lines.append(f"{shown}: {_summary(result)}")
    return "\n".join(lines) + "\n"


def _render_json(result: ValidationResult, path: str) -> str:
    document = {
        "file": None if path == STDIN else path,
        "valid": result.valid,
        "errors": [asdict(problem) for problem in result.errors],
        "warnings": [asdict(problem) for problem in result.warnings],
        "entries": [_entry_document(entry) for entry in result.entries],
    }
    return json.dumps(document, indent=2) + "\n"


def _entry_document(entry: Entry) -> dict[str, Any]:
    source, target = entry.source, entry.target
    return {
        "line": entry.line,
        "source": {
            "reference": str(source),
            "registry": source.registry,
            "repository": source.repository,
            "tag": source.tag,
            "digest": source.digest,
        },
        "target": {
            "reference": str(target),
            "repository": target.repository,
            "tag": target.tag,
        },
    }


def _render_azure_devops(result: ValidationResult, path: str) -> str:
    # Azure Pipelines logging commands: properties escape '%', CR, LF, ';' and ']';
    # the message escapes '%', CR and LF ("Logging commands", Azure DevOps docs).
    lines = []
    for severity, problem in _problems(result):
        properties = {
            "type": severity,
            "sourcepath": None if path == STDIN else path,
            "linenumber": problem.line,
            "columnnumber": problem.column,
            "code": problem.rule,
        }
        fields = ";".join(
            f"{key}={_escape(str(value), _AZURE_PROPERTY)}"
            for key, value in properties.items()
            if value is not None
        )
        message = _escape(f"{problem.rule}: {problem.message}", _AZURE_DATA)
        lines.append(f"##vso[task.logissue {fields}]{message}")
    lines.append(f"{_shown_path(path)}: {_summary(result)}")
    return "\n".join(lines) + "\n"


def _render_github(result: ValidationResult, path: str) -> str:
    # GitHub workflow commands: properties escape '%', CR, LF, ':' and ',';
    # the message escapes '%', CR and LF ("Workflow commands", GitHub docs).
    lines = []
    for severity, problem in _problems(result):
        properties = {
            "file": None if path == STDIN else path,
            "line": problem.line,
            "col": problem.column,
            "title": problem.rule,
        }
        fields = ",".join(
            f"{key}={_escape(str(value), _GITHUB_PROPERTY)}"
            for key, value in properties.items()
            if value is not None
        )
        message = _escape(problem.message, _GITHUB_DATA)
        lines.append(f"::{severity} {fields}::{message}")
    lines.append(f"{_shown_path(path)}: {_summary(result)}")
    return "\n".join(lines) + "\n"


_RENDERERS: Final[Mapping[str, Callable[[ValidationResult, str], str]]] = {
    "text": _render_text,
    "json": _render_json,
    "azure-devops": _render_azure_devops,
    "github": _render_github,
}

_AZURE_DATA: Final = {"%": "%AZP25", "\r": "%0D", "\n": "%0A"}
_AZURE_PROPERTY: Final = {**_AZURE_DATA, ";": "%3B", "]": "%5D"}
_GITHUB_DATA: Final = {"%": "%25", "\r": "%0D", "\n": "%0A"}
_GITHUB_PROPERTY: Final = {**_GITHUB_DATA, ":": "%3A", ",": "%2C"}


def _escape(text: str, table: Mapping[str, str]) -> str:
    return "".join(table.get(character, character) for character in text)


def _problems(result: ValidationResult) -> list[tuple[str, Problem]]:
    return [("error", problem) for problem in result.errors] + [
        ("warning", problem) for problem in result.warnings
    ]


def _shown_path(path: str) -> str:
    return "<stdin>" if path == STDIN else path


def _location(shown_path: str, problem: Problem) -> str:
    parts = [shown_path]
    if problem.line is not None:
        parts.append(str(problem.line))
        if problem.column is not None:
            parts.append(str(problem.column))
    return ":".join(parts)


def _summary(result: ValidationResult) -> str:
    if any(problem.rule == "file-unreadable" for problem in result.errors):
        return "not checked, the file cannot be read"
    warnings = _count(len(result.warnings), "warning")
    if result.valid:
        return f"valid, {_count(len(result.entries), 'entry')}, {warnings}"
    errors = _count(len(result.errors), "error")
    return f"invalid, {errors}, {warnings}; nothing in it will be imported"


def _count(number: int, noun: str) -> str:
    if number == 1:
        return f"1 {noun}"
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{number} {plural}"
