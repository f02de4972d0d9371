"""The API's client for pipelines: start a run, wait for its report, fail with it.

    python -m sync_core.client sync --app-url URL [--dry-run] [--timeout SECONDS]
    python -m sync_core.client plan --app-url URL [--list FILE]

``sync`` posts to ``/api/sync``, polls the status URL it gets back until the report
is final, and prints the report. While another sync is going (409) it waits for that
one to end, then starts its own, so the list just published is the one applied.
``plan`` posts a list (or nothing, for the published list) to ``/api/plan``.

The function key comes from the ``ACRSYNC_FUNCTION_KEY`` environment variable, never
from the command line, where logs and process lists would show it. The standard
library is enough, so a pipeline needs only Python and a checkout.

Exit status: 0 when the run succeeded; 1 when it ended failed, partial or refused, or
the list is invalid; 2 when the client could not find out (a usage error, an HTTP
error, no answer, or the time ran out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO
from urllib.parse import quote, urljoin, urlsplit

KEY_VARIABLE: Final = "ACRSYNC_FUNCTION_KEY"
EXIT_SUCCEEDED: Final = 0
EXIT_RUN_FAILED: Final = 1
EXIT_CLIENT_ERROR: Final = 2

FINAL_STATUSES: Final = frozenset({"succeeded", "partial", "failed", "refused"})
# Answers that say "ask again later": the app is starting, busy or its storage is.
_TRANSIENT: Final = frozenset({429, 500, 502, 503, 504})
_REQUEST_TIMEOUT_SECONDS: Final = 60.0


class ClientError(Exception):
    """The client cannot tell how the run ended; the message says why."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer of the API: status, headers and the JSON document, if any."""

    status: int
    headers: Mapping[str, str]
    document: Any
    text: str

    def error_text(self) -> str:
        error = self.document.get("error") if isinstance(self.document, dict) else None
        if isinstance(error, dict):
            return f"{self.status} {error.get('code')}: {error.get('message')}"
        return f"{self.status}: {self.text[:300]}"


