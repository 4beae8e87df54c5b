"""How often people do things: the behaviour rates of the simulation, in one place to tune."""

from __future__ import annotations

# Share of people with an identity record in each channel during the simulated period.
SHARE_LOYALTY, SHARE_WEB, SHARE_APP, SHARE_CALLS, SHARE_SOCIAL = 0.60, 0.60, 0.45, 0.30, 0.25
# Chance that a new household has 2-4 members: puts ~15% of people in shared households.
MULTI_PERSON_HOUSEHOLD = 0.064
# Daily chance of coming back to a channel after the first visit of the period.
DAILY_POS, DAILY_WEB, DAILY_APP, DAILY_SOCIAL = 0.04, 0.10, 0.15, 0.03
# Daily chance of anonymous activity by people without an account in the channel.
DAILY_ANON_POS, DAILY_ANON_WEB, DAILY_ANON_APP = 0.025, 0.03, 0.01
SHARE_PHONE_CHANGE, SHARE_EMAIL_CHANGE = 0.03, 0.03
SHARE_COMPLAINT_JOURNEY, SHARE_FAILED_RETURN = 0.15, 0.03
