"""The curve identity, defined once: which runs form one scaling curve, and how a curve is named.

A curve is one experiment on one system: the runs that differ only in how many processes ran
them. The experiment (records' `experiment` block) is every field that changes the work per
sample, its scaling mode and the batch that mode holds fixed; the system (`system` block) is the
hardware and software. The scaling tables, the plots, the communication model and `compare` all
group by `curve_keys`, so they can never pool different work or different machines.
"""

from __future__ import annotations

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


def runs_in_mode(runs, mode: str):
    """The runs recorded in this scaling mode (a weak run's global batch is not a strong curve's)."""
    return runs[runs["scaling"] == mode]


def legend_labels(labels: list[str]) -> list[str]:
    """Each curve's experiment label without the words every curve of the plot shares (the title,
    the stamp and the tables say those): legends stay short enough not to cover the lines."""
    words = [label.split() for label in labels]
    common = set.intersection(*map(set, words)) if words else set()
    return [" ".join(w for w in label if w not in common) or "measured" for label in words]
