"""Fault rules: make chosen requests slow, fail, hang, or lie.

``POST /_standin/faults`` replaces the rules with ``{"rules": [RULE, ...]}``;
``DELETE /_standin/faults`` clears them; ``GET /_standin/faults`` shows them with
the uses they have left. Rules are tried in order: the first that matches a
request applies to it and uses up one of its ``times``.

A RULE is a JSON object:

``surface`` (required)
    Where the request arrives: ``identity``, ``arm-import`` (the import POST),
    ``arm-poll`` (its Azure-AsyncOperation and Location GETs), ``arm`` (every
    other ARM request), ``acr`` (the ACR data plane, ``/oauth2/*`` included) or
    ``public:<host>`` such as ``public:docker.io``.
``kind`` (optional)
    Narrows to one counted kind, as in ``/_standin/stats``: ``token``,
    ``exchange``, ``manifest_head``, ``manifest_get``, ``blob_get``,
    ``acr_api``, ``import``, ``poll``, ``other``.
``repository`` (optional)
    Narrows to requests about that repository: the repository in a registry
    path or token scope; for an import its source repository or any target
    repository (``library/alpine``, ``mirror/alpine``).
``times`` (optional)
    How many matching requests the rule applies to; absent or null: always.
``latency_ms`` (optional)
    Delay before answering; alone, the request is then answered as usual.

At most one effect:

``status`` with optional ``code``, ``message`` and ``retry_after``
    Answer with that HTTP status in the surface's own error shape (ARM
    ``{"error": {...}}``, registry ``{"errors": [...]}``, App Service
    ``{"statusCode": ...}``). Without ``code`` each surface names it as the real
    service does; ``status: 403`` on ``arm-import`` is ARM's AuthorizationFailed
    naming the import action, the caller's principal and the registry scope.
    ``retry_after`` is ``{"seconds": N, "form": F}`` with F one of ``seconds``
    (``Retry-After: N``), ``http-date`` (N seconds from now as an HTTP date) or
    ``unix`` (N seconds from now as a Unix timestamp); leave it out for no header.
``close: true``
    Close the connection without an answer, as a refused or reset connection.
``import_status: "Accepted" | "Running"`` (``arm-import`` only)
    The import is accepted and then reports that status forever; nothing copies.
``import_error: {"code": C, "message": M}`` (``arm-import`` only)
    The import is accepted and then fails with that ARM error.
``dangling_tag: true`` (``arm-import`` only)
    The import copies and reports Succeeded, but its target tags are not written,
    so they do not resolve (or still resolve to what they held before).

Example: Docker Hub answers the next two manifest GETs for alpine with 429 and a
``Retry-After`` as an HTTP date::

    {"rules": [{"surface": "public:docker.io", "kind": "manifest_get",
                "repository": "library/alpine", "times": 2, "status": 429,
                "retry_after": {"seconds": 30, "form": "http-date"}}]}
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from standin.stats import PUBLIC_PREFIX, RequestLabel

SURFACES = frozenset({"identity", "arm-import", "arm-poll", "arm", "acr"})
RETRY_AFTER_FORMS = frozenset({"seconds", "http-date", "unix"})
STUCK_STATUSES = frozenset({"Accepted", "Running"})
_EFFECTS = ("status", "close", "import_status", "import_error", "dangling_tag")
_IMPORT_EFFECTS = frozenset({"import_status", "import_error", "dangling_tag"})
_KEYS = frozenset(
    {"surface", "kind", "repository", "times", "latency_ms", "code", "message"}
    | {"retry_after", *_EFFECTS}
)


class InvalidFaultRuleError(ValueError):
    """A fault rule breaks the schema; the message names the rule and the field."""


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """A ``Retry-After`` header to send, in one of its three forms."""

    seconds: int
    form: str

    def header_value(self, now: float | None = None) -> str:
        moment = time.time() if now is None else now
        if self.form == "seconds":
            return str(self.seconds)
        if self.form == "unix":
            return str(int(moment) + self.seconds)
        return formatdate(moment + self.seconds, usegmt=True)


@dataclass(frozen=True, slots=True)
class ImportFailure:
    """The ARM error an import is made to fail with."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Fault:
    """One rule's effect on one request."""

    latency_ms: int = 0
    status: int | None = None
    code: str | None = None
    message: str | None = None
    retry_after: RetryAfter | None = None
    close: bool = False
    import_status: str | None = None
    import_error: ImportFailure | None = None
    dangling_tag: bool = False

    @property
    def answers_early(self) -> bool:
        """True when the fault answers the request instead of the surface."""
        return self.status is not None or self.close


@dataclass(slots=True)
class FaultRule:
    """A rule: which requests it matches, how often, and its fault."""

    surface: str
    kind: str | None
    repository: str | None
    times: int | None
    fault: Fault
    raw: dict[str, Any]

    def matches(self, label: RequestLabel) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.surface != label.surface:
            return False
        if self.kind is not None and self.kind != label.kind:
            return False
        return self.repository is None or self.repository in label.repositories


