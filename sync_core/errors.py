"""The errors this package raises, in one small hierarchy.

Each message states the rule that was broken, then the input that broke it, so a
person can act on it without reading the code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sync_core.imagelist import Problem


class SyncError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigurationError(SyncError):
    """An app setting is missing or malformed; the run cannot start."""

    def __init__(self, setting: str, rule: str) -> None:
        super().__init__(f"{rule}: setting {setting}")
        self.setting = setting
        self.rule = rule


class RegistryError(SyncError):
    """A registry answered something this package cannot use for one entry."""


class ImportFailedError(SyncError):
    """ACR reported an import as failed, or it did not finish in time."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


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
