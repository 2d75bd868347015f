"""What GPU clusters compare: precision side by side, peak memory, achieved TFLOP/s, MFU against
the datasheet peak (from the record) and against this device's measured one (`hpcbench peak`),
and energy per sample. Every number comes from a record; a null stays null, with its reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hpcbench.analysis.curves import SYSTEM_COLUMNS

PEAK_MATCH = ["system_name", "cpu_model", "gpu_model", "device", "precision"]
"""A measured peak belongs to runs on the same named system and processor, in the same precision."""
PEAK_COLUMNS = [*PEAK_MATCH, "achievable_tflops", "run_id"]
EFFICIENCY_COLUMNS = [*SYSTEM_COLUMNS, "experiment_label", "engine", "precision", "channels_last", "compile", "world_size",
                      "samples_per_s", "tokens_per_s", "peak_memory_gib", "tflops_per_device", "mfu", "mfu_peak_tflops",
                      "achievable_tflops", "mfu_measured_peak", "energy_j_per_sample", "power_w_per_counter",
                      "compile_s", "note"]
SIDE_BY_SIDE = ["samples_per_s", "tokens_per_s", "peak_memory_gib", "mfu", "energy_j_per_sample"]
SAME_WORK = [*SYSTEM_COLUMNS, "workload", "engine", "precision", "device", "batch_size", "channels_last", "compile",
             "world_size"]
"""Runs that differ only in the one column a side-by-side table spreads (precision, engine)."""


def peaks_frame(found: list[tuple[Path, dict]]) -> pd.DataFrame:
    """One row per `hpcbench peak` record; the best measured rate per system, processor and precision."""
    rows = []
    for _, record in found:
        if record.get("kind") != "peak" or record["status"] != "ok":
            continue
        prov, config = record["provenance"], record["config"]
        rows.append({"system_name": record["system"]["name"], "cpu_model": prov.get("cpu_model"),
                     "gpu_model": prov.get("gpu_model") if config.get("device") == "cuda" else None,
                     "device": config.get("device"), "precision": config.get("precision"),
                     "achievable_tflops": record["metrics"]["achievable_tflops"], "run_id": record["run_id"]})
    frame = pd.DataFrame(rows, columns=PEAK_COLUMNS)
    if frame.empty:
        return frame
    best = frame.groupby(PEAK_MATCH, dropna=False)["achievable_tflops"].idxmax()
    return frame.loc[best].reset_index(drop=True)


def efficiency_table(runs: pd.DataFrame, peaks: pd.DataFrame) -> pd.DataFrame:
    """One row per run: memory, TFLOP/s, MFU against both peaks, energy; `note` says why a value is missing."""
    if runs.empty:
        return pd.DataFrame(columns=EFFICIENCY_COLUMNS)
    table = runs.assign(gpu_model=runs["gpu_model"].where(runs["device"] == "cuda"))
    if not peaks.empty:
        table = table.merge(peaks[[*PEAK_MATCH, "achievable_tflops"]], on=PEAK_MATCH, how="left")
    else:
        table = table.assign(achievable_tflops=float("nan"))
    table["mfu_measured_peak"] = table["tflops_per_device"] / table["achievable_tflops"]
    table["tokens_per_s"] = with_tokens(table)["tokens_per_s"]
    energy_note = table["energy_note"].where(table["energy_j_per_sample"].isna()).fillna("")
    notes = table["mfu_note"].fillna("") + energy_note.map(lambda note: f"; energy: {note}" if note else "")
    table["note"] = notes.str.removeprefix("; ")
    return table[EFFICIENCY_COLUMNS].sort_values([*SYSTEM_COLUMNS, "experiment_label", "world_size"],
                                                  ignore_index=True)


def with_tokens(runs: pd.DataFrame) -> pd.DataFrame:
    """tokens/s beside samples/s for workloads whose sample is a token sequence (null for the others)."""
    per_sample = runs["tokens_per_sample"] if "tokens_per_sample" in runs else float("nan")
    return runs.assign(tokens_per_s=runs["samples_per_s"] * per_sample)


def side_by_side_table(runs: pd.DataFrame, column: str) -> pd.DataFrame:
    """The same work under each value of `column` (precision, engine) side by side, medians over runs:
    throughput (samples and tokens), peak memory per rank, MFU, energy."""
    if runs.empty or runs[column].nunique() < 2:
        return pd.DataFrame()
    keys = [key for key in SAME_WORK if key != column]
    medians = with_tokens(runs).groupby([*keys, column], dropna=False)[SIDE_BY_SIDE].median()
    wide = medians.unstack(column)
    compared = wide["samples_per_s"].notna().sum(axis=1) >= 2  # work measured one way only has no pair
    wide = wide.dropna(axis=1, how="all")
    wide.columns = [f"{metric}_{value}" for metric, value in wide.columns]
    return wide[compared].reset_index()


def precision_table(runs: pd.DataFrame) -> pd.DataFrame:
    return side_by_side_table(runs, "precision")


def engine_table(runs: pd.DataFrame) -> pd.DataFrame:
    return side_by_side_table(runs, "engine")
