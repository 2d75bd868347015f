"""The curve identity, defined once: which runs form one scaling curve, and how a curve is named.

A curve is one experiment on one system: the runs that differ only in how many processes ran
them. The experiment (records' `experiment` block) is every field that changes the work per
sample, its scaling mode and the batch that mode holds fixed; the system (`system` block) is the
hardware and software. The scaling tables, the plots, the communication model and `compare` all
group by `curve_keys`, so they can never pool different work or different machines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SYSTEM_COLUMNS = ["system_name", "system_id"]
EXPERIMENT_COLUMNS = ["experiment_id", "experiment_label", "workload", "engine", "device"]
"""The id decides; the other columns are the same on every run of an experiment (they describe it)."""
SCALE_COLUMN = {"weak": "batch_size", "strong": "global_batch_size"}
"""What each scaling mode holds fixed along a curve (part of the experiment too)."""
POINT_KEYS = ["num_nodes", "procs_per_node", "world_size"]
"""Where on a curve a run sits."""
MODES = tuple(SCALE_COLUMN)


def curve_keys(mode: str) -> list[str]:
    if mode not in SCALE_COLUMN:
        raise ValueError(f"mode {mode!r} is not one of: {', '.join(MODES)}")
    return [*SYSTEM_COLUMNS, *EXPERIMENT_COLUMNS, SCALE_COLUMN[mode]]


def point_keys(mode: str) -> list[str]:
    """One point of one curve: the runs whose repeats are pooled."""
    return [*curve_keys(mode), *POINT_KEYS]


def runs_in_mode(runs, mode: str):
    """The runs recorded in this scaling mode (a weak run's global batch is not a strong curve's)."""
    return runs[runs["scaling"] == mode]


def curve_label(curve: Mapping[str, Any], with_system: bool = False) -> str:
    """A curve's name for legends: its experiment label, and its system where several are shown."""
    label = str(curve["experiment_label"])
    return f"{label} [{curve['system_name']}]" if with_system else label
