"""MCP tools for AI assistants (``omnicdp mcp``, stdio): find a customer, read their context.

The same store and the same rules as the HTTP API (``serving.customers``): identifiers are
normalized as silver normalizes them, retired ids answer with the surviving id, and the caller
is an API key (``OMNICDP_API_KEY``) whose role must read customers, checked, with the key's rate
limit, on every call. Failures come back as tool errors whose text names the field or the
problem, never the value the assistant sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from schemas.settings import Settings
from serving.customers import COUNTRY_CODE, CustomerDirectory, LookupKind
from serving.keys import CUSTOMER_READERS, Authenticator, RateLimiter, authorize
from serving.models import AgentContext, LookupResult, Timeline
from serving.problems import InvalidInput, ServingError
from serving.store.base import MAX_SEQ, ServingStore

_T = TypeVar("_T")
_READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

_INSTRUCTIONS = """\
Customer context for people talking to a customer on any channel (phone, chat, social, store).
Start with find_customer using whatever identifier the conversation gives you (the caller's
phone number, an email, a loyalty card, a social handle, an app device id). Then call
get_customer_context for the customer_id found: open cases and the channels they travelled,
recent interactions, failed self-service attempts and the next best action. Use
get_customer_timeline when you need the full history. Do not ask the customer to repeat what the
context already shows."""


def create_mcp_server(settings: Settings, store: ServingStore, api_key: str) -> MCPServer:
    """The MCP server over ``store``, acting with ``api_key`` (which must read customers)."""
    directory = CustomerDirectory(store)
    limiter = RateLimiter(settings.serving_rate_limit, settings.serving_rate_burst)
    authenticator = Authenticator(store, settings.serving_key_cache_seconds)
    authorize(authenticator.authenticate(api_key), CUSTOMER_READERS)  # fail now, not at 1st call

    def checked(read: Callable[[], _T]) -> _T:
        """Run one read under the caller's key, turning problems into tool errors."""
        try:
            record = authenticator.authenticate(api_key)  # a key revoked since start stops
            limiter.acquire(record.key_id)
            authorize(record, CUSTOMER_READERS)
            return read()
        except ServingError as err:
            raise ToolError(f"{err.title}: {err.detail}") from None

    server = MCPServer(name="omnicdp", instructions=_INSTRUCTIONS, log_level="WARNING")

    @server.tool(
        title="Find customer",
        description=(
            "Find the customer(s) holding one identifier. Give exactly one of phone (as the "
            "channel shows it, e.g. '+82 10-1234-5678'; add country, e.g. 'KR', for a national "
            "number), email, loyalty_id, handle (social, with or without @) or device_id. Returns "
            "matching customer_ids with name, tier and open case count; several matches mean a "
            "shared identifier (a household phone): confirm who you are talking to."
        ),
        annotations=_READ_ONLY,
    )
    def find_customer(
        phone: str | None = None,
        email: str | None = None,
        loyalty_id: str | None = None,
        handle: str | None = None,
        device_id: str | None = None,
        country: Annotated[
            str | None, Field(pattern=COUNTRY_CODE, description="ISO alpha-2, for phone")
        ] = None,
    ) -> LookupResult:
        given = {
            kind: value
            for kind, value in zip(
                LookupKind, (phone, email, loyalty_id, handle, device_id), strict=True
            )
            if value
        }

        def read() -> LookupResult:
            if len(given) != 1:
                raise InvalidInput("arguments", "give exactly one identifier")
            ((kind, value),) = given.items()
            return directory.find(kind, value, country)

        return checked(read)

    @server.tool(
        title="Get customer context",
        description=(
            "Everything an agent needs on one screen for a customer_id: name, tier, language, "
            "lifetime value, consents, open cases with the channels each travelled "
            "(e.g. social -> web -> call_center), the last interactions, failed self-service "
            "attempts, recent sentiment and the next best action with its reason. A retired "
            "customer_id answers with the id it now lives on as (resolved_from says so)."
        ),
        annotations=_READ_ONLY,
    )
    def get_customer_context(customer_id: str) -> AgentContext:  # type: ignore[valid-type]
        return checked(lambda: directory.context(customer_id))

    @server.tool(
        title="Get customer timeline",
        description=(
            "A customer's interactions across every channel, newest first, each with a one-line "
            "summary (purchases, visits, calls, chats, messages, returns). Page with before = "
            "the next_before of the previous answer."
        ),
        annotations=_READ_ONLY,
    )
    def get_customer_timeline(
        customer_id: str,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
        before: Annotated[
            int | None, Field(ge=1, le=MAX_SEQ, description="a next_before cursor")
        ] = None,
    ) -> Timeline:
        return checked(lambda: directory.timeline(customer_id, limit, before))

    return server
