"""The app's speed against the stand-in, beside what teams do today: ``make bench``.

    python -m bench [--entries 1000] [--changed 100] [--latency-ms 50] ...

What it does, in order, seeding and setting up kept out of every measured time:

1. starts a stand-in in a temporary folder, generates a list of ``--entries``
   entries (four tags a repository, over the five public registries), pushes every
   source image, and puts the same images in the ACR: the state a finished sync
   leaves;
2. sets the stand-in's latency (every request), import duration, ACR's concurrent
   imports, poll interval and token lifetime;
3. no-change run: a sync that finds every entry unchanged; then the same with other
   read concurrencies (``--sweep``), to show where the machine's cores, not the
   waiting, set the pace;
4. changed run: ``--changed`` tags, spread over the list, move upstream; a sync
   updates exactly those;
5. today's way: ``az acr import --force`` for a sample of the entries, one after
   another, with the official Azure CLI against the same stand-in; the whole list's
   time is the sample's mean times the list's length;
6. peak memory: a no-change sync of ``--memory-entries`` entries at a smaller
   latency;
7. cold start: importing ``function_app`` beside importing ``azure.functions``.

The limits the targets refer to:

- no-change: ``(6 + ceil(2 N / C)) * L``: every entry needs two reads (the source
  tag's digest, the target tag's), at most C requests are in flight (the read
  concurrency), each takes one round trip L; before the first target read come
  six round trips in a row that nothing can overlap: a managed identity token on
  a new http connection (TCP's handshake, the request), ACR's token exchange on a
  new https connection (TCP's and TLS 1.3's handshakes, the request), an ACR
  access token. Everything else (source tokens, the other connections) could go
  on meanwhile, so the limit charges nothing for it;
- changed: ``ceil(K / A) * D``: K imports, A at once in ACR, D each.

Prints the figures as it goes and a table at the end; writes them all as JSON to
``--output`` (``bench-results/`` by default). ``--check`` exits 1 when a target
is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import baseline, coldstart, machine
from bench.app_measure import AppRun, run_app
from bench.azure_cli import default_az
from bench.guard import GuardProxy
from bench.lists import (
    GeneratedEntry,
    generate_entries,
    render,
    repositories_of,
    spread,
)
from bench.requests_count import KINDS
from bench.seeding import seed_sources, seed_targets
from standin.harness import Standin
from standin.processes import PROJECT_ROOT

# Round trips before the first target read: see the module's docstring.
READ_CHAIN = 6
TARGET_REQUESTS_PER_ENTRY = 2.2
TARGET_WALL_RATIO = 1.25
TARGET_MEMORY_MIB = 150.0
TARGET_COLD_START_RATIO = 1.5


@dataclass(frozen=True, slots=True)
class Options:
    """What to measure and under which conditions."""

    entries: int
    changed: int
    latency_ms: int
    import_ms: int
    acr_imports: int
    poll_ms: int
    token_ttl_seconds: int
    read_concurrency: int
    import_concurrency: int
    sweep: tuple[int, ...]
    baseline_sample: int
    memory_entries: int
    memory_latency_ms: int
    cold_start_runs: int
    tags_per_repository: int
    az: Path | None
    output: Path
    check: bool


@dataclass(slots=True)
class Target:
    """One target of the issue, measured."""

    name: str
    measured: str
    goal: str
    met: bool
    why: str = ""


@dataclass(slots=True)
class Results:
    """Everything measured, for the table and the JSON file."""

    options: Options
    machine: dict[str, str]
    seeding_seconds: float = 0.0
    runs: dict[str, AppRun] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)
    baseline: baseline.Baseline | None = None
    cold_start: coldstart.ColdStart | None = None
    targets: list[Target] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Bench:
    """What every measurement works with."""

    standin: Standin
    options: Options
    results: Results
    work: Path
    guard: GuardProxy

    def sync(self, name: str, read_concurrency: int) -> AppRun:
        """One measured sync of the published list."""
        return run_app(
            self.standin,
            mode="sync",
            settings=run_settings(self.options, read_concurrency),
            work_dir=self.work,
            name=name,
            guard=self.guard,
        )


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _progress(text: str) -> None:
    sys.stderr.write(f"[bench] {text}\n")
    sys.stderr.flush()


def no_change_limit(entries: int, concurrency: int, latency_ms: int) -> float:
    """Seconds a no-change run cannot beat (see the module's docstring)."""
    return (READ_CHAIN + math.ceil(2 * entries / concurrency)) * latency_ms / 1000


def import_limit(changed: int, acr_imports: int, import_ms: int) -> float:
    """Seconds the imports of a changed run cannot beat."""
    return math.ceil(changed / acr_imports) * import_ms / 1000


def run_settings(options: Options, read_concurrency: int) -> dict[str, str]:
    return {
        "ACRSYNC_READ_CONCURRENCY": str(read_concurrency),
        "ACRSYNC_MAX_CONCURRENCY": str(options.import_concurrency),
    }


def describe_run(title: str, run: AppRun, limit: float | None) -> None:
    _say(f"{title}")
    settings = ", ".join(f"{name}={value}" for name, value in run.settings.items())
    _say(f"  settings: {settings}")
    counts = ", ".join(
        f"{count} {action}" for action, count in run.counts.items() if count
    )
    _say(f"  report: {run.status}: {counts}")
    line = f"  wall time {run.wall_seconds:.2f} s"
    if limit:
        line += f"; limit {limit:.2f} s; ratio {run.wall_seconds / limit:.2f}"
    _say(line)
    per = run.requests.per_entry(run.entries)
    _say(f"  requests: {run.requests.total} in all, {per:.3f} an entry")
    for kind, _ in KINDS:
        count = run.requests.kinds.get(kind, 0)
        if count:
            _say(f"    {kind:<16} {count:>7}  {count / run.entries:8.3f} an entry")
    counted = run.requests
    _say(
        f"  manifest GETs Docker Hub counts as pulls: {counted.dockerhub_pulls_by_app}"
        f" by the app, {counted.dockerhub_pulls_by_imports} by ACR's imports; "
        f"public manifest GETs by the app, all registries: "
        f"{counted.public_manifest_gets_by_app}"
    )
    standin = ", ".join(
        f"{name} {seconds:.1f} s"
        for name, seconds in sorted(run.standin_cpu_seconds.items())
        if seconds >= 0.05
    )
    moments = run.timeline
    if "first_head" in moments:
        line = (
            f"  timeline: reads (HEAD) from {moments['first_head']:.2f} s to "
            f"{moments['last_head']:.2f} s"
        )
        if "first_import" in moments:
            line += (
                f"; imports started from {moments['first_import']:.2f} s to "
                f"{moments['last_import']:.2f} s"
            )
        _say(line + f"; the run ended at {run.wall_seconds:.2f} s")
    _say(
        f"  CPU: the app {run.cpu_seconds:.1f} s; the stand-in: {standin}; "
        f"peak memory of the app's process {run.max_rss_mib:.0f} MiB"
    )
    if run.left_loopback:
        _say(f"  the app tried to leave loopback: {run.left_loopback}")


def prepare(
    standin: Standin, entries: list[GeneratedEntry], new: list[GeneratedEntry]
) -> float:
    """Seeds the sources and targets of the ``new`` entries and publishes the list
    of all ``entries``; returns the seconds it took. Entries seeded before keep
    their targets, which a sync may have updated since."""
    started = time.perf_counter()
    seed_sources(standin, new)
    seed_targets(standin, new)
    standin.upload_image_list(render(entries))
    return time.perf_counter() - started


def configure(standin: Standin, options: Options, latency_ms: int) -> None:
    standin.control.configure(
        latency_ms=latency_ms,
        import_duration_ms=options.import_ms,
        max_concurrent_imports=options.acr_imports,
        poll_after_ms=options.poll_ms,
        token_ttl_seconds=options.token_ttl_seconds,
    )


def run_benchmark(options: Options) -> Results:
    results = Results(options=options, machine=machine.describe())
    options.output.mkdir(parents=True, exist_ok=True)
    _say(f"machine: {machine.one_line(results.machine)}")
    _say(f"load average at start: {results.machine['load']}")
    _say(
        f"stand-in: {options.latency_ms} ms a request, {options.import_ms} ms an "
        f"import, {options.acr_imports} imports at once in ACR, polls every "
        f"{options.poll_ms} ms, tokens live {options.token_ttl_seconds} s"
    )
    all_entries = generate_entries(
        max(options.entries, options.memory_entries),
        tags_per_repository=options.tags_per_repository,
    )
    entries = all_entries[: options.entries]

    with (
        tempfile.TemporaryDirectory(prefix="acrsync-bench-") as folder,
        GuardProxy() as guard,
    ):
        work = Path(folder)
        _progress("starting the stand-in")
        empty = work / "empty.txt"
        empty.write_text("", encoding="utf-8")
        with Standin.start(work / "standin", image_list=empty) as standin:
            _progress(f"seeding {len(entries)} sources and targets")
            results.seeding_seconds = prepare(standin, entries, entries)
            _say(
                f"list: {len(entries)} entries over {repositories_of(entries)} "
                f"repositories in 5 registries; seeded in "
                f"{results.seeding_seconds:.1f} s (not measured)"
            )
            _say()
            configure(standin, options, options.latency_ms)
            bench = _Bench(standin, options, results, work, guard)
            _measure_no_change(bench)
            _measure_changed(bench, entries)
            _measure_baseline(bench, entries)
            _measure_memory(bench, all_entries)
        _measure_cold_start(options, results)
    results.targets = judge(results)
    _print_table(results)
    _write_json(results)
    return results


def _measure_no_change(bench: _Bench) -> None:
    options, results = bench.options, bench.results
    for concurrency in (options.read_concurrency, *options.sweep):
        _progress(f"no-change run, read concurrency {concurrency}")
        run = bench.sync(f"no-change-{concurrency}", concurrency)
        key = "no-change"
        if concurrency != options.read_concurrency:
            key = f"no-change-{concurrency}"
        limit = no_change_limit(run.entries, concurrency, options.latency_ms)
        results.runs[key], results.limits[key] = run, limit
        describe_run(
            f"no-change run, {run.entries} entries, read concurrency {concurrency}"
            f" (limit ({READ_CHAIN} + ceil(2 x {run.entries} / {concurrency})) x "
            f"{options.latency_ms} ms)",
            run,
            limit,
        )
        _say()


def _measure_changed(bench: _Bench, entries: list[GeneratedEntry]) -> None:
    standin, options, results = bench.standin, bench.options, bench.results
    moved = spread(entries, options.changed)
    _progress(f"moving {len(moved)} tags upstream")
    for entry in moved:
        standin.move_tag(entry.host, entry.repository, entry.tag)
    _progress("changed run")
    run = bench.sync("changed", options.read_concurrency)
    limit = import_limit(len(moved), options.acr_imports, options.import_ms)
    results.runs["changed"], results.limits["changed"] = run, limit
    describe_run(
        f"changed run, {len(moved)} of {run.entries} entries moved upstream (limit "
        f"ceil({len(moved)} / {options.acr_imports}) x {options.import_ms} ms)",
        run,
        limit,
    )
    _say()


def _measure_baseline(bench: _Bench, entries: list[GeneratedEntry]) -> None:
    standin, options, results = bench.standin, bench.options, bench.results
    if options.baseline_sample <= 0:
        return
    sample = spread(entries, min(options.baseline_sample, len(entries)))
    _progress(f"today's way: az acr import --force for {len(sample)} entries")
    found = baseline.measure(
        standin,
        sample,
        az=options.az,
        config_dir=bench.work / "azure-cli",
        guard=bench.guard,
        registry=standin.config["registry_name"],
    )
    results.baseline = found
    whole = found.whole_list_seconds(len(entries))
    _say("today's way: az acr import --force, one entry after another")
    _say(f"  how: {found.how}")
    for note in found.notes:
        _say(f"  note: {note}")
    _say(
        f"  {found.sampled} entries spread over the list, one after another: "
        f"mean {found.mean:.2f} s an entry (min {min(found.seconds):.2f}, "
        f"max {max(found.seconds):.2f})"
    )
    _say(
        f"  the whole list of {len(entries)}: {whole:.0f} s "
        f"({whole / 60:.1f} min), the sample's mean times {len(entries)}; every "
        "entry is imported again, changed or not"
    )
    per = found.requests.total / max(found.sampled, 1)
    _say(f"  requests: {per:.1f} an entry, not counting ACR's pulls")
    for kind, _ in KINDS:
        count = found.requests.kinds.get(kind, 0)
        if count:
            _say(f"    {kind:<16} {count / found.sampled:8.2f} an entry")
    dockerhub = sum(1 for entry in sample if entry.host == "docker.io")
    _say(
        f"  Docker Hub pulls: {found.requests.dockerhub_pulls_by_imports} for the "
        f"{dockerhub} Docker Hub entries of the sample, one a Docker Hub entry, "
        "every night"
    )
    if found.cpu_seconds:
        _say(
            f"  CPU {sum(found.cpu_seconds) / len(found.cpu_seconds):.2f} s an "
            f"az command; peak memory {found.max_rss_mib:.0f} MiB"
        )
    if found.failures:
        _say(f"  failures: {len(found.failures)}: {found.failures[:3]}")
    if found.left_loopback:
        _say(f"  the CLI tried to leave loopback: {found.left_loopback}")
    else:
        _say("  the CLI reached nothing beyond loopback (guard proxy saw nothing)")
    for key in ("no-change", "changed"):
        run = results.runs.get(key)
        if run is not None and whole > 0:
            _say(
                f"  ours / theirs, {key} run: {run.wall_seconds:.1f} s / {whole:.0f} s"
                f" = {run.wall_seconds / whole:.4f} ({whole / run.wall_seconds:.0f} "
                "times as fast)"
            )
    _say()


def _measure_memory(bench: _Bench, all_entries: list[GeneratedEntry]) -> None:
    standin, options, results = bench.standin, bench.options, bench.results
    if options.memory_entries <= 0:
        return
    entries = all_entries[: options.memory_entries]
    _progress(f"seeding {len(entries)} entries for the memory run")
    seconds = prepare(standin, entries, entries[options.entries :])
    configure(standin, options, options.memory_latency_ms)
    _progress("memory run")
    run = bench.sync("memory", options.read_concurrency)
    results.runs["memory"] = run
    describe_run(
        f"memory run: a no-change sync of {run.entries} entries at "
        f"{options.memory_latency_ms} ms a request (seeded in {seconds:.1f} s)",
        run,
        None,
    )
    _say()


def _measure_cold_start(options: Options, results: Results) -> None:
    if options.cold_start_runs <= 0:
        return
    _progress("cold start")
    results.cold_start = coldstart.measure_cold_start(options.cold_start_runs)
    _say("cold start: the import the Functions worker does before anything runs")
    for line in coldstart.describe(results.cold_start):
        _say(line)
    _say()


def judge(results: Results) -> list[Target]:
    """Each target of the issue against what was measured."""
    targets = []
    run = results.runs.get("no-change")
    if run is not None:
        gets = run.requests.public_manifest_gets_by_app
        targets.append(
            Target(
                f"no-change {run.entries}: manifest GETs on the public side",
                str(gets),
                "0",
                gets == 0,
            )
        )
        per = run.requests.per_entry(run.entries)
        targets.append(
            Target(
                f"no-change {run.entries}: requests an entry, in all",
                f"{per:.3f}",
                f"<= {TARGET_REQUESTS_PER_ENTRY}",
                per <= TARGET_REQUESTS_PER_ENTRY,
            )
        )
        limit = results.limits["no-change"]
        ratio = run.wall_seconds / limit
        targets.append(
            Target(
                f"no-change {run.entries}: wall time / latency-and-concurrency limit",
                f"{run.wall_seconds:.2f} s / {limit:.2f} s = {ratio:.2f}",
                f"<= {TARGET_WALL_RATIO}",
                ratio <= TARGET_WALL_RATIO,
            )
        )
    run = results.runs.get("changed")
    if run is not None:
        limit = results.limits["changed"]
        ratio = run.wall_seconds / limit
        targets.append(
            Target(
                f"{results.options.changed} of {run.entries} changed: wall time / "
                "import limit",
                f"{run.wall_seconds:.2f} s / {limit:.2f} s = {ratio:.2f}",
                f"<= {TARGET_WALL_RATIO}",
                ratio <= TARGET_WALL_RATIO,
            )
        )
    run = results.runs.get("memory")
    if run is not None:
        targets.append(
            Target(
                f"peak memory, {run.entries} entries",
                f"{run.max_rss_mib:.0f} MiB",
                f"< {TARGET_MEMORY_MIB:.0f} MiB",
                run.max_rss_mib < TARGET_MEMORY_MIB,
            )
        )
    cold = results.cold_start
    if cold is not None:
        targets.append(
            Target(
                "cold start: import function_app / import azure.functions",
                f"{cold.app.median * 1000:.0f} ms / "
                f"{cold.functions.median * 1000:.0f} ms = {cold.ratio:.2f}",
                f"<= {TARGET_COLD_START_RATIO}",
                cold.ratio <= TARGET_COLD_START_RATIO,
            )
        )
    return targets


def _print_table(results: Results) -> None:
    _say("targets")
    _say("| target | measured | goal | met |")
    _say("| --- | --- | --- | --- |")
    for target in results.targets:
        _say(
            f"| {target.name} | {target.measured} | {target.goal} | "
            f"{'yes' if target.met else 'no'} |"
        )


def _write_json(results: Results) -> None:
    options = results.options
    document: dict[str, Any] = {
        "machine": results.machine,
        "options": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars_of(options).items()
        },
        "seeding_seconds": round(results.seeding_seconds, 1),
        "runs": {name: run.to_json() for name, run in results.runs.items()},
        "limits": {name: round(value, 3) for name, value in results.limits.items()},
        "targets": [vars_of(target) for target in results.targets],
    }
    if results.baseline is not None:
        document["baseline"] = results.baseline.to_json(options.entries)
    if results.cold_start is not None:
        cold = results.cold_start
        document["cold_start"] = {
            "function_app_ms": [round(s * 1000, 1) for s in cold.app.seconds],
            "azure_functions_ms": [round(s * 1000, 1) for s in cold.functions.seconds],
            "ratio": round(cold.ratio, 3),
            "heavy_loaded": cold.app.heavy_loaded,
        }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = options.output / f"bench-{stamp}.json"
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    shown = (
        path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
    )
    _say(f"figures written to {shown}")


