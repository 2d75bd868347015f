"""Records from files and folders into one DataFrame row per run (config, metrics and provenance flattened)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from hpcbench import records
from hpcbench.experiment import hardware_id

COLUMNS = {
    "run_id": ("run_id",),
    "status": ("status",),
    "system_name": ("system", "name"),
    "system_id": ("system", "system_id"),
    "experiment_id": ("experiment", "experiment_id"),
    "experiment_label": ("experiment", "label"),
    "work_id": ("experiment", "work_id"),
    "scaling": ("experiment", "scaling"),
    "workload": ("config", "workload"),
    "engine": ("config", "engine"),
    "device": ("config", "device"),
    "batch_size": ("config", "batch_size"),
    "num_threads": ("config", "num_threads"),
    "world_size": ("provenance", "world_size"),
    "num_nodes": ("provenance", "num_nodes"),
    "backend": ("provenance", "backend"),
    "samples_per_s": ("metrics", "samples_per_s"),
    "samples_per_s_per_proc": ("metrics", "samples_per_s_per_proc"),
    "samples_per_s_repeats": ("metrics", "samples_per_s_repeats"),
    "step_time_s_median": ("metrics", "step_time_s_median"),
    "step_time_s_mean": ("metrics", "step_time_s_mean"),
    "step_time_s_p95": ("metrics", "step_time_s_p95"),
    "compute_step_time_s": ("metrics", "compute_step_time_s"),
    "exposed_comm_s": ("metrics", "exposed_comm_s"),
    "stragglers": ("metrics", "stragglers"),
    "phases": ("metrics", "phases"),
    "global_batch_size": ("metrics", "global_batch_size"),
    "exposed_comm_share": ("metrics", "exposed_comm_share"),
    "breakdown_note": ("metrics", "breakdown_note"),
    "engine_options": ("config", "engine_options"),
    "mesh": ("provenance", "mesh"),
    "pipeline": ("metrics", "pipeline"),
    "engine_counters_by_rank": ("metrics", "engine_counters_by_rank"),
    "oversubscribed": ("metrics", "oversubscribed"),
    "contended": ("metrics", "contended"),
    "contended_note": ("metrics", "contended_note"),
    "others_share": ("metrics", "others_share"),
    "data": ("config", "data"),
    "data_format": ("config", "data_format"),
    "loader_workers": ("config", "num_data_workers"),
    "data_stall_share": ("metrics", "input", "data_stall_share"),
    "data_stall_share_repeats": ("metrics", "input", "data_stall_share_repeats"),
    "input_bound": ("metrics", "input", "input_bound"),
    "input_split": ("metrics", "input", "split"),
    "mode": ("config", "mode"),
    "seed": ("config", "seed"),
    "lr_scaling": ("config", "lr_scaling"),
    "lr_warmup_steps": ("config", "lr_warmup_steps"),
    "quality_metric": ("metrics", "tta", "metric"),
    "target": ("metrics", "tta", "target"),
    "higher_is_better": ("metrics", "tta", "higher_is_better"),
    "reached": ("metrics", "tta", "reached"),
    "time_to_target_s": ("metrics", "tta", "time_to_target_s"),
    "steps_to_target": ("metrics", "tta", "steps_to_target"),
    "epochs_to_target": ("metrics", "tta", "epochs_to_target"),
    "samples_to_target": ("metrics", "tta", "samples_to_target"),
    "best_quality": ("metrics", "tta", "best_quality"),
    "tta_eval_s": ("metrics", "tta", "eval_s"),
    "quality_curve": ("metrics", "tta", "curve"),
    "precision": ("config", "precision"),
    "channels_last": ("config", "channels_last"),
    "compile": ("config", "compile"),
    "compile_s": ("metrics", "compile", "compile_s"),
    "peak_memory_gib": ("metrics", "peak_memory_gib"),
    "peak_memory_kind": ("metrics", "peak_memory_kind"),
    "flops_per_sample": ("workload", "flops_per_sample"),
    "tflops_per_device": ("metrics", "tflops_per_device"),
    "mfu": ("metrics", "mfu"),
    "mfu_peak_tflops": ("metrics", "mfu_peak_tflops"),
    "mfu_note": ("metrics", "mfu_note"),
    "energy_j_per_sample": ("metrics", "energy_j_per_sample"),
    "power_w_per_counter": ("metrics", "power_w_per_counter"),
    "energy_method": ("metrics", "energy_method"),
    "energy_note": ("metrics", "energy_note"),
    "gradient_bytes_per_step": ("workload", "gradient_bytes_per_step"),
    "sample_unit": ("workload", "sample_unit"),
    "tokens_per_sample": ("workload", "tokens_per_sample"),
    "cpu_model": ("provenance", "cpu_model"),
    "cores_per_node": ("system", "cores_per_node"),
    "network": ("system", "network"),
    "memory_gib_per_node": ("system", "memory_gib_per_node"),
    "gpus_per_node": ("system", "gpus_per_node"),
    "gpu_model": ("provenance", "gpu_model"),
    "hostnames": ("provenance", "hostnames"),
    "started": ("provenance", "started"),
}


VERSION_COLUMNS = ["torch", "cuda", "nccl", "mpi", "engine_library", "driver", "python", "hpcbench", "git_sha"]
"""The software a run's numbers depend on, each null where the run did not use it (MPI only under an MPI
engine, a GPU driver only on a GPU; engine_library: the engine's own library, "NAME VERSION", for an engine
that has one beside torch): `history` names the changes between them."""


def versions(record: dict) -> dict[str, str | None]:
    """VERSION_COLUMNS of one record, from its provenance (a record before a field existed gives null)."""
    prov, system = record.get("provenance") or {}, record.get("system") or {}
    found = {name: prov.get(name) for name in VERSION_COLUMNS}
    mpi = prov.get("mpi_library")
    # "Open MPI v4.1.4, package: Debian OpenMPI, ident: ..., repo rev: ..., Oct 2022": its first part names it
    found["mpi"] = str(mpi).splitlines()[0].split(",")[0].strip() if mpi else None
    if found["nccl"] is None:
        found["nccl"] = system.get("nccl")
    engine = (record.get("config") or {}).get("engine")
    library = (system.get("engine_libraries") or {}).get(engine) if isinstance(system.get("engine_libraries"), dict) else None
    found["engine_library"] = f"{engine} {library}" if library else None
    return {name: None if value is None else str(value) for name, value in found.items()}


def record_files(paths: Iterable[str | Path]) -> list[Path]:
    """The record files in files, folders (recursively) and indexes (the files an index lists)."""
    from hpcbench.analysis.index import indexed_files, is_index  # the index reads records with this module

    found: list[Path] = []
    for path in map(Path, paths):
        found += sorted(path.rglob("*.json")) if path.is_dir() else indexed_files(path) if is_index(path) else [path]
    return found


def read_valid(paths: Iterable[str | Path]) -> list[tuple[Path, dict]]:
    """(path, record) for every valid record, of any kind; anything else is skipped with one warning.

    Reports read each file once and split the result by kind (training runs, netbench).
    """
    found = []
    for path in record_files(paths):
        try:
            found.append((path, records.load(path)))
        except (OSError, ValueError) as exc:
            warnings.warn(f"skipping {path}: {exc}", stacklevel=3)
    return found


def run_row(path: Path | str, record: dict) -> dict:
    """One run's columns (COLUMNS, VERSION_COLUMNS, hardware_id), as the frame and the index hold them."""
    return ({column: _dig(record, keys) for column, keys in COLUMNS.items()} | versions(record)
            | {"hardware_id": hardware_id(record.get("system") or {}),
               "rank_hosts": [rank.get("host") for rank in record.get("ranks") or []],
               "rank_steps": [rank_step(rank) for rank in record.get("ranks") or []],
               "compute_step_time_s_half_width": compute_half_width(record), "path": str(path)})


