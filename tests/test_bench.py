"""The benchmark's harness on a tiny list, so that ``make bench`` cannot rot.

Each test seeds a few entries of its own on the shared stand-in, measures one run
of the app the way the benchmark does, and checks the figures it reads: requests
by kind, pulls, the report's counts. The stand-in runs without latency here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests

from bench.app_measure import AppRun, run_app
from bench.baseline import CLI_IDENTITY_TOKENS, run_modelled
from bench.guard import GuardProxy
from bench.lists import (
    GeneratedEntry,
    generate_entries,
    render,
    repositories_of,
    spread,
)
from bench.requests_count import classify
from bench.seeding import seed_sources, seed_targets
from bench.sync_bench import import_limit, no_change_limit
from standin.harness import EXAMPLE_IMAGE_LIST, Standin

ENTRIES = 7


@pytest.fixture
def entries() -> list[GeneratedEntry]:
    """Seven entries, one tag a repository, over all five registries."""
    return generate_entries(
        ENTRIES, tags_per_repository=1, prefix=f"b{uuid.uuid4().hex[:6]}-"
    )


@pytest.fixture
def seeded(clean_standin: Standin, entries: list[GeneratedEntry]) -> Iterator[Standin]:
    """The entries seeded on both sides and published; the example list after."""
    seed_sources(clean_standin, entries)
    seed_targets(clean_standin, entries)
    clean_standin.upload_image_list(render(entries))
    try:
        yield clean_standin
    finally:
        clean_standin.upload_image_list(EXAMPLE_IMAGE_LIST.read_text(encoding="utf-8"))


@pytest.fixture
def guard() -> Iterator[GuardProxy]:
    with GuardProxy() as running:
        yield running


def measure(standin: Standin, guard: GuardProxy, work_dir: Path) -> AppRun:
    return run_app(
        standin,
        mode="sync",
        settings={"ACRSYNC_READ_CONCURRENCY": "4", "ACRSYNC_MAX_CONCURRENCY": "4"},
        work_dir=work_dir,
        name="run",
        guard=guard,
    )


def test_a_generated_list_spreads_repositories_over_the_registries() -> None:
    entries = generate_entries(1000)

    assert len({entry.line for entry in entries}) == 1000
    assert repositories_of(entries) == 250
    assert {entry.host for entry in entries[:28]} == {
        "docker.io",
        "quay.io",
        "ghcr.io",
        "registry.k8s.io",
        "mcr.microsoft.com",
    }
    assert generate_entries(10)[:4] == entries[:4]
    assert spread(entries, 4) == [entries[0], entries[250], entries[500], entries[750]]


@pytest.mark.parametrize(
    ("entries", "concurrency", "latency_ms", "limit"),
    [
        (1000, 16, 50, (6 + 125) * 0.05),
        (1000, 64, 50, (6 + 32) * 0.05),
        (5, 16, 50, (6 + 1) * 0.05),
    ],
)
def test_the_no_change_limit_is_two_reads_an_entry_at_the_concurrency(
    entries: int, concurrency: int, latency_ms: int, limit: float
) -> None:
    assert no_change_limit(entries, concurrency, latency_ms) == pytest.approx(limit)


def test_the_import_limit_is_waves_of_acr_imports() -> None:
    assert import_limit(100, 10, 2000) == pytest.approx(20.0)
    assert import_limit(101, 10, 2000) == pytest.approx(22.0)


def test_a_no_change_run_counts_two_reads_an_entry_and_no_pull(
    seeded: Standin, guard: GuardProxy, tmp_path: Path
) -> None:
    run = measure(seeded, guard, tmp_path)

    kinds = run.requests.kinds
    assert run.status == "succeeded"
    assert run.counts["unchanged"] == ENTRIES
    assert run.entries == ENTRIES
    assert kinds["source HEAD"] == ENTRIES
    assert kinds["source GET"] == 0
    assert kinds["target reads"] == ENTRIES
    assert kinds["import calls"] == 0
    assert kinds["operation polls"] == 0
    # One token request a registry (five here) and one /v2/ challenge each at most;
    # the managed identity once for ARM and once for ACR; ACR's exchange and one
    # access token.
    assert 1 <= kinds["source token"] <= 5
    assert kinds["source other"] <= 5
    assert 1 <= kinds["identity token"] <= 2
    assert 1 <= kinds["ACR token"] <= 2
    assert kinds["storage"] > 0
    assert run.requests.total == sum(kinds.values())
    assert run.requests.dockerhub_pulls_by_app == 0
    assert run.requests.dockerhub_pulls_by_imports == 0
    assert run.max_rss_mib > 10
    assert run.wall_seconds > 0
    assert run.timeline["first_head"] <= run.timeline["last_head"]
    assert run.left_loopback == []


def test_a_changed_run_imports_the_moved_tag_and_acr_pulls_it(
    seeded: Standin,
    entries: list[GeneratedEntry],
    guard: GuardProxy,
    tmp_path: Path,
) -> None:
    moved = entries[0]  # on Docker Hub
    seeded.move_tag(moved.host, moved.repository, moved.tag)

    run = measure(seeded, guard, tmp_path)

    kinds = run.requests.kinds
    assert run.counts["updated"] == 1
    assert run.counts["unchanged"] == ENTRIES - 1
    assert kinds["import calls"] == 1
    assert kinds["operation polls"] >= 1
    assert kinds["source GET"] == 0
    # The verification after the import is one more read.
    assert kinds["target reads"] == ENTRIES + 1
    assert run.requests.dockerhub_pulls_by_app == 0
    assert run.requests.dockerhub_pulls_by_imports == 1


def test_the_modelled_cli_sends_what_the_cli_sends_for_each_import(
    seeded: Standin, entries: list[GeneratedEntry]
) -> None:
    found = run_modelled(seeded, entries[:2], reason="a test")

    kinds = found.requests.kinds
    assert found.failures == []
    assert found.sampled == 2
    assert kinds["identity token"] == 2 * CLI_IDENTITY_TOKENS
    assert kinds["ARM other"] == 2 * 3
    assert kinds["import calls"] == 2
    assert kinds["operation polls"] >= 2 * 2
    assert found.requests.dockerhub_pulls_by_imports == 1
    assert any("could not run" in note for note in found.notes)


def test_counts_of_an_empty_snapshot_are_zero() -> None:
    counts = classify({})

    assert counts.total == 0
    assert counts.per_entry(0) == 0.0


def test_an_imports_own_pulls_are_counted_apart_and_take_no_latency(
    seeded: Standin, entries: list[GeneratedEntry]
) -> None:
    seeded.control.configure(latency_ms=300)

    found = run_modelled(seeded, entries[:1], reason="a test")

    [record] = seeded.control.stats()["imports"]
    took = datetime.fromisoformat(record["finished"]) - datetime.fromisoformat(
        record["started"]
    )
    via_import = seeded.control.stats()["via_import"]["docker.io"]
    assert found.failures == []
    # Five pulls at 300 ms each would take 1.5 s; the import took its copy's time.
    assert took.total_seconds() < 1.0
    assert via_import["manifest_get"] == 1
    assert via_import["token"] == 1
    assert found.requests.kinds["source GET"] == 0


def test_a_new_connection_pays_for_its_handshakes_and_a_kept_one_does_not(
    clean_standin: Standin,
) -> None:
    clean_standin.control.configure(latency_ms=100)
    url = f"https://127.0.0.1:{clean_standin.ports.public['quay.io']}/v2/"

    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(clean_standin.ca_cert)
        timings = []
        for _ in range(2):
            started = time.perf_counter()
            session.get(url, timeout=10)
            timings.append(time.perf_counter() - started)

    # TCP's and TLS 1.3's handshakes, then the request: three round trips; then one.
    assert timings[0] >= 0.3
    assert timings[1] >= 0.1
    assert timings[0] > timings[1]
