"""Simulate what five channels' systems export about one population of customers, with the truth.

The files follow the landing contracts in :mod:`schemas.sources` exactly, so the pipeline reads
them as it would read real exports: ``<out>/<source>/<YYYY-MM-DD>/<file>``. Alongside, the ground
truth ``<out>/_truth/identity_truth.csv`` says which person each identity record belongs to; it
is what proves identity resolution, so it never leaks into the source files (ids are random, no
field carries a person id).

The noise is the noise real systems have, not random corruption: names typed at a till or heard
on the phone, nicknames and romanization variants, phone numbers in every format people type,
address spellings, households sharing an address and a phone, people changing their email or
phone, junk values given by customers who would rather not say. Two cross-channel journeys are
planted on purpose because the product exists for them: a complaint that starts on social,
continues in the app chat and ends on the phone under one case id, and a failed web return
followed by a call about it.

Everything comes from one ``random.Random(seed)``, so a seed fixes every byte. Files are written
one day at a time and the population is the only thing kept for the whole run, so 100,000 people
fit comfortably in memory.
"""

from jobs.simulate.landing import SimulationSummary, SourceCounts
from jobs.simulate.run import simulate

__all__ = ["SimulationSummary", "SourceCounts", "simulate"]