def compute_half_width(record: dict) -> float | None:
    """The compute-only step's uncertainty: the 95 % Student-t half-width of the slowest rank's mean step over the
    window's steps (the window is one, so its steps' spread is all there is). None: no such window, or one step."""
    ranks = [r.get("compute_step_times_s") for r in record.get("ranks") or [] if isinstance(r, dict)]
    if not ranks or not all(isinstance(steps, list) and len(steps) > 1 for steps in ranks):
        return None
    from hpcbench.analysis.stats import t_mean_ci

    low, high = t_mean_ci(max(ranks, key=lambda steps: sum(steps) / len(steps)))
    return (high - low) / 2


def rank_step(rank: dict) -> dict:
    """One rank's median timed step and peak memory (a pipeline's stages differ in both)."""
    steps = sorted(t for repeat in rank.get("step_times_s") or [] for t in repeat)
    peak = rank.get("peak_memory_bytes")
    return {"rank": rank.get("rank"), "step_time_s_median": steps[len(steps) // 2] if steps else None,
            "peak_memory_gib": peak / 2**30 if isinstance(peak, (int, float)) else None}


FRAME_COLUMNS = [*COLUMNS, *VERSION_COLUMNS, "hardware_id", "rank_hosts", "rank_steps", "compute_step_time_s_half_width",
                 "path"]


def runs_frame(found: list[tuple[Path, dict]], *, include_failed: bool = False) -> pd.DataFrame:
    """One row per training run; failed and interrupted runs only on request (they never count)."""
    return frame_from_rows([run_row(path, record) for path, record in found
                            if record.get("kind", "train") == "train" and (record["status"] == "ok" or include_failed)])


def frame_from_rows(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """The runs frame from run_row's rows (or the index's table): every column, older records' defaults filled."""
    frame = rows.reindex(columns=FRAME_COLUMNS) if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=FRAME_COLUMNS)
    frame["num_nodes"] = frame["num_nodes"].fillna(1).astype(int)
    # Runs recorded before --precision, --channels-last and --compile ran fp32, NCHW, eager.
    frame["precision"] = frame["precision"].fillna("fp32")
    frame["mode"] = frame["mode"].fillna("throughput")  # runs recorded before --mode measured throughput
    for column in ("channels_last", "compile"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), False).astype(bool)
    frame["procs_per_node"] = frame["world_size"] // frame["num_nodes"]
    # the throughput's step (timing.WINDOW_STATISTIC), for records written before it was named
    frame["step_time_s_mean"] = frame["step_time_s_mean"].fillna(frame["global_batch_size"] / frame["samples_per_s"])
    return frame


def load_records(paths: Iterable[str | Path], *, include_failed: bool = False) -> pd.DataFrame:
    """Training runs from record files and folders (searched recursively)."""
    return runs_frame(read_valid(paths), include_failed=include_failed)


def _dig(record: dict, keys: tuple[str, ...]):
    value = record
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
