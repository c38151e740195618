"""What every judge of a model shares: how labelled rows split in time, and what a model scores on rows.

Training, promotion, monitoring, scoring and the benchmarks share these, so none of them reaches into another's
module for them: the test set is the newest as-of date whose labels have matured, training uses only as-of dates
at least the spec's gap before it, and a model's score is the positive class's probability (classification) or
the predicted value (regression).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from mlscale.specs import ModelSpec


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    test_as_of: pd.Timestamp


class NotEnoughData(RuntimeError):
    """The matured history is too short for the spec's split."""


def train_cutoff(test_as_of, gap_days: int):
    """The last training as-of date for a test as-of date (a date or a pandas Timestamp, returned as the same)."""
    return test_as_of - timedelta(days=gap_days)


def time_split(frame: pd.DataFrame, gap_days: int) -> Split:
    """Test on the latest matured as-of date; train on as-of dates at least `gap_days` before it."""
    if frame.empty:
        raise NotEnoughData("no rows with a matured label: the warehouse needs more history")
    test_as_of = frame["as_of_date"].max()
    cutoff = train_cutoff(test_as_of, gap_days)
    train = frame[frame["as_of_date"] <= cutoff]
    if train.empty:
        raise NotEnoughData(
            f"no training as-of date on or before {cutoff.date()} (test as-of {test_as_of.date()}, gap {gap_days} days)"
        )
    return Split(train=train, test=frame[frame["as_of_date"] == test_as_of], test_as_of=test_as_of)


# Rows predicted at a time. A boosted model adds up its trees one at a time over every row it is given, so rows
# past what the CPU's caches hold are read from memory once per tree: the churn model's 300 trees predict 500,000
# rows in 5.9 s at once and in 2.5 s in parts of 50,000 (BENCHMARKS.md, *Batch scoring*). Rows are scored
# independently, so the parts give the same scores.
PREDICT_ROWS = 50_000


def predict(spec: ModelSpec, model, X: pd.DataFrame) -> np.ndarray:
    """Scores: probability of the positive class for classification, the value for regression."""
    def score(part: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(part)[:, 1] if spec.task == "classification" else model.predict(part)

    if len(X) <= PREDICT_ROWS:
        return score(X)
    return np.concatenate([score(X.iloc[start:start + PREDICT_ROWS]) for start in range(0, len(X), PREDICT_ROWS)])
