"""`hpcbench compare`: per-configuration throughput differences between two sets of records, for gating.

A configuration is one point of one curve: the same experiment at the same scale on the same
system. Across systems (`across_systems=True`) the system leaves the key and every row names the
system on each side, so a cross-machine comparison is never mistaken for a regression check.
"""

from __future__ import annotations

import pandas as pd

from hpcbench.analysis.curves import POINT_KEYS, SYSTEM_COLUMNS

KEYS = ["system_name", "system_id", "experiment_id", "experiment_label", "scaling", *POINT_KEYS]
"""A configuration: the curve identity (system, experiment; the experiment holds the batch and
the scaling mode) and the point on it."""


def parse_tolerance(text: str) -> float:
    """'5%' or '0.05' -> 0.05."""
    value = float(text[:-1]) / 100 if text.strip().endswith("%") else float(text)
    if not 0 <= value < 1:
        raise ValueError(f"tolerance {text!r} must be between 0% and 100%")
    return value


def compare(baseline: pd.DataFrame, new: pd.DataFrame, tolerance: float, across_systems: bool = False) -> pd.DataFrame:
    """Median samples/s per configuration in both sets; `regressed` where new < baseline x (1 - tolerance)."""
    keys = [k for k in KEYS if not (across_systems and k in SYSTEM_COLUMNS)]

    def medians(runs: pd.DataFrame, side: str) -> pd.DataFrame:
        grouped = runs.groupby(keys, dropna=False)
        found = grouped["samples_per_s"].median().rename(f"{side}_samples_per_s").to_frame()
        if across_systems:
            found[f"{side}_system"] = grouped["system_name"].agg(lambda names: ", ".join(sorted(set(names))))
        return found

    joined = pd.concat([medians(baseline, "baseline"), medians(new, "new")], axis=1, join="inner").reset_index()
    joined["change"] = joined["new_samples_per_s"] / joined["baseline_samples_per_s"] - 1
    joined["regressed"] = joined["change"] < -tolerance
    return joined
