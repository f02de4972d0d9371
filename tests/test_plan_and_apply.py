"""Plans decide by digest and change nothing; applying imports exactly the plan."""

from __future__ import annotations

import threading

import pytest

from sync_core.admission import Admission
from sync_core.apply import Outcome, apply_plan
from sync_core.errors import ImportFailedError, RegistryError
from sync_core.imagelist import Entry, parse_image_list
from sync_core.plan import PlanAction, build_plan, decide
from sync_core.reference import Digest
from sync_core.report import (
    SYNC_ACTIONS,
    RunStatus,
    count_actions,
    rows_from_results,
    status_of,
)

A = Digest("sha256:" + "a" * 64)
B = Digest("sha256:" + "b" * 64)
C = Digest("sha256:" + "c" * 64)


def admission(budget: float = 600.0) -> Admission:
    return Admission(budget_seconds=budget, import_seconds=60.0, dockerhub_pull_floor=5)


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
        self.lock = threading.Lock()

    def resolve_source(self, entry: Entry) -> Digest | None:
        if entry.source.digest is not None:
            return entry.source.digest
        key = str(entry.source)
        if key == "quay.io/broken/image:1":
            raise RegistryError("the registry answered HTTP 500: quay.io/broken/image")
        return self.upstream.get(key)

    def resolve_target(self, entry: Entry, digest: Digest) -> Digest | None:
        return self.acr.get(str(entry.target))

    def import_digest(self, entry: Entry, digest: Digest, deadline: float) -> None:
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

    plan = build_plan(
        entries(LIST),
        resolve_source=fake.resolve_source,
        resolve_target=fake.resolve_target,
        admission=admission(),
        concurrency=2,
    )

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

    plan = build_plan(
        entries(text),
        resolve_source=fake.resolve_source,
        resolve_target=fake.resolve_target,
        admission=admission(),
        concurrency=3,
    )

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
    plan = build_plan(
        entries(LIST),
        resolve_source=fake.resolve_source,
        resolve_target=fake.resolve_target,
        admission=admission(),
        concurrency=2,
    )

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
    plan = build_plan(
        entries(LIST),
        resolve_source=fake.resolve_source,
        resolve_target=fake.resolve_target,
        admission=admission(),
        concurrency=1,
    )

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
    plan = build_plan(
        entries(LIST),
        resolve_source=fake.resolve_source,
        resolve_target=fake.resolve_target,
        admission=admission(),
        concurrency=1,
    )

    results = apply_plan(
        plan,
        import_digest=lambda entry, digest, deadline: None,
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
    plan = build_plan(
        entries(text),
        resolve_source=fake.resolve_source,
        resolve_target=fake.resolve_target,
        admission=admission(),
        concurrency=1,
    )

    apply_plan(
        plan,
        import_digest=fake.import_digest,
        read_target=fake.resolve_target,
        admission=admission(),
        concurrency=1,
    )

    assert fake.imports == [("ingress-nginx/controller:v1.11.1", B)]
