"""Curated gold: the tables marketers and agents read, rebuilt from silver and gold identity.

``curate`` reads ``silver.interactions``, ``gold.identity_xref`` and ``gold.customer_profile``
(never bronze) and replaces four tables, each with one Delta overwrite, so a rerun on the same
inputs writes the same rows and a failed run leaves readers on the previous version:

``gold.customer_timeline``
    Every interaction of a resolved customer (anonymous and unresolved records have no
    customer), numbered in time order, with a one-line ``summary`` built from structured fields
    only: free text such as DMs can carry emails and phone numbers, so it never enters a summary.
    A web page about a case (``case_page_pattern``) becomes a touch of that case, so a case that
    starts on social and continues on the web shows both.
``gold.customer_360``
    Recency (days since the last order), frequency and monetary (orders and spend in the last
    ``rfm_window_days``) over store purchases and web/app orders; lifetime value (all spend,
    historical, not predicted) and a tier from it. Money is converted to one reporting currency
    with the fixed rates of the rules file, because customers buy in KRW and USD. Channel mix
    counts active days per channel rather than events, so a web session's twenty page views do
    not outweigh a store visit; the preferred channel has the most active days (ties: the most
    recently used). Brand-initiated events (our DM replies) are not customer activity. Category
    affinity adds each event type's weight to the categories it names, normalized to sum 1.
    Consent per purpose comes from the golden record (the most restrictive statement wins).
``gold.agent_context``
    One row per customer: golden name, tier, language, preferred channel; open cases with the
    channels they travelled through in order (``social -> web -> call_center``); the last
    interactions per channel; recent failed self-service (a failed web return), marked resolved
    only when an agent contact closed with a closing status afterwards; and a next best action.
``gold.journey_metrics``
    Per UTC day and channel: adoption (customers whose first activity on the channel falls that
    day, and the cumulative share of known customers who use it); channel switches inside one
    case, counted on the channel the customer left; escalations, i.e. self-service attempts
    followed by an agent contact within ``escalation_window_hours``, counted on the self-service
    channel; mean and p90 resolution time of cases resolved that day, by the channel the case
    started on (resolution = the end of the first contact with a closing status); repeat
    contacts, i.e. service contacts (one per customer, channel and day) followed by another
    within ``repeat_contact_days``. An HTML report with inline SVG charts goes to
    ``reports/journey_metrics.html``.

``curate_customers`` builds the timeline, 360 and agent context rows of a few customers only (the
micro-batch path) with the same functions, for the micro-batch to serve and then store in place
of theirs; journey metrics, over everyone, wait for the next ``curate``.

One module per table (``timeline``, ``customer_360``, ``agent_context``, ``journey_metrics``),
with the cases they share (``cases``), the rules file (``rules``), the journey report (``report``)
and the job that builds them in order (``run``).

Everything is relative to ``as_of``: ``Settings.as_of`` or the latest interaction, never the
wall clock, so rebuilding the same inputs gives the same tables.
"""

from jobs.curate.agent_context import next_best_action
from jobs.curate.rules import (
    ActionRule,
    CurationRules,
    RuleError,
    checked_predicate,
    load_rules,
)
from jobs.curate.run import CurateSummary, CustomerTables, curate, curate_customers

__all__ = [
    "ActionRule",
    "CurateSummary",
    "CurationRules",
    "CustomerTables",
    "RuleError",
    "checked_predicate",
    "curate",
    "curate_customers",
    "load_rules",
    "next_best_action",
]
