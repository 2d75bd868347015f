"""The curve identity, defined once: which runs form one scaling curve, and how a curve is named.

A curve is the runs that differ only in how many processes ran them. Its identity is what the
work is (EXPERIMENT_COLUMNS) plus what a scaling mode holds fixed (SCALE_COLUMN): the per-process
batch for weak scaling, the global batch for strong scaling. The scaling tables, the plots, the
communication model and `compare` all group by `curve_keys`, so they can never disagree about
which runs may be pooled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EXPERIMENT_COLUMNS = ["workload", "engine", "device"]
"""What the work is. The experiments issue widens this to every field that changes work per sample."""
SCALE_COLUMN = {"weak": "batch_size", "strong": "global_batch_size"}
POINT_KEYS = ["num_nodes", "procs_per_node", "world_size"]
"""Where on a curve a run sits."""
MODES = tuple(SCALE_COLUMN)


def curve_keys(mode: str) -> list[str]:
    if mode not in SCALE_COLUMN:
        raise ValueError(f"mode {mode!r} is not one of: {', '.join(MODES)}")
    return [*EXPERIMENT_COLUMNS, SCALE_COLUMN[mode]]


def point_keys(mode: str) -> list[str]:
    """One point of one curve: the runs whose repeats are pooled."""
    return [*curve_keys(mode), *POINT_KEYS]


def curve_label(curve: Mapping[str, Any], mode: str, without: tuple[str, ...] = ()) -> str:
    """A curve's name for legends, e.g. 'cnn, ddp, cpu, batch/proc 32' (columns in `without` left out,
    where a plot's title already says them)."""
    names = {"batch_size": "batch/proc", "global_batch_size": "global batch"}
    parts = [f"{names[key]} {curve[key]}" if key in names else str(curve[key])
             for key in curve_keys(mode) if key not in without]
    return ", ".join(parts)
