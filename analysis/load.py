"""Records from files and folders into one DataFrame row per run."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from hpcbench import records

COLUMNS = {
    "run_id": ("run_id",),
    "status": ("status",),
    "workload": ("config", "workload"),
    "engine": ("config", "engine"),
    "device": ("config", "device"),
    "batch_size": ("config", "batch_size"),
    "num_threads": ("config", "num_threads"),
    "world_size": ("provenance", "world_size"),
    "num_nodes": ("provenance", "num_nodes"),
    "samples_per_s": ("metrics", "samples_per_s"),
    "samples_per_s_per_proc": ("metrics", "samples_per_s_per_proc"),
    "step_time_s_median": ("metrics", "step_time_s_median"),
    "step_time_s_p95": ("metrics", "step_time_s_p95"),
}


def record_files(paths: Iterable[str | Path]) -> list[Path]:
    found: list[Path] = []
    for path in map(Path, paths):
        found += sorted(path.glob("*.json")) if path.is_dir() else [path]
    return found


def load_records(paths: Iterable[str | Path], *, include_failed: bool = False) -> pd.DataFrame:
    """One row per record; files that are not readable records are skipped with one warning each."""
    rows = []
    for path in record_files(paths):
        try:
            record = records.load(path)
        except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
            warnings.warn(f"skipping {path}: {exc}", stacklevel=2)
            continue
        if record["status"] != "ok" and not include_failed:
            continue
        rows.append({column: _dig(record, keys) for column, keys in COLUMNS.items()} | {"path": str(path)})
    return pd.DataFrame(rows, columns=[*COLUMNS, "path"])


def _dig(record: dict, keys: tuple[str, ...]):
    value = record
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