class FaultBook:
    """The current rules; thread-safe, since every listener consults them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def replace(self, rules: Sequence[FaultRule]) -> None:
        with self._lock:
            self._rules = list(rules)

    def clear(self) -> None:
        self.replace([])

    def take(self, label: RequestLabel) -> Fault | None:
        """The fault for a request, using up one application of its rule."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(label):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule.fault
        return None

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{**rule.raw, "times_left": rule.times} for rule in self._rules]


def parse_rules(document: Any) -> list[FaultRule]:
    """Rules from a ``{"rules": [...]}`` document; every broken rule is reported."""
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise InvalidFaultRuleError(
            'a fault document is {"rules": [...]}, got ' + repr(document)
        )

    rules: list[FaultRule] = []
    problems: list[str] = []
    for index, raw in enumerate(document["rules"]):
        try:
            rules.append(parse_rule(raw))
        except InvalidFaultRuleError as error:
            problems.append(f"rule {index}: {error}")
    if problems:
        raise InvalidFaultRuleError("; ".join(problems))
    return rules


def parse_rule(raw: Any) -> FaultRule:
    """One rule, checked against the schema in this module's docstring."""
    if not isinstance(raw, dict):
        raise InvalidFaultRuleError(f"a rule is an object, got {raw!r}")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise InvalidFaultRuleError(f"unknown fields {unknown}")

    surface = raw.get("surface")
    if not isinstance(surface, str) or not _is_surface(surface):
        raise InvalidFaultRuleError(
            "surface must be identity, arm-import, arm-poll, arm, acr or "
            f"public:<host>, got {surface!r}"
        )
    effects = [name for name in _EFFECTS if raw.get(name) not in (None, False)]
    if len(effects) > 1:
        raise InvalidFaultRuleError(f"a rule has at most one effect, got {effects}")
    if effects and effects[0] in _IMPORT_EFFECTS and surface != "arm-import":
        raise InvalidFaultRuleError(f"{effects[0]} applies to surface arm-import only")

    return FaultRule(
        surface=surface,
        kind=_optional_str(raw, "kind"),
        repository=_optional_str(raw, "repository"),
        times=_optional_count(raw, "times"),
        fault=Fault(
            latency_ms=_optional_count(raw, "latency_ms", minimum=0) or 0,
            status=_status(raw),
            code=_optional_str(raw, "code"),
            message=_optional_str(raw, "message"),
            retry_after=_retry_after(raw.get("retry_after")),
            close=_flag(raw, "close"),
            import_status=_import_status(raw.get("import_status")),
            import_error=_import_error(raw.get("import_error")),
            dangling_tag=_flag(raw, "dangling_tag"),
        ),
        raw=dict(raw),
    )


def _is_surface(surface: str) -> bool:
    if surface.startswith(PUBLIC_PREFIX):
        return bool(surface.removeprefix(PUBLIC_PREFIX))
    return surface in SURFACES


def _optional_str(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is not None and not (isinstance(value, str) and value):
        raise InvalidFaultRuleError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _optional_count(raw: Mapping[str, Any], name: str, minimum: int = 1) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidFaultRuleError(
            f"{name} must be an integer >= {minimum}, got {value!r}"
        )
    return value


def _flag(raw: Mapping[str, Any], name: str) -> bool:
    value = raw.get(name, False)
    if not isinstance(value, bool):
        raise InvalidFaultRuleError(f"{name} must be true or false, got {value!r}")
    return value


def _status(raw: Mapping[str, Any]) -> int | None:
    value = raw.get("status")
    if value is None:
        if raw.get("retry_after") is not None:
            raise InvalidFaultRuleError("retry_after goes with a status")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
        raise InvalidFaultRuleError(
            f"status must be an HTTP error status 400-599, got {value!r}"
        )
    return value


def _retry_after(value: Any) -> RetryAfter | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"seconds", "form"}:
        raise InvalidFaultRuleError(
            f'retry_after is {{"seconds": N, "form": F}}, got {value!r}'
        )
    seconds = value.get("seconds")
    form = value.get("form", "seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise InvalidFaultRuleError(
            f"retry_after.seconds must be an integer >= 0, got {seconds!r}"
        )
    if form not in RETRY_AFTER_FORMS:
        raise InvalidFaultRuleError(
            f"retry_after.form must be one of {sorted(RETRY_AFTER_FORMS)}, got {form!r}"
        )
    return RetryAfter(seconds, form)


def _import_status(value: Any) -> str | None:
    if value is not None and value not in STUCK_STATUSES:
        raise InvalidFaultRuleError(
            f"import_status must be one of {sorted(STUCK_STATUSES)}, got {value!r}"
        )
    return None if value is None else str(value)


def _import_error(value: Any) -> ImportFailure | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("code"), str)
        or not value["code"]
    ):
        raise InvalidFaultRuleError(
            f'import_error is {{"code": C, "message": M}}, got {value!r}'
        )
    message = value.get("message") or f"The import failed with {value['code']}."
    return ImportFailure(value["code"], str(message))
