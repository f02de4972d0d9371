"""The errors this package raises, in one small hierarchy.

Each message states the rule that was broken, then the input that broke it, so a
person can act on it without reading the code. Each error also says how far it
reaches: ``temporary`` (the next run will likely succeed: rate limits, 5xx,
timeouts), ``permanent`` for its entry (not found, invalid, refused), or ``fatal``
for the whole run (the identity or its roles are wrong: no further entry can work).
Its ``reason`` is a short stable code the report carries.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sync_core.imagelist import Problem


class Reach(enum.StrEnum):
    """How far a failure reaches."""

    TEMPORARY = "temporary"
    PERMANENT = "permanent"
    FATAL = "fatal"


class SyncError(Exception):
    """Base of every error this package raises on purpose."""

    reach: Reach = Reach.PERMANENT
    reason: str = "error"


class ConfigurationError(SyncError):
    """An app setting is missing or malformed; the run cannot start."""

    def __init__(self, setting: str, rule: str) -> None:
        super().__init__(f"{rule}: setting {setting}")
        self.setting = setting
        self.rule = rule


class RegistryError(SyncError):
    """A registry answered something this package cannot use for one entry."""

    reason = "registry-error"


class SourceNotFoundError(RegistryError):
    """The source registry has no such tag or digest."""

    reason = "not-found"


class RegistryAccessDeniedError(RegistryError):
    """A registry refused pull access: missing on Docker Hub, or private."""

    reason = "not-found-or-private"


class RegistryUnavailableError(RegistryError):
    """No usable answer from a registry after the retry policy gave up."""

    reach = Reach.TEMPORARY
    reason = "registry-unavailable"


class RateLimitedError(RegistryError):
    """A registry kept answering 429; its remaining entries wait for the next run."""

    reach = Reach.TEMPORARY
    reason = "rate-limited"

    def __init__(self, message: str, *, registry: str) -> None:
        super().__init__(message)
        self.registry = registry


class ImportFailedError(SyncError):
    """ACR refused an import, or reported it failed."""

    reason = "import-failed"

    def __init__(
        self, message: str, *, code: str | None = None, reach: Reach | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        if reach is not None:
            self.reach = reach


class ImportTimedOutError(ImportFailedError):
    """An import did not finish by its deadline; it may still complete in ACR."""

    reach = Reach.TEMPORARY
    reason = "import-timed-out"


class VerificationError(SyncError):
    """After an import, the target tag does not resolve to the imported digest."""

    reach = Reach.TEMPORARY
    reason = "verification-failed"


class FatalRunError(SyncError):
    """The run cannot go on: the identity, its roles or a setting are wrong."""

    reach = Reach.FATAL
    reason = "run-stopped"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class InvalidReference(SyncError):  # noqa: N818 - named for the thing, as packaging does
    """An image reference breaks the reference grammar or one of this app's rules.

    ``rule`` is a short stable code (see ``sync_core.imagelist.RULES``), ``text`` the
    reference as given, ``detail`` what is wrong in words, and ``position`` the
    0-based offset in ``text`` where the fault begins, when one place is at fault.
    """

    def __init__(
        self, rule: str, text: str, detail: str, position: int | None = None
    ) -> None:
        super().__init__(f"{rule}: {detail}: {text!r}")
        self.rule = rule
        self.text = text
        self.detail = detail
        self.position = position


class InvalidImageList(SyncError):  # noqa: N818 - named for the thing, as packaging does
    """The image list breaks one or more rules; none of it may be applied.

    ``errors`` and ``warnings`` hold every problem found in the whole list, each
    a ``sync_core.imagelist.Problem`` naming its line, rule and offending text.
    """

    def __init__(
        self, errors: tuple[Problem, ...], warnings: tuple[Problem, ...]
    ) -> None:
        super().__init__(_summarise(errors))
        self.errors = errors
        self.warnings = warnings


_ERRORS_IN_SUMMARY = 3


def _summarise(errors: tuple[Problem, ...]) -> str:
    count = len(errors)
    noun = "error" if count == 1 else "errors"
    shown = "; ".join(str(problem) for problem in errors[:_ERRORS_IN_SUMMARY])
    more = count - _ERRORS_IN_SUMMARY
    tail = f"; and {more} more" if more > 0 else ""
    return f"the image list is invalid, {count} {noun}: {shown}{tail}"
