"""Plans decide by digest and change nothing; applying imports exactly the plan."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from sync_core.admission import Admission
from sync_core.apply import Outcome, apply_plan, plan_and_apply
from sync_core.errors import FatalRunError, ImportFailedError, RegistryError
from sync_core.imagelist import Entry, parse_image_list
from sync_core.plan import PlanAction, PlannedEntry, build_plan, decide, plan_entry
from sync_core.reference import Digest
from sync_core.report import (
    SYNC_ACTIONS,
    RunStatus,
    count_actions,
    rows_from_results,
    status_of,
)

Accepted = Callable[[], None]
A = Digest("sha256:" + "a" * 64)
B = Digest("sha256:" + "b" * 64)
C = Digest("sha256:" + "c" * 64)


def admission(budget: float = 600.0) -> Admission:
    return Admission(budget_seconds=budget, import_seconds=60.0, dockerhub_pull_floor=5)


def planner(fake: FakeRegistries) -> Callable[[Entry], PlannedEntry]:
    gate = admission()

    def plan_one(entry: Entry) -> PlannedEntry:
        return plan_entry(
            entry,
            resolve_source=fake.resolve_source,
            resolve_target=fake.resolve_target,
            confirm_source=fake.confirm_source,
            admission=gate,
        )

    return plan_one


def entries(text: str) -> tuple[Entry, ...]:
    return parse_image_list(text).entries


@pytest.mark.parametrize(
    ("source", "target", "action"),
    [
        (A, None, PlanAction.IMPORT),
        (A, B, PlanAction.UPDATE),
        (A, A, PlanAction.UNCHANGED),
    ],
)
def test_the_decision_compares_digests_only(
    source: Digest, target: Digest | None, action: PlanAction
) -> None:
    assert decide(source, target) is action


class FakeRegistries:
    """Both sides in memory: upstream digests by source, ACR digests by target."""

    def __init__(self, upstream: dict[str, Digest], acr: dict[str, Digest]) -> None:
        self.upstream = upstream
        self.acr = acr
        self.imports: list[tuple[str, Digest]] = []
        self.fail_imports: set[str] = set()
        self.missing_pins: set[Digest] = set()
        self.lock = threading.Lock()

    def resolve_source(self, entry: Entry) -> Digest | None:
        if entry.source.digest is not None:
            return entry.source.digest
        key = str(entry.source)
        if key == "quay.io/broken/image:1":
            raise RegistryError("the registry answered HTTP 500: quay.io/broken/image")
        return self.upstream.get(key)

    def confirm_source(self, entry: Entry) -> Digest | None:
        if entry.source.digest in self.missing_pins:
            return None
        return entry.source.digest or self.resolve_source(entry)

    def resolve_target(self, entry: Entry, digest: Digest) -> Digest | None:
        return self.acr.get(str(entry.target))

    def import_digest(
        self, entry: Entry, digest: Digest, deadline: float, accepted: Accepted
    ) -> None:
        with self.lock:
            self.imports.append((str(entry.target), digest))
        if str(entry.target) in self.fail_imports:
            raise ImportFailedError("ACR failed the import", code="InternalError")
        self.acr[str(entry.target)] = digest


LIST = """
quay.io/jetstack/cert-manager-controller:v1.15.2 => jetstack/controller
quay.io/jetstack/cert-manager-webhook:v1.15.2 => jetstack/webhook
quay.io/jetstack/cert-manager-cainjector:v1.15.2 => jetstack/cainjector
"""
UPSTREAM = {
    "quay.io/jetstack/cert-manager-controller:v1.15.2": A,
    "quay.io/jetstack/cert-manager-webhook:v1.15.2": B,
    "quay.io/jetstack/cert-manager-cainjector:v1.15.2": C,
}


def test_a_plan_reads_both_sides_and_imports_nothing() -> None:
    fake = FakeRegistries(
        UPSTREAM,
        {"jetstack/controller:v1.15.2": A, "jetstack/webhook:v1.15.2": A},
    )

    plan = build_plan(entries(LIST), planner(fake), 2)

    assert [p.action for p in plan.entries] == [
        PlanAction.UNCHANGED,
        PlanAction.UPDATE,
        PlanAction.IMPORT,
    ]
    assert [p.source_digest for p in plan.entries] == [A, B, C]
    assert [p.target_digest for p in plan.entries] == [A, A, None]
    assert fake.imports == []


def test_a_source_that_cannot_be_resolved_fails_only_its_entry() -> None:
    fake = FakeRegistries(UPSTREAM, {})
    text = LIST + "quay.io/broken/image:1 => broken\nquay.io/gone/image:1 => gone\n"

    plan = build_plan(entries(text), planner(fake), 3)

    actions = [p.action for p in plan.entries]
    assert actions[:3] == [PlanAction.IMPORT] * 3
    assert actions[3:] == [PlanAction.FAILED, PlanAction.FAILED]
    reasons = [p.reason for p in plan.entries[3:]]
    assert reasons[0] is not None
    assert reasons[1] is not None
    assert "HTTP 500" in reasons[0].message
    assert reasons[1].code == "not-found"
    assert "no such tag or digest" in reasons[1].message


def test_applying_imports_each_change_by_digest_and_verifies_it() -> None:
    fake = FakeRegistries(UPSTREAM, {"jetstack/controller:v1.15.2": A})
    plan = build_plan(entries(LIST), planner(fake), 2)

    results = apply_plan(
        plan,
        import_digest=fake.import_digest,
        read_target=fake.resolve_target,
        admission=admission(),
        concurrency=2,
    )

    assert [r.outcome for r in results] == [
        Outcome.UNCHANGED,
        Outcome.IMPORTED,
        Outcome.IMPORTED,
    ]
    assert sorted(fake.imports) == [
        ("jetstack/cainjector:v1.15.2", C),
        ("jetstack/webhook:v1.15.2", B),
    ]


def test_one_failing_import_stops_no_other_and_the_run_is_partial() -> None:
    fake = FakeRegistries(UPSTREAM, {})
    fake.fail_imports.add("jetstack/webhook:v1.15.2")
    plan = build_plan(entries(LIST), planner(fake), 1)

    results = apply_plan(
        plan,
        import_digest=fake.import_digest,
        read_target=fake.resolve_target,
        admission=admission(),
        concurrency=1,
    )
    rows = rows_from_results(results)

    assert [r.outcome for r in results] == [
        Outcome.IMPORTED,
        Outcome.FAILED,
        Outcome.IMPORTED,
    ]
    assert results[1].reason is not None
    assert "ACR failed the import" in results[1].reason.message
    assert count_actions(rows, SYNC_ACTIONS) == {
        "imported": 2,
        "updated": 0,
        "unchanged": 0,
        "deferred": 0,
        "failed": 1,
    }
    assert status_of(rows) is RunStatus.PARTIAL


def test_an_import_the_target_does_not_show_is_reported_failed() -> None:
    fake = FakeRegistries(UPSTREAM, {})
    plan = build_plan(entries(LIST), planner(fake), 1)

    results = apply_plan(
        plan,
        import_digest=lambda entry, digest, deadline, accepted: None,
        read_target=fake.resolve_target,
        admission=admission(),
        concurrency=1,
    )

    assert {r.outcome for r in results} == {Outcome.FAILED}
    assert results[0].reason is not None
    assert results[0].reason.code == "verification-failed"
    assert "must resolve to the imported digest" in results[0].reason.message
    assert status_of(rows_from_results(results)) is RunStatus.FAILED


def test_a_pinned_source_is_imported_by_its_own_digest() -> None:
    fake = FakeRegistries({}, {})
    source = f"registry.k8s.io/ingress-nginx/controller:v1.11.1@{B}"
    text = f"{source} => ingress-nginx/controller"
    plan = build_plan(entries(text), planner(fake), 1)

    apply_plan(
        plan,
        import_digest=fake.import_digest,
        read_target=fake.resolve_target,
        admission=admission(),
        concurrency=1,
    )

    assert fake.imports == [("ingress-nginx/controller:v1.11.1", B)]


MANY = "".join(
    f"quay.io/jetstack/image-{n}:v1 => jetstack/image-{n}\n" for n in range(12)
)
MANY_UPSTREAM = {f"quay.io/jetstack/image-{n}:v1": A for n in range(12)}


class TimedImports(FakeRegistries):
    """Records when each import starts and ends, and how many run at once."""

    def __init__(self) -> None:
        super().__init__(MANY_UPSTREAM, {})
        self.spans: list[tuple[float, float]] = []
        self.running = 0
        self.most = 0

    def import_digest(
        self, entry: Entry, digest: Digest, deadline: float, accepted: Accepted
    ) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        started = time.monotonic()
        time.sleep(0.05)
        super().import_digest(entry, digest, deadline, accepted)
        with self.lock:
            self.running -= 1
            self.spans.append((started, time.monotonic()))


def test_the_first_import_runs_alone_then_imports_run_concurrently() -> None:
    fake = TimedImports()
    gate = admission()

    results = plan_and_apply(
        entries(MANY),
        plan_one=planner(fake),
        import_digest=fake.import_digest,
        read_target=fake.resolve_target,
        admission=gate,
        read_concurrency=4,
        import_concurrency=4,
    )

    first_end = min(end for _, end in fake.spans)
    assert {r.outcome for r in results} == {Outcome.IMPORTED}
    assert [r.entry.line for r in results] == list(range(1, 13))
    assert sum(1 for start, _ in fake.spans if start < first_end) == 1
    assert fake.most == 4


def test_a_fatal_first_import_stops_every_other_import() -> None:
    fake = FakeRegistries(MANY_UPSTREAM, {})
    calls: list[Entry] = []

    def refuse(
        entry: Entry, digest: Digest, deadline: float, accepted: Accepted
    ) -> None:
        calls.append(entry)
        raise FatalRunError(
            "the identity needs the importer role", reason="not-authorized"
        )

    results = plan_and_apply(
        entries(MANY),
        plan_one=planner(fake),
        import_digest=refuse,
        read_target=fake.resolve_target,
        admission=admission(),
        read_concurrency=4,
        import_concurrency=4,
    )

    outcomes = Counter(r.outcome for r in results)
    assert len(calls) == 1
    assert outcomes == {Outcome.FAILED: 1, Outcome.DEFERRED: 11}
    assert {r.reason.code for r in results if r.reason} == {
        "not-authorized",
        "run-stopped",
    }


def test_a_pinned_digest_the_source_lacks_fails_in_the_plan() -> None:
    fake = FakeRegistries({}, {})
    fake.missing_pins.add(C)
    text = (
        f"quay.io/jetstack/pinned@{B} => jetstack/pinned:good\n"
        f"quay.io/jetstack/pinned@{C} => jetstack/pinned:typo\n"
    )

    plan = build_plan(entries(text), planner(fake), 1)

    assert [p.action for p in plan.entries] == [PlanAction.IMPORT, PlanAction.FAILED]
    reason = plan.entries[1].reason
    assert reason is not None
    assert reason.code == "not-found"
    assert "pinned digest" in reason.message


class AcceptingImports(TimedImports):
    """Imports that ARM accepts at once and that then take their time in ACR."""

    def import_digest(
        self, entry: Entry, digest: Digest, deadline: float, accepted: Accepted
    ) -> None:
        accepted()
        super().import_digest(entry, digest, deadline, accepted)


def test_the_first_import_holds_the_others_only_until_arm_accepts_it() -> None:
    fake = AcceptingImports()

    results = plan_and_apply(
        entries(MANY),
        plan_one=planner(fake),
        import_digest=fake.import_digest,
        read_target=fake.resolve_target,
        admission=admission(),
        read_concurrency=4,
        import_concurrency=4,
    )

    first_end = min(end for _, end in fake.spans)
    assert {r.outcome for r in results} == {Outcome.IMPORTED}
    assert sum(1 for start, _ in fake.spans if start < first_end) > 1
