"""The agent context HTTP API (``omnicdp serve``): lookups, context, timeline and segments.

Agents' desktops and other tools call it with ``Authorization: Bearer <key>``; every answer is
read from one published generation of the serving store, with the rules of
``serving.customers``. Errors are RFC 9457 ``application/problem+json``. The access log names the
route template, status, time and key id, never the path or query a caller sent (a phone number
or an email in a query string is PII).

Handlers are ``async`` and read the store inline, on the event loop: a read is one indexed
lookup (tens of microseconds in SQLite, one round trip to PostgreSQL), cheaper than the hop to
a worker thread. Handing the GIL back and forth between the loop and worker threads made the
slowest requests slow under load: with plain (thread-pool) handlers, 1,000 lookups/s over
1,000,000 customers in SQLite had a p99 of 5.6-37 ms against 2.2-2.4 ms inline, on the same
quiet machine (``bench/serving.py``). A server scales with cores through processes instead,
``omnicdp serve --workers N`` (:func:`app_from_environment` builds each worker's app), each
with its own connection, so a slow read holds up the requests of one worker only; the workers
share the keys' rate buckets (:class:`serving.keys.SharedRateLimiter`), so a key's limit holds
however its requests are spread over them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.settings import Settings
from serving.customers import COUNTRY_CODE, CustomerDirectory, LookupKind
from serving.keys import (
    CUSTOMER_READERS,
    SEGMENT_READERS,
    Authenticator,
    Role,
    authorize,
    rate_limiter,
)
from serving.models import (
    AgentContext,
    CustomerProfile,
    LookupResult,
    Problem,
    Segment,
    SegmentMembers,
    Timeline,
)
from serving.problems import PROBLEM_MEDIA_TYPE, InvalidInput, ServingError
from serving.store import open_store
from serving.store.base import MAX_SEQ, ServingStore

access_log = logging.getLogger("omnicdp.serving.access")
log = logging.getLogger(__name__)

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_DESCRIPTION = """\
Who is this customer and what happened to them, across store, web, app, call center and social.

Send an API key from `omnicdp keys create` as `Authorization: Bearer <key>`. Roles: `agent`
(customer lookup, profile, context, timeline), `marketer` (segments: customer_ids, no raw PII),
`admin` (everything). Each key has a rate limit. Look a customer up with the identifier the
channel gives, one route per kind (`/v1/customers/lookup/phone?phone=...`). Lookup values are
normalized as the platform stores them (email lower-case, phone E.164), so send them as the
channel shows them; URL-encode `+` in phone numbers as `%2B`. A customer_id retired by identity
resolution answers with the id it lives on as, named in `resolved_from`. Errors are RFC 9457
`application/problem+json`.
"""
_Identifier = Annotated[str, Query(description="as the channel shows it")]
_Country = Annotated[
    str | None,
    Query(pattern=COUNTRY_CODE, description="ISO alpha-2 country of a national phone number"),
]
_NO_NUL = r"^[^\x00]*$"  # a cursor is a customer_id, which holds no NUL (see store.base._holdable)
_BEARER = HTTPBearer(auto_error=False, description="an API key from `omnicdp keys create`")
_KEYED = (401, 403, 429, 503)  # what any keyed route may answer
_STATUS_TEXT = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for problem answers, so the document says what errors look like."""
    descriptions = {
        401: "missing, unknown or revoked API key",
        403: "the key's role may not read this",
        404: "no such customer or segment",
        422: "invalid input; `errors` names each field",
        429: "rate limit reached; see Retry-After",
        503: "nothing published yet",
    }
    return {
        s: {
            "description": descriptions[s],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}},
        }
        for s in statuses
    }


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        body, status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


