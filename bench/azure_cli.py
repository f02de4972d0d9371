"""The official Azure CLI, pointed at the stand-in and at nothing else.

What a team's pipeline does today, one ``az acr import --force`` after another,
needs the CLI logged in to a cloud. Here that cloud is the stand-in:

- ``AZURE_CONFIG_DIR`` (and ``HOME``) is a temporary folder, so no profile, token
  cache or log lands anywhere else;
- before the first command, its ``config`` turns telemetry, the survey prompt,
  colour, dynamic extension installs and auto-upgrade off, and ``versionCheck.json``
  records the installed versions as checked today, so no command looks for a
  newer CLI;
- ``az cloud register --endpoint-resource-manager https://127.0.0.1:PORT/`` reads
  the stand-in's ``/metadata/endpoints``; ``az login --identity`` asks the stand-in's
  managed identity endpoint (``IDENTITY_ENDPOINT``, ``IDENTITY_HEADER``); the
  stand-in's CA is trusted through ``REQUESTS_CA_BUNDLE``;
- every proxy variable points at a ``GuardProxy``, with loopback exempt, so any
  request meant for another host is refused and listed.

The CLI lives in a virtual environment of its own (``make az-cli`` makes
``.venv-az``); ``default_az()`` finds it.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bench.children import Finished, run_measured
from bench.guard import GuardProxy
from standin.harness import Standin
from standin.processes import PROJECT_ROOT

AZ_VENV = PROJECT_ROOT / ".venv-az"
CLOUD_NAME = "AzureStandin"
COMMAND_TIMEOUT_SECONDS = 600.0
_CONFIG = """\
[core]
collect_telemetry = false
survey_message = false
no_color = true
[extension]
use_dynamic_install = no
[auto-upgrade]
enable = no
"""
_VERSIONED_PACKAGES = {
    "azure-cli": "azure-cli",
    "core": "azure-cli-core",
    "telemetry": "azure-cli-telemetry",
}


class AzureCliError(Exception):
    """The Azure CLI failed a command; the message has its output's tail."""


def default_az() -> Path:
    """Where ``make az-cli`` installs the CLI."""
    return AZ_VENV / "bin" / "az"


class AzureCli:
    """Runs ``az`` with its configuration in ``config_dir``, against the stand-in."""

    def __init__(
        self, az: Path, config_dir: Path, standin: Standin, guard: GuardProxy
    ) -> None:
        self.az = az
        self.config_dir = config_dir
        self.standin = standin
        self.guard = guard
        self._runs = 0

    def environment(self) -> dict[str, str]:
        settings = self.standin.app_settings()
        folder = str(self.config_dir)
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": folder,
            "AZURE_CONFIG_DIR": folder,
            "AZURE_CORE_COLLECT_TELEMETRY": "false",
            "AZURE_CORE_SURVEY_MESSAGE": "false",
            "AZURE_CORE_NO_COLOR": "true",
            "AZURE_EXTENSION_USE_DYNAMIC_INSTALL": "no",
            "REQUESTS_CA_BUNDLE": settings["REQUESTS_CA_BUNDLE"],
            "IDENTITY_ENDPOINT": settings["IDENTITY_ENDPOINT"],
            "IDENTITY_HEADER": settings["IDENTITY_HEADER"],
            **self.guard.environment(),
        }

    def prepare(self) -> None:
        """Writes the configuration that keeps the CLI at home, before any command."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "config").write_text(_CONFIG, encoding="utf-8")
        checked = {
            "versions": {
                name: {"local": version}
                for name, version in self._installed_versions().items()
            },
            # The CLI writes and reads local time in this format.
            "update_time": str(datetime.datetime.now()),
        }
        (self.config_dir / "versionCheck.json").write_text(
            json.dumps(checked), encoding="utf-8"
        )

    def log_in(self) -> None:
        """Registers the stand-in as a cloud, selects it and logs in with the
        managed identity."""
        arm = f"https://127.0.0.1:{self.standin.ports.arm}/"
        self.check(
            "cloud", "register", "--name", CLOUD_NAME,
            "--endpoint-resource-manager", arm,
        )  # fmt: skip
        self.check("cloud", "set", "--name", CLOUD_NAME)
        self.check("login", "--identity", "--output", "none")

    def import_arguments(self, source: str, target: str, *, registry: str) -> list[str]:
        """``az acr import --force`` as a pipeline script runs it: no resource group
        given, so the CLI looks the registry up."""
        return [
            "acr", "import", "--name", registry, "--source", source,
            "--image", target, "--force", "--output", "none",
        ]  # fmt: skip

    def import_image(self, source: str, target: str, *, registry: str) -> Finished:
        """Imports one image; AzureCliError when the CLI fails."""
        return self.check(*self.import_arguments(source, target, registry=registry))

    def version(self) -> str:
        return self._installed_versions()["azure-cli"]

    def check(self, *arguments: str) -> Finished:
        """Runs a command; AzureCliError when it fails."""
        run = self.run(arguments)
        if run.returncode != 0:
            raise AzureCliError(
                f"az {' '.join(arguments)} must succeed against the stand-in, exited "
                f"{run.returncode}: {run.stderr.strip()[-1500:]}"
            )
        return run

    def run(self, arguments: Sequence[str]) -> Finished:
        """Runs ``az`` with ``arguments``, measured as any child is."""
        self._runs += 1
        return run_measured(
            [str(self.az), *arguments],
            env=self.environment(),
            output_dir=self.config_dir / "runs",
            name=f"az-{self._runs:05d}",
            timeout_seconds=COMMAND_TIMEOUT_SECONDS,
        )

    def _installed_versions(self) -> dict[str, str]:
        """The CLI's package versions, as its own interpreter reads them."""
        python = self.az.parent / "python"
        script = (
            "import importlib.metadata, json, sys\n"
            "names = json.loads(sys.argv[1])\n"
            "print(json.dumps({k: importlib.metadata.version(v) "
            "for k, v in names.items()}))\n"
        )
        answer = subprocess.run(
            [str(python), "-c", script, json.dumps(_VERSIONED_PACKAGES)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        versions: dict[str, str] = json.loads(answer.stdout)
        return versions
