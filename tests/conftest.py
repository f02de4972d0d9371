"""Fixtures that run tests against the local stand-in.

One stand-in serves the whole session. ``clean_standin`` gives a test the shared one
with no faults, its counters reset and its tunables back at their start values. A
test that uses either is marked ``standin``, so ``-m "not standin"`` runs the rest
alone. A missing program fails the session with a message naming it; nothing is
skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from standin.harness import Standin
from standin.processes import MissingToolError

STANDIN_FIXTURES = frozenset({"standin", "clean_standin"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if STANDIN_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.standin)


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    """The stand-in every test of the session shares, stopped at the end."""
    try:
        running = Standin.start(tmp_path_factory.mktemp("standin"))
    except MissingToolError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def clean_standin(standin: Standin) -> Standin:
    """The shared stand-in with no faults, counters reset and tunables as started."""
    standin.reset()
    return standin
