"""What can go wrong for a caller, as RFC 9457 problem details.

The HTTP API answers these as ``application/problem+json``; the MCP tools return their detail as
a tool error. Details never carry the identifier a caller sent (a phone or an email is PII): they
name the field instead.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:omnicdp:problem:"


class ServingError(Exception):
    """A problem to report to the caller; subclasses fix its status and type."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body = {
            "type": f"{_TYPE_PREFIX}{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extensions,
        }
        if instance is not None:
            body["instance"] = instance
        return body


class InvalidInput(ServingError):
    status = 422
    slug = "invalid-input"
    title = "Invalid input"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}", errors=[{"field": field, "detail": detail}])
        self.field = field


class NotPublished(ServingError):
    status = 503
    slug = "not-published"
    title = "Nothing published yet"


class CustomerNotFound(ServingError):
    status = 404
    slug = "customer-not-found"
    title = "Customer not found"


class SegmentNotFound(ServingError):
    status = 404
    slug = "segment-not-found"
    title = "Segment not found"


class Unauthorized(ServingError):
    status = 401
    slug = "unauthorized"
    title = "Missing or unknown API key"


class Forbidden(ServingError):
    status = 403
    slug = "forbidden"
    title = "Role not allowed"


class RateLimited(ServingError):
    status = 429
    slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"this key's request rate is exhausted; retry in {retry_after} s",
            retry_after=retry_after,
        )
        self.retry_after = retry_after
