"""Why scaling is lost, per run: the ranks that held the others back, and where a step's time goes.

A rank is named when it was the slowest in more than twice its fair share of the compute-only
window's steps (the runner's `stragglers` metric; at most 75 %, so two ranks can name one). In
the synchronised windows every rank leaves each all-reduce together, so per-step times there
cannot show who was late; the compute-only window runs without that synchronisation.
"""

from __future__ import annotations

import pandas as pd

from hpcbench.analysis.curves import SYSTEM_COLUMNS

STRAGGLER_COLUMNS = [*SYSTEM_COLUMNS, "experiment_label", "world_size", "run_id", "rank", "host", "slowest_share",
                     "fair_share", "wait_s"]


def straggler_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per named straggler of each run (none: an empty table)."""
    rows = []
    for _, run in runs.iterrows():
        facts = run.get("stragglers")
        if not isinstance(facts, dict):
            continue
        hosts = run.get("rank_hosts") or []
        for rank in facts.get("named_ranks") or []:
            rows.append({**{k: run[k] for k in SYSTEM_COLUMNS}, "experiment_label": run["experiment_label"],
                         "world_size": run["world_size"], "run_id": run["run_id"], "rank": rank,
                         "host": hosts[rank] if rank < len(hosts) else None,
                         "slowest_share": facts["slowest_share_by_rank"][rank], "fair_share": 1 / run["world_size"],
                         "wait_s": facts["wait_s_by_rank"][rank]})
    return pd.DataFrame(rows, columns=STRAGGLER_COLUMNS)


def phase_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run timed with --phases: each phase's seconds at its slowest rank, and its share
    (phases named and ordered as the records name them)."""
    rows = []
    for _, run in runs.iterrows():
        phases = run.get("phases")
        if not isinstance(phases, dict):
            continue
        rows.append({**{k: run[k] for k in SYSTEM_COLUMNS}, "experiment_label": run["experiment_label"],
                     "world_size": run["world_size"], "run_id": run["run_id"],
                     **{f"{phase}_s": s for phase, s in phases["seconds"].items()},
                     **{f"{phase}_share": s for phase, s in phases["share"].items()}})
    if not rows:
        return pd.DataFrame(columns=[*SYSTEM_COLUMNS, "experiment_label", "world_size", "run_id"])
    return pd.DataFrame(rows).sort_values(["experiment_label", "world_size"], ignore_index=True)
