"""Typed errors: one class per kind of sail::errc, raised with their context.

Every error is a SailError with ``kind`` (the C++ errc name), ``message``,
``field`` (the offending configuration or input field, or ""),
``http_status`` (None unless an HTTP status is known) and ``body`` (the
offending response body, secrets redacted, or ""). Classes that have a
natural builtin counterpart also derive from it, so that ``except
ValueError`` keeps working for the seed's ValueError cases.

The hierarchy follows Sail's SDK (https://docs.sailresearch.com/voyages-sdk-errors):
``SailError`` > ``InferenceError`` > ``InferenceHTTPError`` (``status_code``,
``response``). Every failure of an inference call is an ``InferenceError``:
the finer classes (timeout, transport, overloaded, ...) derive from it.
``InferenceError.response`` is the offending response parsed as a dict
(redacted), or its raw text when it does not parse, or None.
"""
from __future__ import annotations

import json

__all__ = [
    "SailError",
    "InvalidArgumentError",
    "InferenceError",
    "InferenceHTTPError",
    "HTTPError",
    "SailTimeoutError",
    "OverloadedError",
    "TransportError",
    "SampleCancelledError",
    "NotConfiguredError",
    "NodeDownError",
    "SailIOError",
    "UnavailableError",
    "BudgetExceededError",
]


class SailError(Exception):
    """Base class of every error sail_tinker raises for a sail::errc."""

    kind = "other"

    def __init__(self, message: str, *, field: str = "", http_status: int | None = None,
                 body: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.http_status = http_status
        self.body = body

    def __str__(self) -> str:
        parts = [self.message]
        if self.field:
            parts.append(f"[field={self.field}]")
        if self.http_status is not None:
            parts.append(f"[status={self.http_status}]")
        if self.body:
            body = self.body if len(self.body) <= 300 else self.body[:300] + "..."
            parts.append(f"[body={body}]")
        return " ".join(parts)

    def __reduce__(self):
        return (_rebuild, (self.kind, self.message, self.field, self.http_status, self.body))

    @property
    def response(self) -> dict | str | None:
        """The offending response (secrets redacted): the body parsed as JSON
        when it holds an object, else its raw text; None without a body."""
        if not self.body:
            return None
        try:
            doc = json.loads(self.body)
        except ValueError:
            return self.body
        return doc if isinstance(doc, dict) else self.body


class InvalidArgumentError(SailError, ValueError):
    """Bad configuration or input (the seed's ValueError cases)."""

    kind = "invalid_argument"


class InferenceError(SailError):
    """Every failure of an inference call (Sail's SDK's InferenceError). As
    this class itself: a malformed Sail/Tinker response or a failed inference
    task; ``response`` is the offending response as a dict (with its ``id``),
    ``body`` its redacted text."""

    kind = "inference_error"


class InferenceHTTPError(InferenceError):
    """A non-2xx HTTP status after retries (Sail's SDK's InferenceHTTPError):
    ``status_code`` and ``response`` (the parsed error body, or None).
    ``http_status`` / ``body`` are the same values; ``HTTPError`` is this class."""

    kind = "http_error"

    @property
    def status_code(self) -> int | None:
        return self.http_status

    @property
    def response(self) -> dict | None:
        doc = super().response
        return doc if isinstance(doc, dict) else None


# The binding's earlier name of the class.
HTTPError = InferenceHTTPError


class SailTimeoutError(InferenceError, TimeoutError):
    """A deadline expired (per HTTP call, or the sample's window deadline)."""

    kind = "timeout"


class OverloadedError(InferenceError):
    """Admission refused: too much work queued. The caller may retry."""

    kind = "overloaded"


class TransportError(InferenceError, ConnectionError):
    """Connection, TLS or protocol failure below HTTP."""

    kind = "transport_error"


class SampleCancelledError(InferenceError):
    """The sample was cancelled on the C++ side (its completer was closed or
    sail_tinker shut down). A cancelled asyncio task sees
    asyncio.CancelledError instead."""

    kind = "cancelled"


class NotConfiguredError(InferenceError):
    """A required setting (API key, endpoint, resolver) is missing. An
    InferenceError, as Sail's SDK raises for a missing API key."""

    kind = "not_configured"


class NodeDownError(InferenceError):
    """The service node that held the work is gone and no other took it."""

    kind = "node_down"


class SailIOError(SailError, OSError):
    """A local file (a journal, a samples file) could not be read or written."""

    kind = "io_error"


class UnavailableError(InferenceError):
    """Sail is failing: the pool's circuit breaker is open, so new work is
    refused at once (the message says when it probes next). Unlike
    OverloadedError, another node of the cluster would see the same Sail."""

    kind = "unavailable"


class BudgetExceededError(InferenceError):
    """The spending cap (``budget_usd`` / ``budget_tokens``) does not admit
    this sample: nothing was sent. Samples already in flight complete (and
    are billed); every new call raises this until a larger cap is set."""

    kind = "budget_exceeded"


_BY_KIND = {cls.kind: cls for cls in (
    InvalidArgumentError, InferenceError, InferenceHTTPError, SailTimeoutError, OverloadedError,
    TransportError, SampleCancelledError, NotConfiguredError, NodeDownError, SailIOError,
    UnavailableError, BudgetExceededError)}


def _rebuild(kind: str, message: str, field: str, http_status: int | None, body: str) -> SailError:
    cls = _BY_KIND.get(kind, SailError)
    return cls(message, field=field, http_status=http_status, body=body)


def _from_native(kind: str, message: str, field: str, status: int, body: str) -> SailError:
    """Called by the extension module for every error it raises or delivers."""
    return _rebuild(kind, message, field, status if status else None, body)
