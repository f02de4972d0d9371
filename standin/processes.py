"""The stand-in's processes: start each, wait until it answers, stop exactly those.

Every process binds 127.0.0.1 on a port the kernel picks (port 0) and reports it:
Azurite and docker-registry in their logs, the Azure stand-in in ``ports.json``.
Nothing races for a free port that way.

Each started process is recorded in ``<state_dir>/pids.json`` with its command line
and its start time in clock ticks; together with the pid they name one process for
good, so a stop never signals a process that merely reuses a recorded pid.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import requests

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PIDS_FILE = "pids.json"
PORTS_FILE = "ports.json"
LOG_DIR = "logs"
LOOPBACK = "127.0.0.1"

START_TIMEOUT_SECONDS = 30.0
STOP_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.05
LOG_TAIL_LINES = 25

_AZURITE_LISTENING = re.compile(r"successfully listens on http://127\.0\.0\.1:(\d+)")
_REGISTRY_LISTENING = re.compile(r'msg="listening on 127\.0\.0\.1:(\d+)"')

AzuriteService = Literal["blob", "queue"]


class ProcessError(Exception):
    """A stand-in process did not start or did not stop."""


class StartError(ProcessError):
    """A process did not come up; the message carries the tail of its log."""


class StopError(ProcessError):
    """A process outlived SIGKILL."""


class MissingToolError(StartError):
    """A program the stand-in runs is not installed."""

    def __init__(self, tool: str, hint: str) -> None:
        super().__init__(
            f"the stand-in needs {tool}, which is not installed: {hint}; "
            f"run `make test` (or `make setup`), which installs it"
        )
        self.tool = tool


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """One started process, identified for good by pid, start time and argv."""

    name: str
    pid: int
    start_ticks: int
    argv: tuple[str, ...]
    log: Path

    def is_alive(self) -> bool:
        """True while this very process runs; a zombie or a reused pid is not it."""
        status = _read_stat(self.pid)
        if status is None:
            return False
        state, start_ticks = status
        return (
            state != "Z"
            and start_ticks == self.start_ticks
            and _read_cmdline(self.pid) == self.argv
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "argv": list(self.argv),
            "log": str(self.log),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            start_ticks=int(data["start_ticks"]),
            argv=tuple(str(part) for part in data["argv"]),
            log=Path(data["log"]),
        )


def read_records(state_dir: Path) -> list[ProcessRecord]:
    """The processes recorded in a state directory; empty when there are none."""
    path = state_dir / PIDS_FILE
    if not path.exists():
        return []
    entries = json.loads(path.read_text(encoding="utf-8"))
    return [ProcessRecord.from_json(entry) for entry in entries]


def stop_records(
    records: Sequence[ProcessRecord],
    *,
    grace_seconds: float = STOP_GRACE_SECONDS,
    reap: Callable[[], None] = lambda: None,
) -> None:
    """SIGTERM each recorded process still running, SIGKILL what outlives the grace.

    ``reap`` collects exit statuses of our own children, which would otherwise
    linger as zombies; it is called on every round of waiting.
    """
    alive = [record for record in records if record.is_alive()]
    for record in reversed(alive):
        logger.debug("stopping process %s pid=%s", record.name, record.pid)
        _signal(record, signal.SIGTERM)

    alive = _wait_until_gone(alive, grace_seconds, reap)

    for record in alive:
        logger.warning("killing process %s pid=%s", record.name, record.pid)
        _signal(record, signal.SIGKILL)
    alive = _wait_until_gone(alive, grace_seconds, reap)

    if alive:
        names = ", ".join(f"{record.name} (pid {record.pid})" for record in alive)
        raise StopError(f"processes outlived SIGKILL: {names}")


class Processes:
    """Starts the stand-in's processes and records them in ``pids.json``.

    Each runs in a session of its own, so a Ctrl-C meant for the caller does not
    reach it; the caller stops it, or ``python -m standin stop`` does later.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._records: list[ProcessRecord] = []
        (state_dir / LOG_DIR).mkdir(parents=True, exist_ok=True)

    @property
    def records(self) -> list[ProcessRecord]:
        return list(self._records)

    def start_azurite(self, *services: AzuriteService) -> dict[str, int]:
        """Starts Azurite services in memory, side by side; returns each one's port."""
        node = _require_tool("node", "Node.js runs Azurite")
        records: dict[str, ProcessRecord] = {}
        for service in services:
            program = PROJECT_ROOT / "node_modules" / ".bin" / f"azurite-{service}"
            if not program.exists():
                raise MissingToolError(f"azurite-{service}", "npm package azurite")
            # --location together with --inMemoryPersistence makes Azurite exit, so
            # the working directory keeps whatever it writes in the state directory.
            argv = [
                node,
                str(program),
                f"--{service}Host",
                LOOPBACK,
                f"--{service}Port",
                "0",
                "--inMemoryPersistence",
                "--extentMemoryLimit",
                "256",
                "--disableTelemetry",
                "--skipApiVersionCheck",
            ]
            records[service] = self._launch(
                f"azurite-{service}", argv, cwd=self.state_dir
            )

        return {
            service: int(self._wait_for_log(record, _AZURITE_LISTENING).group(1))
            for service, record in records.items()
        }

    def start_registry(self, name: str) -> str:
        """Starts a docker-registry without auth on loopback; returns its base URL."""
        program = _require_tool("docker-registry", "Debian package docker-registry")
        config_path = _write_registry_config(self.state_dir / name)
        record = self._launch(name, [program, "serve", str(config_path)])
        match = self._wait_for_log(record, _REGISTRY_LISTENING)
        url = f"http://{LOOPBACK}:{match.group(1)}"
        self._wait_until(record, lambda: _answers(f"{url}/v2/", verify=False))
        return url

    def start_server(self, config_path: Path, ca_bundle: Path) -> dict[str, Any]:
        """Starts the Azure stand-in; returns its ``ports.json`` once it answers."""
        ports_path = self.state_dir / PORTS_FILE
        ports_path.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "standin.server", str(config_path)]
        record = self._launch("server", argv, cwd=PROJECT_ROOT)

        ports: dict[str, Any] = {}

        def ports_written() -> bool:
            ports.update(_read_ports(ports_path, record.pid))
            return bool(ports)

        self._wait_until(record, ports_written)
        probe = f"https://{LOOPBACK}:{ports['arm']}/_standin/stats"
        self._wait_until(record, lambda: _answers(probe, verify=ca_bundle))
        return ports

    def stop(self, *, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Stops every process this object started, newest first."""
        stop_records(self._records, grace_seconds=grace_seconds, reap=self._reap)
        self._reap()

    def _launch(
        self, name: str, argv: Sequence[str], *, cwd: Path | None = None
    ) -> ProcessRecord:
        log_path = self.state_dir / LOG_DIR / f"{name}.log"
        with log_path.open("wb") as log:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=_child_environment(),
                start_new_session=True,
            )
        self._children[child.pid] = child

        status = _read_stat(child.pid)
        record = ProcessRecord(
            name=name,
            pid=child.pid,
            start_ticks=status[1] if status else 0,
            argv=tuple(argv),
            log=log_path,
        )
        self._records.append(record)
        self._write_records()
        logger.debug("started process %s pid=%s", name, child.pid)
        return record

    def _write_records(self) -> None:
        path = self.state_dir / PIDS_FILE
        entries = [record.to_json() for record in self._records]
        path.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")

    def _wait_for_log(
        self, record: ProcessRecord, pattern: re.Pattern[str]
    ) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def logged() -> bool:
            match = pattern.search(
                record.log.read_text(encoding="utf-8", errors="replace")
            )
            if match:
                found.append(match)
            return match is not None

        self._wait_until(record, logged)
        return found[0]

    def _wait_until(
        self,
        record: ProcessRecord,
        ready: Callable[[], bool],
        timeout: float = START_TIMEOUT_SECONDS,
    ) -> None:
        child = self._children[record.pid]
        deadline = time.monotonic() + timeout
        while not ready():
            if child.poll() is not None:
                raise StartError(
                    f"{record.name} exited with status {child.returncode} before it "
                    f"answered; last lines of {record.log}:\n{_tail(record.log)}"
                )
            if time.monotonic() > deadline:
                raise StartError(
                    f"{record.name} (pid {record.pid}) did not answer within "
                    f"{timeout:.0f} s; last lines of {record.log}:\n{_tail(record.log)}"
                )
            time.sleep(POLL_SECONDS)

    def _reap(self) -> None:
        for child in self._children.values():
            child.poll()


def _write_registry_config(directory: Path) -> Path:
    # The registry is started fresh: data of an earlier run would only mislead.
    data = directory / "data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    config = {
        "version": "0.1",
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(data)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"{LOOPBACK}:0", "secret": secrets.token_hex(16)},
    }
    # JSON is YAML, which is what docker-registry reads.
    path = directory / "config.yml"
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


def _read_ports(path: Path, pid: int) -> dict[str, Any]:
    """ports.json once the server has written all of it; empty before that."""
    try:
        ports = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if not isinstance(ports, dict) or ports.get("pid") != pid:
        return {}
    return ports


def _answers(url: str, *, verify: bool | Path) -> bool:
    with requests.Session() as session:
        # Proxies from the environment must never see loopback traffic.
        session.trust_env = False
        try:
            response = session.get(
                url,
                verify=str(verify) if isinstance(verify, Path) else verify,
                timeout=2,
            )
        except requests.RequestException:
            return False
    return response.status_code == 200


def _require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(name, hint)
    return path


def _child_environment() -> dict[str, str]:
    environment = dict(os.environ)
    loopback = f"{LOOPBACK},localhost"
    for name in ("NO_PROXY", "no_proxy"):
        existing = environment.get(name)
        environment[name] = f"{existing},{loopback}" if existing else loopback
    python_path = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = (
        f"{PROJECT_ROOT}{os.pathsep}{python_path}" if python_path else str(PROJECT_ROOT)
    )
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


def _read_stat(pid: int) -> tuple[str, int] | None:
    """State and start time (field 22 of proc_pid_stat(5)) of a process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in field 2 may hold spaces and parentheses; skip past it.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _read_cmdline(pid: int) -> tuple[str, ...]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return ()
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0")[:-1])


def _signal(record: ProcessRecord, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signum)


def _wait_until_gone(
    records: list[ProcessRecord], timeout: float, reap: Callable[[], None]
) -> list[ProcessRecord]:
    deadline = time.monotonic() + timeout
    while True:
        reap()
        records = [record for record in records if record.is_alive()]
        if not records or time.monotonic() > deadline:
            return records
        time.sleep(POLL_SECONDS)


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty log)"
