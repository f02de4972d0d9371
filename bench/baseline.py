"""What teams do today, on the same stand-in: ``az acr import --force``, one entry
after another, for every entry of the list, changed or not.

A pipeline script of that kind runs, for each line of the list::

    az acr import --name REGISTRY --source HOST/REPOSITORY:TAG --image TARGET --force

The official Azure CLI runs here against the stand-in (``bench.azure_cli``). Each
entry costs the same whatever the list holds, so a sample of entries spread over
the list is timed and the whole list's time is the sample's mean times the list's
length; the output says so. Where the CLI cannot run, ``ModelledCli`` sends the
requests the CLI was seen to send per import (listed in ``CLI_REQUESTS``) and
waits as it waits; the CLI's own start-up is then missing from the figure, which
favours today's way, and the output says that too.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.azure_cli import AzureCli, AzureCliError
from bench.guard import GuardProxy
from bench.lists import GeneratedEntry
from bench.requests_count import RequestCounts, classify
from standin.harness import Standin

# What ``az acr import`` (Azure CLI 2.91) sent the stand-in for one import: four
# managed identity tokens (each client of the command asks anew), the generic
# resource list that finds the registry's resource group, the registry itself,
# the subscription's registry list (is the source an Azure registry?), the import,
# then polls at the operation's Retry-After until it ends, and one result GET. The
# command checks whether the poller is done every 0.5 s.
CLI_REQUESTS = (
    "identity token x4",
    "GET /subscriptions/{id}/resources?$filter=resourceType eq '...registries'",
    "GET .../registries/{name}",
    "GET /subscriptions/{id}/providers/Microsoft.ContainerRegistry/registries",
    "POST .../importImage",
    "GET .../operationStatuses/{id} until it ends",
    "GET .../operationResults/{id}",
)
CLI_IDENTITY_TOKENS = 4
CLI_DONE_CHECK_SECONDS = 0.5
REQUEST_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Baseline:
    """Today's way, timed on a sample of the list."""

    how: str
    sampled: int
    seconds: list[float]
    failures: list[str]
    requests: RequestCounts
    cpu_seconds: list[float] = field(default_factory=list)
    max_rss_mib: float = 0.0
    left_loopback: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.seconds) if self.seconds else 0.0

    def whole_list_seconds(self, entries: int) -> float:
        """The list's time: one entry after another, each like the sample's mean."""
        return self.mean * entries

    def to_json(self, entries: int) -> dict[str, Any]:
        return {
            "how": self.how,
            "sampled": self.sampled,
            "seconds": [round(value, 3) for value in self.seconds],
            "mean_seconds": round(self.mean, 3),
            "whole_list_seconds": round(self.whole_list_seconds(entries), 1),
            "failures": self.failures,
            "requests": dict(self.requests.kinds),
            "dockerhub_pulls_by_imports": self.requests.dockerhub_pulls_by_imports,
            "cpu_seconds": [round(value, 3) for value in self.cpu_seconds],
            "max_rss_mib": round(self.max_rss_mib, 1),
            "left_loopback": self.left_loopback,
            "notes": self.notes,
        }


def run_with_cli(
    standin: Standin,
    sample: Sequence[GeneratedEntry],
    *,
    az: Path,
    config_dir: Path,
    guard: GuardProxy,
    registry: str,
) -> Baseline:
    """Logs the CLI in to the stand-in, then imports the sample one by one."""
    cli = AzureCli(az, config_dir, standin, guard)
    cli.prepare()
    cli.log_in()
    attempts_before = len(guard.attempts)
    standin.control.reset_stats()

    seconds, cpu, rss, failures = [], [], 0.0, []
    for entry in sample:
        run = cli.run(
            cli.import_arguments(entry.source, entry.target, registry=registry)
        )
        seconds.append(run.wall_seconds)
        cpu.append(run.cpu_seconds)
        rss = max(rss, run.max_rss_mib)
        if run.returncode != 0:
            failures.append(f"{entry.source}: {run.stderr.strip()[-300:]}")

    return Baseline(
        how=f"Azure CLI {cli.version()}, run against the stand-in",
        sampled=len(sample),
        seconds=seconds,
        failures=failures,
        requests=classify(standin.control.stats()),
        cpu_seconds=cpu,
        max_rss_mib=rss,
        left_loopback=guard.attempts[attempts_before:],
    )


