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


def predict(spec: ModelSpec, model, X: pd.DataFrame) -> np.ndarray:
    """Scores: probability of the positive class for classification, the value for regression."""
    return model.predict_proba(X)[:, 1] if spec.task == "classification" else model.predict(X)
