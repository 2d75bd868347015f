"""`hpcbench compare`: per-configuration throughput differences between two sets of records, for gating."""

from __future__ import annotations

import pandas as pd

from hpcbench.analysis.curves import point_keys

KEYS = point_keys("weak")
"""A configuration is one point of one weak-scaling curve: the same identity the report uses."""


def parse_tolerance(text: str) -> float:
    """'5%' or '0.05' -> 0.05."""
    value = float(text[:-1]) / 100 if text.strip().endswith("%") else float(text)
    if not 0 <= value < 1:
        raise ValueError(f"tolerance {text!r} must be between 0% and 100%")
    return value


def compare(baseline: pd.DataFrame, new: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Median samples/s per configuration in both sets; `regressed` where new < baseline x (1 - tolerance)."""
    def medians(runs: pd.DataFrame) -> pd.Series:
        return runs.groupby(KEYS)["samples_per_s"].median()

    joined = pd.concat({"baseline_samples_per_s": medians(baseline), "new_samples_per_s": medians(new)}, axis=1)
    joined = joined.dropna().reset_index()
    joined["change"] = joined["new_samples_per_s"] / joined["baseline_samples_per_s"] - 1
    joined["regressed"] = joined["change"] < -tolerance
    return joined