class AccessLog:
    """ASGI middleware: one PII-free line per request, and a problem answer for any crash.

    It logs the matched route template (``/v1/customers/{customer_id}``), never the raw path or
    query string; and for an unexpected exception only its type, since messages from a database
    driver may quote the values a caller sent.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception as err:  # the answer is a problem; the log names only the type
            log.error("unhandled %s on %s", type(err).__name__, _route(scope))
            if not status["sent"]:
                error = ServingError("the server failed to answer; the failure is logged")
                await problem_response(error.problem())(scope, receive, send_and_note)
        access_log.info(
            "%s %s %d %.1fms key=%s",
            scope["method"],
            _route(scope),
            status["code"],
            (time.perf_counter() - started) * 1000,
            scope.get("state", {}).get("key_id", "-"),
        )


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", "(unmatched)")


def create_app(settings: Settings, store: ServingStore | None = None) -> FastAPI:
    """The API over ``store`` (default: the configured serving store)."""
    store = store or open_store(settings.resolved_serving_url)
    directory = CustomerDirectory(store)
    limiter = rate_limiter(settings)
    authenticator = Authenticator(store, settings.serving_key_cache_seconds)

    def caller(allowed: frozenset[Role]) -> Callable[..., Awaitable[None]]:
        """A dependency that admits keys of the ``allowed`` roles, within their rate limit."""

        async def dependency(
            request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
        ) -> None:
            record = authenticator.authenticate(credentials.credentials if credentials else None)
            request.state.key_id = record.key_id
            limiter.acquire(record.key_id)
            authorize(record, allowed)

        return dependency

    agent = [Depends(caller(CUSTOMER_READERS))]
    marketer = [Depends(caller(SEGMENT_READERS))]
    app = FastAPI(
        title="omnicdp agent context API",
        version="1",
        description=_DESCRIPTION,
    )
    app.add_middleware(AccessLog)
    _add_error_handlers(app)
    _document_problems(app)

    @app.get("/healthz", tags=["ops"], summary="liveness and the published generation")
    async def health() -> dict[str, Any]:
        generation = store.current()
        return {
            "status": "ok",
            "generation": generation.number if generation else None,
            "published_at": store.published_at(),
        }

    lookup_route = {
        "tags": ["customers"],
        "dependencies": agent,
        "responses": _problems(*_KEYED, 404, 422),
    }

    @app.get(
        "/v1/customers/lookup/phone",
        summary="find customers by phone number",
        operation_id="lookup_by_phone",
        **lookup_route,
    )
    async def lookup_by_phone(
        phone: Annotated[str, Query(description="as typed; E.164 or national")],
        country: _Country = None,
    ) -> LookupResult:
        return directory.find(LookupKind.PHONE, phone, country)

    @app.get(
        "/v1/customers/lookup/email",
        summary="find customers by email address",
        operation_id="lookup_by_email",
        **lookup_route,
    )
    async def lookup_by_email(email: _Identifier) -> LookupResult:
        return directory.find(LookupKind.EMAIL, email)

    @app.get(
        "/v1/customers/lookup/loyalty_id",
        summary="find customers by loyalty card",
        operation_id="lookup_by_loyalty_id",
        **lookup_route,
    )
    async def lookup_by_loyalty_id(loyalty_id: _Identifier) -> LookupResult:
        return directory.find(LookupKind.LOYALTY_ID, loyalty_id)

    @app.get(
        "/v1/customers/lookup/handle",
        summary="find customers by social handle",
        operation_id="lookup_by_handle",
        **lookup_route,
    )
    async def lookup_by_handle(
        handle: Annotated[str, Query(description="social handle, with or without @")],
    ) -> LookupResult:
        return directory.find(LookupKind.HANDLE, handle)

    @app.get(
        "/v1/customers/lookup/device_id",
        summary="find customers by app device id",
        operation_id="lookup_by_device_id",
        **lookup_route,
    )
    async def lookup_by_device_id(device_id: _Identifier) -> LookupResult:
        return directory.find(LookupKind.DEVICE_ID, device_id)

    @app.get("/v1/customers/lookup", include_in_schema=False, deprecated=True, **lookup_route)
    async def lookup_by_any(
        phone: str | None = None,
        email: str | None = None,
        loyalty_id: str | None = None,
        handle: str | None = None,
        device_id: str | None = None,
        country: str | None = None,
    ) -> LookupResult:
        """The first version's one lookup route, kept for its clients and left out of the
        OpenAPI document: OpenAPI cannot say "exactly one of these query parameters", so a
        client generated from it would send requests this route refuses."""
        given = {
            kind: value
            for kind, value in zip(
                LookupKind, (phone, email, loyalty_id, handle, device_id), strict=True
            )
            if value is not None
        }
        if len(given) != 1:
            names = ", ".join(k.value for k in LookupKind)
            raise InvalidInput("query", f"give exactly one of: {names}")
        ((kind, value),) = given.items()
        return directory.find(kind, value, country)

    @app.get(
        "/v1/customers/{customer_id}",
        tags=["customers"],
        summary="the golden record, with where each attribute came from",
        dependencies=agent,
        responses=_problems(*_KEYED, 404),
    )
    async def customer(customer_id: str) -> CustomerProfile:  # type: ignore[valid-type]
        return directory.profile(customer_id)

    @app.get(
        "/v1/customers/{customer_id}/context",
        tags=["customers"],
        summary="what an agent needs on one screen: cases, recent contacts, next best action",
        dependencies=agent,
        responses=_problems(*_KEYED, 404),
    )
    async def context(customer_id: str) -> AgentContext:  # type: ignore[valid-type]
        return directory.context(customer_id)

    @app.get(
        "/v1/customers/{customer_id}/timeline",
        tags=["customers"],
        summary="every interaction across channels, newest first",
        dependencies=agent,
        responses=_problems(*_KEYED, 404, 422),
    )
    async def timeline(
        customer_id: str,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: Annotated[
            int | None, Query(ge=1, le=MAX_SEQ, description="a next_before cursor")
        ] = None,
    ) -> Timeline:
        return directory.timeline(customer_id, limit, before)

    @app.get(
        "/v1/segments",
        tags=["segments"],
        summary="published audiences",
        dependencies=marketer,
        responses=_problems(*_KEYED),
    )
    async def segments() -> list[Segment]:
        return directory.segments()

    @app.get(
        "/v1/segments/{name}/members",
        tags=["segments"],
        summary="customer_ids in an audience (consent applied), in pages",
        dependencies=marketer,
        responses=_problems(*_KEYED, 404, 422),
    )
    async def segment_members(
        name: str,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        after: Annotated[
            str | None, Query(pattern=_NO_NUL, description="a next_after cursor")
        ] = None,
    ) -> SegmentMembers:
        return directory.segment_members(name, limit, after)

    return app


def app_from_environment() -> FastAPI:
    """The app of one ``omnicdp serve`` worker: settings from the environment the command
    set up for its workers (``OMNICDP_*``), as uvicorn's factory.

    A worker is a new process without the command's logging, so it sets up its own: the access
    log, and the worker's process id in each line, to tell the workers apart.
    """
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s",
    )
    access_log.setLevel(logging.INFO)
    return create_app(Settings())


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServingError)
    async def serving_error(request: Request, err: ServingError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        if err.status == 429:
            headers = {"Retry-After": str(err.extensions["retry_after"])}
        return problem_response(err.problem(request.url.path), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        # field names and reasons only: FastAPI's default answer echoes the rejected input
        errors = [
            {"field": str(e["loc"][-1]) if e["loc"] else "request", "detail": e["msg"]}
            for e in err.errors()
        ]
        fields = ", ".join(e["field"] for e in errors)
        body = InvalidInput("request", "").problem(request.url.path)
        body.update(detail=f"invalid {fields}", errors=errors)
        return problem_response(body)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        body = {
            "type": "about:blank",
            "title": _STATUS_TEXT.get(err.status_code, "Error"),
            "status": err.status_code,
            "detail": str(err.detail),
        }
        return problem_response(body, getattr(err, "headers", None))


def _document_problems(app: FastAPI) -> None:
    """Add the Problem schema the error responses refer to, and nothing FastAPI made up."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["Problem"] = Problem.model_json_schema(ref_template=_REF_TEMPLATE)
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
            for operation in _operations(schema):
                # FastAPI adds a default 422 to routes whose only parameters are path strings,
                # which cannot fail validation: drop it
                answer = operation["responses"].get("422", {})
                if "HTTPValidationError" in json.dumps(answer):
                    del operation["responses"]["422"]
            app.openapi_schema = json.loads(json.dumps(schema))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for path in schema.get("paths", {}).values() for op in path.values()]


_REF_TEMPLATE = "#/components/schemas/{model}"
