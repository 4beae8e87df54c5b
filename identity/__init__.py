"""Identity resolution: who is who across POS, web, app, call center and social records.

The public surface is three jobs, each ``(spark, settings, ...) -> summary`` like every other
omnicdp job: train the linkage model, resolve identities into the gold tables, and evaluate a
resolution against known truth.
"""

from identity.evaluate import EvaluationResult, evaluate
from identity.resolve import ResolveSummary, resolve_identities
from identity.train import TrainSummary, train_model

__all__ = [
    "EvaluationResult",
    "ResolveSummary",
    "TrainSummary",
    "evaluate",
    "resolve_identities",
    "train_model",
]
