"""What GPU clusters compare: precision side by side, peak memory, achieved TFLOP/s, MFU against
the datasheet peak (from the record) and against this device's measured one (`hpcbench peak`),
and energy per sample. Every number comes from a record; a null stays null, with its reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


ENGINE_WORK = [*SYSTEM_COLUMNS, "workload", "work_id", "precision", "device", "batch_size", "world_size"]
"""The same work (the same model, data and per-rank batch) at the same world size, under any engine and layout."""
ENGINE_COLUMNS = [*ENGINE_WORK, "layout", "global_batch_size", "num_runs", "samples_per_s", "tokens_per_s",
                  "peak_memory_gib", "mfu", "bubble_measured", "bubble_analytic", "exposed_comm_share", "collectives",
                  "warning"]


def layout(engine: str, mesh: dict | None, options: dict | None, pipeline: dict | None) -> str:
    """How the ranks share the model, e.g. "tp dp2xtp2", "pp pp2 interleaved-1f1b m4": the engine, its mesh's
    dimensions over 1, its choices (named values and switches that are on), the micro-batches of a pipeline."""
    parts = [engine]
    if isinstance(mesh, dict) and any(size > 1 for size in mesh.values()):
        parts.append("x".join(f"{dim}{size}" for dim, size in mesh.items() if size > 1))
    for name, value in sorted((options or {}).items()):
        if isinstance(value, str) and value != "none":
            parts.append(value)
        elif value is True:
            parts.append(name.replace("_", "-"))
    if isinstance(pipeline, dict):
        parts.append(f"m{pipeline['microbatches']}")
    return " ".join(parts)


def collectives(counters: list | None) -> str | None:
    """One step's counted collectives beside the split's analytic (Megatron) count, where the engine counted."""
    first = counters[0] if isinstance(counters, list) and counters else None
    if not isinstance(first, dict) or "collectives_per_step" not in first:
        return None
    counted, megatron = first["collectives_per_step"] or {}, first.get("megatron_collectives_per_step") or {}
    return ", ".join(f"{kind} {counted.get(kind, 0)} (Megatron {megatron.get(kind, 0)})"
                     for kind in sorted({*counted, *megatron}))


def engine_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The same work at the same world size under each engine and layout (DDP, FSDP, TP, PP, 2D), a row each,
    medians over runs: throughput, memory per rank, the pipeline bubble measured and analytic, exposed
    communication (null where no window without communication exists), collectives per step, and a warning where
    the ranks competed for cores. Only work measured under two or more layouts."""
    if runs.empty:
        return pd.DataFrame(columns=ENGINE_COLUMNS)
    table = with_tokens(runs)
    pipeline = table["pipeline"] if "pipeline" in table else pd.Series(None, index=table.index)
    table = table.assign(
        layout=[layout(e, m, o, p) for e, m, o, p in zip(table["engine"], table.get("mesh", pipeline), table.get(
            "engine_options", pipeline), pipeline)],
        bubble_measured=[p["bubble_measured"] if isinstance(p, dict) else None for p in pipeline],
        bubble_analytic=[p["bubble_analytic"] if isinstance(p, dict) else None for p in pipeline],
        collectives=[collectives(c) for c in table.get("engine_counters_by_rank", pipeline)],
        warning=["; ".join(filter(None, [f"oversubscribed: {o}" if isinstance(o, str) else "",
                                         f"contended: {n}" if c is True else ""])) or None
                 for o, c, n in zip(table.get("oversubscribed", pipeline), table.get("contended", pipeline),
                                    table.get("contended_note", pipeline))])
    numbers = ["global_batch_size", "samples_per_s", "tokens_per_s", "peak_memory_gib", "mfu", "bubble_measured",
               "bubble_analytic", "exposed_comm_share"]
    table[numbers] = table[numbers].apply(pd.to_numeric, errors="coerce")
    groups = table.groupby([*ENGINE_WORK, "layout"], dropna=False)
    rows = groups[numbers].median().join(groups.size().rename("num_runs"))
    rows = rows.join(groups[["collectives", "warning"]].first()).reset_index()
    negative = rows["exposed_comm_share"] < 0  # a window without communication slower than the timed one: noise
    rows.loc[negative, "warning"] = [
        "; ".join(filter(None, [w, f"exposed_comm not measurable here: noise ±{-x:.0%} exceeds it"]))
        for w, x in zip(rows.loc[negative, "warning"].fillna(""), rows.loc[negative, "exposed_comm_share"])]
    rows.loc[negative, "exposed_comm_share"] = np.nan
    layouts = rows.groupby([*ENGINE_WORK], dropna=False)["layout"].transform("nunique")
    return rows[layouts >= 2][ENGINE_COLUMNS].sort_values([*ENGINE_WORK, "layout"], ignore_index=True)


