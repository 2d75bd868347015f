"""`hpcbench compare`: per-configuration throughput, new against baseline, with noise taken into account.

A configuration is one point of one curve: the same experiment at the same scale on the same
system. Across systems (`across_systems=True`) the system leaves the key and every row names the
system on each side, so a cross-machine comparison is never mistaken for a regression check.

What is compared are runs when each side has two or more (each run's median over its repeats), else
repeats. Repeats of one run share its processes, its node and its minute, so they agree more than runs
do: on the 2-core test VM, four runs of the same mlp in a row had repeats within +-2.5 % and medians
5,167 to 5,617 samples/s (+8.7 %), and a test over repeats called the same code "faster" three times
out of three. Runs are the unit that carries run-to-run noise; `--seeds 3` (or three runs) per side
gives them. With one run a side the test can see only the noise within a run, and the row says so.

A point gets the ratio of medians, new over baseline, with a 95 % bootstrap interval, and a two-sided
Welch test on log throughput, over those units. Its verdict:
- `slower` / `faster`: significant (p < alpha) and beyond the tolerance; only `slower` fails a gate;
- `within tolerance`: significant but smaller than the tolerance;
- `within noise`: not significant, whatever the ratio (the runs, or repeats, disagree as much as the sides do);
- `too few repeats`: a side has one run of one repeat, so no test is possible; the ratio is shown, no verdict.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpcbench.analysis.curves import POINT_KEYS, SYSTEM_COLUMNS
from hpcbench.analysis.history import version_changes
from hpcbench.analysis.load import VERSION_COLUMNS
from hpcbench.analysis.stats import bootstrap_ratio_ci, log_welch_p_value

KEYS = ["system_name", "system_id", "experiment_id", "experiment_label", "scaling", *POINT_KEYS]
"""A configuration: the curve identity (system, experiment; the experiment holds the batch and
the scaling mode) and the point on it."""
DEFAULT_ALPHA = 0.05


def parse_tolerance(text: str) -> float:
    """'5%' or '0.05' -> 0.05."""
    value = float(text[:-1]) / 100 if text.strip().endswith("%") else float(text)
    if not 0 <= value < 1:
        raise ValueError(f"tolerance {text!r} must be between 0% and 100%")
    return value


def _per_run(rates_column, headlines) -> list[list[float]]:
    """Each run's samples/s per repeat; a run that recorded none counts once, at its headline rate."""
    found = []
    for rates, headline in zip(rates_column, headlines):
        listed = [float(r) for r in rates if r > 0] if isinstance(rates, (list, tuple, np.ndarray)) else []
        found.append(listed or [float(headline)])
    return found


def repeats_of(runs: pd.DataFrame) -> list[float]:
    """Every repeat's samples/s of these runs (see _per_run)."""
    return [rate for rates in _per_run(runs["samples_per_s_repeats"], runs["samples_per_s"]) for rate in rates]


def verdict(ratio: float, p_value: float, tolerance: float, alpha: float) -> str:
    if np.isnan(p_value):
        return "too few repeats"
    if p_value >= alpha:
        return "within noise"
    if ratio < 1 - tolerance:
        return "slower"
    return "faster" if ratio > 1 + tolerance else "within tolerance"


def compare(baseline: pd.DataFrame, new: pd.DataFrame, tolerance: float, across_systems: bool = False,
            alpha: float = DEFAULT_ALPHA) -> pd.DataFrame:
    """A row per configuration in both sets: medians, ratio and interval, p-value, verdict, what software differs."""
    keys = [k for k in KEYS if not (across_systems and k in SYSTEM_COLUMNS)]
    sides = {name: _Side(runs, keys) for name, runs in (("baseline", baseline), ("new", new))}
    rows = []
    for key in sorted(set(sides["baseline"].groups) & set(sides["new"].groups), key=str):
        before, after = sides["baseline"].at(key), sides["new"].at(key)
        unit = "runs" if len(before.runs) >= 2 and len(after.runs) >= 2 else "repeats"
        a, b = (before.medians(), after.medians()) if unit == "runs" else (before.repeats(), after.repeats())
        ratio = float(np.median(b) / np.median(a))
        low, high = bootstrap_ratio_ci(a, b)
        p_value = log_welch_p_value(a, b)
        row = dict(zip(keys, key, strict=True)) | {
            "baseline_samples_per_s": float(np.median(a)), "new_samples_per_s": float(np.median(b)),
            "change": ratio - 1, "ci95_low": low - 1, "ci95_high": high - 1, "p_value": p_value,
            "tested": f"{len(a)}/{len(b)} {unit}" + (" (a side has 1 run)" if unit == "repeats" else ""),
            "verdict": verdict(ratio, p_value, tolerance, alpha),
            "software_differs": version_changes(before.versions(), after.versions()) or "-"}
        if across_systems:
            row |= {"baseline_system": before.systems(), "new_system": after.systems()}
        rows.append(row)
    columns = [*keys, "baseline_samples_per_s", "new_samples_per_s", "change", "ci95_low", "ci95_high", "p_value",
               "tested", "verdict", "software_differs"]
    table = pd.DataFrame(rows, columns=columns + (["baseline_system", "new_system"] if across_systems else []))
    table["regressed"] = table["verdict"] == "slower"
    return table


class _Side:
    """One side's runs by configuration, as plain lists: a comparison of thousands of configurations
    would spend its time building a DataFrame per group."""

    def __init__(self, runs: pd.DataFrame, keys: list[str]) -> None:
        self.groups = runs.groupby(keys, dropna=False, sort=False).indices if len(runs) else {}
        self.per_run = _per_run(runs["samples_per_s_repeats"], runs["samples_per_s"])
        self.version_values = {name: runs[name].tolist() for name in VERSION_COLUMNS if name in runs}
        self.names = runs["system_name"].tolist()

    def at(self, key) -> _Group:
        return _Group(self, list(self.groups[key]))


@dataclass(frozen=True)
class _Group:
    """One configuration's runs on one side: positions into that side's lists."""

    side: _Side
    runs: list[int]

    def repeats(self) -> list[float]:
        return [rate for i in self.runs for rate in self.side.per_run[i]]

    def medians(self) -> list[float]:
        return [float(statistics.median(self.side.per_run[i])) for i in self.runs]

    def versions(self) -> pd.Series:
        """Per version column, the values on this side ('a/b' when runs differ)."""
        return pd.Series({name: "/".join(sorted({str(values[i]) for i in self.runs if values[i] is not None
                                                 and values[i] == values[i]})) or None
                          for name, values in self.side.version_values.items()})

    def systems(self) -> str:
        return ", ".join(sorted({self.side.names[i] for i in self.runs}))