class ModelledCli:
    """The requests ``az acr import --force`` sends, sent the same way, for a
    machine where the CLI cannot run."""

    def __init__(self, standin: Standin) -> None:
        self._standin = standin
        settings = standin.app_settings()
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.verify = settings["REQUESTS_CA_BUNDLE"]
        self._identity = settings["IDENTITY_ENDPOINT"]
        self._identity_header = settings["IDENTITY_HEADER"]
        self._arm = settings["ACRSYNC_ARM_ENDPOINT"]
        self._subscription = settings["ACRSYNC_SUBSCRIPTION_ID"]
        self._group = settings["ACRSYNC_RESOURCE_GROUP"]
        self._registry = settings["ACRSYNC_REGISTRY_NAME"]

    def import_image(self, entry: GeneratedEntry) -> None:
        token = ""
        for _ in range(CLI_IDENTITY_TOKENS):
            token = self._entra_token()
        headers = {"Authorization": f"Bearer {token}"}
        subscription = f"{self._arm}/subscriptions/{self._subscription}"
        registry = (
            f"{subscription}/resourceGroups/{self._group}/providers/"
            f"Microsoft.ContainerRegistry/registries/{self._registry}"
        )
        version = {"api-version": "2025-11-01"}
        self._get(
            f"{subscription}/resources",
            headers,
            {
                "$filter": "resourceType eq 'Microsoft.ContainerRegistry/registries'",
                "api-version": "2024-11-01",
            },
        )
        self._get(registry, headers, version)
        self._get(
            f"{subscription}/providers/Microsoft.ContainerRegistry/registries",
            headers,
            version,
        )
        body = {
            "source": {
                "registryUri": entry.host,
                "sourceImage": f"{entry.repository}:{entry.tag}",
            },
            "targetTags": [entry.target],
            "mode": "Force",
        }
        started = time.monotonic()
        answer = self._session.post(
            f"{registry}/importImage",
            params=version,
            json=body,
            headers=headers,
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
        answer.raise_for_status()
        self._wait(answer, headers, started)

    def _wait(
        self, answer: requests.Response, headers: dict[str, str], started: float
    ) -> None:
        status_url = answer.headers["Azure-AsyncOperation"]
        delay = _retry_after(answer)
        while True:
            time.sleep(delay)
            polled = self._session.get(
                status_url, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS
            )
            polled.raise_for_status()
            if polled.json().get("status") in {"Succeeded", "Failed", "Canceled"}:
                break
            delay = _retry_after(polled)
        self._session.get(
            answer.headers["Location"], headers=headers, timeout=REQUEST_TIMEOUT_SECONDS
        )
        # The command sees the end at its next check of the poller.
        elapsed = time.monotonic() - started
        checks = -(-elapsed // CLI_DONE_CHECK_SECONDS)
        time.sleep(max(0.0, checks * CLI_DONE_CHECK_SECONDS - elapsed))

    def _entra_token(self) -> str:
        answer = self._session.get(
            self._identity,
            params={
                "api-version": "2019-08-01",
                "resource": "https://management.core.windows.net/",
            },
            headers={"X-IDENTITY-HEADER": self._identity_header},
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def _get(self, url: str, headers: dict[str, str], params: dict[str, str]) -> None:
        self._session.get(
            url, headers=headers, params=params, timeout=REQUEST_TIMEOUT_SECONDS
        ).raise_for_status()

    def close(self) -> None:
        self._session.close()


def run_modelled(
    standin: Standin, sample: Sequence[GeneratedEntry], reason: str
) -> Baseline:
    """Sends the CLI's requests for each entry of the sample, one after another."""
    model = ModelledCli(standin)
    standin.control.reset_stats()
    seconds, failures = [], []
    try:
        for entry in sample:
            started = time.perf_counter()
            try:
                model.import_image(entry)
            except requests.RequestException as error:
                failures.append(f"{entry.source}: {error}")
            seconds.append(time.perf_counter() - started)
    finally:
        model.close()
    return Baseline(
        how="a model of the Azure CLI's requests (the CLI itself could not run)",
        sampled=len(sample),
        seconds=seconds,
        failures=failures,
        requests=classify(standin.control.stats()),
        notes=[
            f"the Azure CLI could not run: {reason}",
            "the model sends " + "; ".join(CLI_REQUESTS),
            "the CLI's own start-up, about half a second a command, is not in "
            "these times, which favours today's way",
        ],
    )


def _retry_after(answer: requests.Response) -> float:
    milliseconds = answer.headers.get("retry-after-ms")
    if milliseconds is not None:
        return int(milliseconds) / 1000
    seconds = answer.headers.get("Retry-After")
    return float(seconds) if seconds is not None else 30.0


def measure(
    standin: Standin,
    sample: Sequence[GeneratedEntry],
    *,
    az: Path | None,
    config_dir: Path,
    guard: GuardProxy,
    registry: str,
) -> Baseline:
    """The CLI when it runs here, else the model, saying why."""
    if az is None or not az.exists():
        return run_modelled(
            standin, sample, f"no Azure CLI at {az} (make az-cli installs it)"
        )
    try:
        return run_with_cli(
            standin,
            sample,
            az=az,
            config_dir=config_dir,
            guard=guard,
            registry=registry,
        )
    except AzureCliError as error:
        return run_modelled(standin, sample, str(error))