PIPELINE_COLUMNS = ["workload", "world_size", "layout", "stages", "microbatches", "stages_per_rank", "bubble_measured",
                    "bubble_measured_max", "bubble_analytic", "samples_per_s"]


def pipeline_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every pipeline run's bubble, measured (idle share inside the schedule, mean over stages) beside the analytic
    (p-1)/(v*m+p-1): how it shrinks as micro-batches grow, and where the measured one does not."""
    if runs.empty or "pipeline" not in runs:
        return pd.DataFrame(columns=PIPELINE_COLUMNS)
    piped = runs[runs["pipeline"].map(lambda p: isinstance(p, dict))]
    rows = [{"workload": run.workload, "world_size": run.world_size,
             "layout": layout(run.engine, run.mesh, run.engine_options, run.pipeline),
             **{key: run.pipeline[key] for key in ("stages", "microbatches", "stages_per_rank", "bubble_measured",
                                                   "bubble_measured_max", "bubble_analytic")},
             "samples_per_s": run.samples_per_s}
            for run in piped.itertuples()]
    return pd.DataFrame(rows, columns=PIPELINE_COLUMNS).sort_values(["stages", "stages_per_rank", "microbatches"],
                                                                    ignore_index=True)


STAGE_COLUMNS = [*SYSTEM_COLUMNS, "workload", "world_size", "layout", "rank", "stages_on_rank", "step_time_s_median", "peak_memory_gib",
                 "bubble_measured"]


def stage_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every rank of each run that cuts the model (tensor or pipeline parallel), not only rank 0: its median step,
    peak memory and (pipeline) measured bubble, so an unbalanced stage shows."""
    if runs.empty or "mesh" not in runs:
        return pd.DataFrame(columns=STAGE_COLUMNS)
    rows = []
    for run in runs.itertuples():
        mesh = run.mesh if isinstance(run.mesh, dict) else {}
        if not any(size > 1 for dim, size in mesh.items() if dim != "dp"):
            continue
        pipeline = run.pipeline if isinstance(run.pipeline, dict) else {}
        bubbles = pipeline.get("bubble_measured_by_rank") or []
        counters = run.engine_counters_by_rank if isinstance(run.engine_counters_by_rank, list) else []
        for i, facts in enumerate(run.rank_steps or []):
            stage_ids = (counters[i] or {}).get("stage_ids") if i < len(counters) else None
            rows.append({"system_name": run.system_name, "system_id": run.system_id, "workload": run.workload,
                         "world_size": run.world_size,
                         "layout": layout(run.engine, mesh, run.engine_options, pipeline or None), "rank": facts["rank"],
                         "stages_on_rank": ",".join(map(str, stage_ids)) if stage_ids else None,
                         "step_time_s_median": facts["step_time_s_median"], "peak_memory_gib": facts["peak_memory_gib"],
                         "bubble_measured": bubbles[i] if i < len(bubbles) else None})
    return pd.DataFrame(rows, columns=STAGE_COLUMNS)


def schedule_panel(record: dict) -> tuple[str, str, list[list[list]]] | None:
    """A pipeline run's (layout, figure title, each rank's timed actions) from its record; None for any other run."""
    ranks = record.get("ranks") or []
    pipeline = (record.get("metrics") or {}).get("pipeline")
    if not ranks or not pipeline or not all(r.get("pipeline") for r in ranks):
        return None
    config = record["config"]
    name = layout(config["engine"], record["provenance"].get("mesh"), config.get("engine_options"), pipeline)
    title = (f"{config['workload']} {name}: bubble {pipeline['bubble_measured']:.0%} measured, "
             f"{pipeline['bubble_analytic']:.0%} analytic")
    return name, title, [r["pipeline"]["actions_last_repeat"] for r in ranks]
