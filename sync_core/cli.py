"""The command line: the same job as the app, plus the offline list validator.

    python -m sync_core sync [--json] [--list FILE]
    python -m sync_core plan [--json] [--list FILE]
    python -m sync_core validate FILE [--format text|json|azure-devops|github]

``sync`` and ``plan`` read the same app settings as the Function App, from the
environment. ``plan`` reads both registries and changes nothing. Exit status: 0 when
the run succeeded, 1 when it failed or partly failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sync_core.report import RunReport, RunStatus

VALIDATE_FORMATS = ("text", "json", "azure-devops", "github")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if arguments.verbose else logging.WARNING,
        format="%(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # The Azure SDKs log every request; a run's own records are what matter.
    logging.getLogger("azure").setLevel(logging.WARNING)
    if arguments.command == "validate":
        from sync_core.validation import validate_command

        return validate_command(
            arguments.file, arguments.format, arguments.login_server
        )
    return _run(arguments)


def _run(arguments: argparse.Namespace) -> int:
    from sync_core.run import Mode, RunRequest, execute

    list_data = None
    if arguments.list is not None:
        try:
            list_data = Path(arguments.list).read_bytes()
        except OSError as error:
            print(f"error: the list file must be readable: {error}", file=sys.stderr)
            return 2
    request = RunRequest(
        mode=Mode(arguments.command), trigger="cli", list_data=list_data
    )

    report = execute(request, os.environ)
    print(report.to_json() if arguments.json else render_text(report))
    return 0 if report.status is RunStatus.SUCCEEDED else 1


def render_text(report: RunReport) -> str:
    """The report for a person: one line an entry, then the summary."""
    lines = []
    for row in report.entries:
        digest = row.digest or "-"
        line = f"{row.action:<9} {row.source} => {row.target} {digest}"
        if row.reason:
            line += f" ({row.reason})"
        lines.append(line)
    lines.extend(str(problem) for problem in (*report.errors, *report.warnings))
    if report.message:
        lines.append(report.message)
    lines.append(report.summary())
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sync_core",
        description="Keep an Azure Container Registry in step with an image list.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every decision to stderr"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, summary in (
        ("sync", "import what changed upstream, then verify it"),
        ("plan", "show what a sync would do; change nothing"),
    ):
        command = commands.add_parser(name, help=summary, description=summary)
        command.add_argument(
            "--json", action="store_true", help="print the report as JSON"
        )
        command.add_argument(
            "--list",
            metavar="FILE",
            help="use this image list instead of the published one",
        )
    validate = commands.add_parser(
        "validate",
        help="check an image list offline",
        description="Check an image list offline; exit 0 valid, 1 invalid.",
    )
    validate.add_argument("file", help="the image list, or - for standard input")
    validate.add_argument("--format", choices=VALIDATE_FORMATS, default="text")
    validate.add_argument(
        "--login-server",
        help="this registry's login server, allowed as a host in targets",
    )
    return parser