def vars_of(value: Any) -> dict[str, Any]:
    """A slotted dataclass's fields as a dictionary."""
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


def _concurrencies(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0]
    )
    add = parser.add_argument
    add("--entries", type=int, default=1000, help="list length (default 1000)")
    add("--changed", type=int, default=100, help="entries moved upstream (100)")
    add("--latency-ms", type=int, default=50, help="latency of every request (50)")
    add("--import-ms", type=int, default=2000, help="duration of an import (2000)")
    add("--acr-imports", type=int, default=10, help="imports ACR runs at once (10)")
    add("--poll-ms", type=int, default=200, help="the imports' retry-after-ms (200)")
    add("--token-ttl", type=int, default=300, help="token lifetime, seconds (300)")
    add("--read-concurrency", type=int, default=16, help="ACRSYNC_READ_CONCURRENCY")
    add("--import-concurrency", type=int, default=20, help="ACRSYNC_MAX_CONCURRENCY")
    add(
        "--sweep",
        type=_concurrencies,
        default=(32, 64),
        help="more read concurrencies for the no-change run, comma-separated "
        "(32,64); empty for none",
    )
    add(
        "--baseline-sample",
        type=int,
        default=20,
        help="entries az acr import runs for (20); 0 skips it",
    )
    add(
        "--memory-entries",
        type=int,
        default=10000,
        help="entries of the memory run (10000); 0 skips it",
    )
    add(
        "--memory-latency-ms",
        type=int,
        default=5,
        help="latency during the memory run (5)",
    )
    add(
        "--cold-start-runs",
        type=int,
        default=9,
        help="fresh interpreters per module (9); 0 skips it",
    )
    add("--tags-per-repository", type=int, default=4, help="tags a repository (4)")
    add(
        "--az",
        type=Path,
        default=default_az(),
        help="the az executable (.venv-az/bin/az)",
    )
    add(
        "--output",
        type=Path,
        default=PROJECT_ROOT / "bench-results",
        help="where the JSON goes",
    )
    add("--check", action="store_true", help="exit 1 when a target is missed")
    arguments = parser.parse_args(argv)
    return Options(
        entries=arguments.entries,
        changed=arguments.changed,
        latency_ms=arguments.latency_ms,
        import_ms=arguments.import_ms,
        acr_imports=arguments.acr_imports,
        poll_ms=arguments.poll_ms,
        token_ttl_seconds=arguments.token_ttl,
        read_concurrency=arguments.read_concurrency,
        import_concurrency=arguments.import_concurrency,
        sweep=tuple(c for c in arguments.sweep if c != arguments.read_concurrency),
        baseline_sample=arguments.baseline_sample,
        memory_entries=arguments.memory_entries,
        memory_latency_ms=arguments.memory_latency_ms,
        cold_start_runs=arguments.cold_start_runs,
        tags_per_repository=arguments.tags_per_repository,
        az=arguments.az,
        output=arguments.output,
        check=arguments.check,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    results = run_benchmark(options)
    missed = [target for target in results.targets if not target.met]
    return 1 if options.check and missed else 0
