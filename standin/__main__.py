"""Runs the local stand-in by hand.

    python -m standin start [--dir .standin]    start, seed, print the app settings
    python -m standin env [--dir .standin]      print the app settings again
    python -m standin status [--dir .standin]   list the processes and whether they run
    python -m standin stop [--dir .standin]     stop exactly the processes started there

``start`` and ``env`` print ``export NAME=value`` lines, so
``eval "$(python -m standin env)"`` points a shell at the stand-in; everything else
goes to standard error.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from standin.harness import EXAMPLE_IMAGE_LIST, Standin, StandinError
from standin.images import RegistryError
from standin.processes import ProcessError, read_records, stop_records

DEFAULT_DIR = Path(".standin")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    state_dir: Path = arguments.dir
    try:
        if arguments.command == "start":
            return _start(state_dir, arguments.image_list, arguments.with_dockerhub)
        if arguments.command == "env":
            return _env(state_dir, arguments.with_dockerhub)
        if arguments.command == "status":
            return _status(state_dir)
        return _stop(state_dir)
    except (StandinError, ProcessError, RegistryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m standin",
        description="The local stand-in for Azure, ACR and the public registries.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    helps = {
        "start": "start, seed and print the app settings as export lines",
        "env": "print the app settings of a running stand-in as export lines",
        "status": "list the stand-in's processes and whether each still runs",
        "stop": "stop exactly the processes the stand-in started",
    }
    for name, text in helps.items():
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument(
            "--dir",
            type=Path,
            default=DEFAULT_DIR,
            help="state directory (default: .standin in the current directory)",
        )
        if name in ("start", "env"):
            command.add_argument(
                "--with-dockerhub-credentials",
                dest="with_dockerhub",
                action="store_true",
                help="also print the Docker Hub username and token settings",
            )
        if name == "start":
            command.add_argument(
                "--image-list",
                type=Path,
                default=EXAMPLE_IMAGE_LIST,
                help="image list to seed from and upload (default: the example list)",
            )
    return parser


def _start(state_dir: Path, image_list: Path, with_dockerhub: bool) -> int:
    standin = Standin.start(state_dir, image_list=image_list)
    _print_exports(standin.app_settings(with_dockerhub_credentials=with_dockerhub))
    print(
        f"stand-in running in {standin.state_dir}: "
        f"ARM https://127.0.0.1:{standin.ports.arm}, "
        f"ACR 127.0.0.1:{standin.ports.acr}, "
        f"{len(standin.seeded_digests())} public images seeded; "
        f"stop it with `python -m standin stop --dir {state_dir}`",
        file=sys.stderr,
    )
    standin.close()
    return 0


def _env(state_dir: Path, with_dockerhub: bool) -> int:
    standin = Standin.attach(state_dir)
    _print_exports(standin.app_settings(with_dockerhub_credentials=with_dockerhub))
    standin.close()
    return 0


def _status(state_dir: Path) -> int:
    records = read_records(state_dir.resolve())
    if not records:
        print(f"no stand-in was started in {state_dir}", file=sys.stderr)
        return 1
    running = 0
    for record in records:
        alive = record.is_alive()
        running += alive
        state = "running" if alive else "stopped"
        print(f"{record.name:<16} pid {record.pid:<8} {state}")
    return 0 if running == len(records) else 1


def _stop(state_dir: Path) -> int:
    running = [
        record for record in read_records(state_dir.resolve()) if record.is_alive()
    ]
    if not running:
        print(f"no stand-in is running in {state_dir}", file=sys.stderr)
        return 0
    stop_records(running)
    print(f"stopped {len(running)} stand-in processes in {state_dir}", file=sys.stderr)
    return 0


def _print_exports(settings: Mapping[str, str]) -> None:
    for name, value in settings.items():
        print(f"export {name}={shlex.quote(value)}")


if __name__ == "__main__":
    sys.exit(main())