class ApiClient:
    """Requests to one Function App, with its function key."""

    def __init__(self, app_url: str, key: str | None) -> None:
        parts = urlsplit(app_url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ClientError(f"--app-url must be an http(s) URL, got {app_url!r}")
        self.app_url = app_url.rstrip("/") + "/"
        self._origin = (parts.scheme, parts.netloc)
        self._key = key

    def url(self, route: str) -> str:
        return urljoin(self.app_url, f"api/{route}")

    def status_url(self, reply: Reply, run_id: str) -> str:
        """Where a run's report is: the answer's ``Location`` when it is this app's.

        The key goes only to the app it belongs to, so a ``Location`` on any other
        host is not followed.
        """
        location = reply.headers.get("location")
        if location:
            absolute = urljoin(self.url(""), location)
            parts = urlsplit(absolute)
            if (parts.scheme, parts.netloc) == self._origin:
                return absolute
        return self.url(f"runs/{quote(run_id, safe='')}")

    def call(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> Reply:
        """Sends one request; an HTTP error status is a reply, no answer is an error."""
        headers = {"Accept": "application/json"}
        if self._key:
            headers["x-functions-key"] = self._key
        if content_type is not None:
            headers["Content-Type"] = content_type
        # Every URL called is on the app's origin, which is checked to be http(s).
        request = urllib.request.Request(  # noqa: S310
            url, data=body, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=_REQUEST_TIMEOUT_SECONDS
            ) as response:
                return _reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            with error:
                return _reply(error.code, error.headers, error.read())
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ClientError(f"no answer from {url}: {reason}") from error


def main(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> int:
    arguments = _parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    out, err = sys.stdout, sys.stderr
    try:
        client = ApiClient(arguments.app_url, environ.get(KEY_VARIABLE) or None)
        poller = _Poller(
            client,
            deadline=time.monotonic() + arguments.timeout,
            poll_seconds=arguments.poll_seconds,
            progress=err,
        )
        report: dict[str, Any] | None
        if arguments.command == "sync":
            report = _sync(client, poller, dry_run=arguments.dry_run, progress=err)
        else:
            report = _plan(client, poller, arguments.list, out)
    except ClientError as error:
        err.write(f"error: {error}\n")
        return EXIT_CLIENT_ERROR
    if report is None:
        return EXIT_RUN_FAILED

    out.write(json.dumps(report, indent=2) if arguments.json else render(report))
    out.write("\n")
    return EXIT_SUCCEEDED if report.get("status") == "succeeded" else EXIT_RUN_FAILED


def render(report: Mapping[str, Any]) -> str:
    """The report for a person: one line an entry, problems, then the summary."""
    lines = []
    for row in report.get("entries") or ():
        line = (
            f"{row.get('action', '?'):<9} {row.get('source')} => {row.get('target')} "
            f"{row.get('digest') or '-'}"
        )
        if row.get("reason"):
            line += f" ({row['reason']})"
        lines.append(line)
    for severity in ("errors", "warnings"):
        lines.extend(_problem_line(problem) for problem in report.get(severity) or ())
    if report.get("message"):
        lines.append(str(report["message"]))
    lines.append(summary(report))
    return "\n".join(lines)


def summary(report: Mapping[str, Any]) -> str:
    """``MODE STATUS: N action, ...``, the line a person reads first."""
    counts = report.get("counts") or {}
    shown = ", ".join(f"{count} {action}" for action, count in counts.items())
    return f"{report.get('mode')} {report.get('status')}: {shown}".rstrip(": ")


class _Poller:
    """Polls a report until it is final, within the client's one deadline."""

    def __init__(
        self,
        client: ApiClient,
        *,
        deadline: float,
        poll_seconds: float,
        progress: TextIO,
    ) -> None:
        self._client = client
        self._deadline = deadline
        self._poll_seconds = poll_seconds
        self._progress = progress

    def final_report(self, status_url: str, run_id: str) -> dict[str, Any]:
        last_seen = None
        while True:
            reply = self._ask(status_url)
            if reply is not None:
                report = reply.document
                status = report.get("status")
                if status in FINAL_STATUSES:
                    return dict(report)
                if status != last_seen:
                    self._progress.write(f"run {run_id} is {status}\n")
                    last_seen = status
            self.wait(
                f"run {run_id} is not over after the client's time ran out; "
                f"its report: {status_url}",
                reply,
            )

    def wait(self, timeout_message: str, reply: Reply | None = None) -> None:
        """Sleeps until the next look: as long as the app's ``Retry-After`` says,
        else ``--poll-seconds``; raises when the deadline has passed."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise ClientError(timeout_message)
        delay = self._poll_seconds
        if reply is not None:
            delay = _retry_after(reply.headers.get("retry-after")) or delay
        time.sleep(min(delay, remaining))

    def _ask(self, status_url: str) -> Reply | None:
        """The report's reply, or None for an answer that says "ask again later"."""
        try:
            reply = self._client.call("GET", status_url)
        except ClientError as error:
            self._progress.write(f"{error}; asking again\n")
            return None
        if reply.status in _TRANSIENT:
            self._progress.write(f"{reply.error_text()}; asking again\n")
            return None
        if reply.status != 200 or not isinstance(reply.document, dict):
            raise ClientError(f"GET {status_url} answered {reply.error_text()}")
        return reply


def _sync(
    client: ApiClient, poller: _Poller, *, dry_run: bool, progress: TextIO
) -> dict[str, Any]:
    body = json.dumps({"dryRun": dry_run}).encode()
    while True:
        reply = client.call("POST", client.url("sync"), body, "application/json")
        if reply.status == 202 and isinstance(reply.document, dict):
            run_id = str(reply.document["run_id"])
            status_url = client.status_url(reply, run_id)
            progress.write(f"run {run_id} queued; its report: {status_url}\n")
            report = poller.final_report(status_url, run_id)
            holder = report.get("blocked_by")
            if report.get("status") != "refused" or not holder:
                return report
            # Another run took the lock between the 202 and the queue: wait for
            # it, as for a 409, then start again.
            progress.write(f"run {holder} took the lock first; waiting for it\n")
            holder_url = client.url(f"runs/{quote(str(holder), safe='')}")
            poller.final_report(holder_url, str(holder))
            continue
        if reply.status == 409 and isinstance(reply.document, dict):
            holder = str(reply.document["error"]["run_id"])
            progress.write(f"run {holder} is going; waiting for it to end first\n")
            holder_url = client.url(f"runs/{quote(holder, safe='')}")
            poller.final_report(holder_url, holder)
            continue
        if reply.status in _TRANSIENT:
            progress.write(f"{reply.error_text()}; asking again\n")
            poller.wait("the app did not take the run before the time ran out", reply)
            continue
        raise ClientError(f"POST {client.url('sync')} answered {reply.error_text()}")


def _plan(
    client: ApiClient, poller: _Poller, list_path: str | None, out: TextIO
) -> dict[str, Any] | None:
    body, content_type = None, None
    if list_path is not None:
        try:
            body = Path(list_path).read_bytes()
        except OSError as error:
            raise ClientError(f"the list must be readable: {error}") from error
        content_type = "text/plain; charset=utf-8"

    reply = client.call("POST", client.url("plan"), body, content_type)
    if reply.status == 200 and isinstance(reply.document, dict):
        return dict(reply.document)
    if reply.status == 202 and isinstance(reply.document, dict):
        run_id = str(reply.document["run_id"])
        return poller.final_report(client.status_url(reply, run_id), run_id)
    if reply.status == 422 and isinstance(reply.document, dict):
        refusal = reply.document["error"]
        shown = list_path or "the published list"
        out.write(f"{shown}: {refusal.get('message')}\n")
        for problem in refusal.get("errors") or ():
            out.write(_problem_line(problem, shown) + "\n")
        return None
    raise ClientError(f"POST {client.url('plan')} answered {reply.error_text()}")


def _problem_line(problem: Mapping[str, Any], path: str = "list") -> str:
    where = ":".join(
        str(part)
        for part in (path, problem.get("line"), problem.get("column"))
        if part is not None
    )
    return f"{where}: {problem.get('rule')}: {problem.get('message')}"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` of seconds; None for a date or nothing."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds > 0 else None


def _reply(status: int, headers: Any, data: bytes) -> Reply:
    text = data.decode("utf-8", "replace")
    try:
        document = json.loads(text) if text.strip() else None
    except ValueError:
        document = None
    names = {str(name).lower(): str(value) for name, value in headers.items()}
    return Reply(status=status, headers=names, document=document, text=text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sync_core.client",
        description=(
            "Start a run or a plan on the Function App and print its report; "
            f"the function key is read from {KEY_VARIABLE}."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    sync = commands.add_parser(
        "sync", help="start a sync, wait for its report, exit 1 unless it succeeded"
    )
    sync.add_argument(
        "--dry-run", action="store_true", help="plan only; import nothing"
    )
    plan = commands.add_parser(
        "plan", help="print what a sync would do; exit 1 for an invalid list"
    )
    plan.add_argument(
        "--list", metavar="FILE", help="plan this list instead of the published one"
    )
    for command in (sync, plan):
        command.add_argument(
            "--app-url",
            required=True,
            help="the Function App's URL, such as https://NAME.azurewebsites.net",
        )
        command.add_argument(
            "--timeout",
            type=_seconds,
            default=3600.0,
            help="give up waiting after this many seconds (default 3600)",
        )
        command.add_argument(
            "--poll-seconds",
            type=_seconds,
            default=10.0,
            help=(
                "seconds between two looks at the report when the app sends no "
                "Retry-After (default 10)"
            ),
        )
        command.add_argument(
            "--json", action="store_true", help="print the report as JSON"
        )
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"a positive number is required, got {text!r}")
    return value


if __name__ == "__main__":
    sys.exit(main())
