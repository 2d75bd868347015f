"""Synthetic training records for history, compare, check and the index benchmark: runs of one experiment
on one machine whose software and throughput change where a test says (what records would say)."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from hpcbench import records

HARDWARE = {"cpu_model": "Alpha CPU", "cores_per_node": 64, "memory_gib_per_node": 256, "gpu_model": None,
            "gpus_per_node": 0}
START = datetime.datetime(2026, 1, 5, 2, 0, tzinfo=datetime.timezone.utc)


def history_record(run_id: str, started: datetime.datetime, repeats: list[float], *, torch: str = "2.13.0",
                   world_size: int = 1, hidden_size: int = 64, system: str = "alpha", git_sha: str = "1" * 40) -> dict:
    """One ok mlp run: its samples/s per repeat (the headline is their median), this torch and commit."""
    facts = {**HARDWARE, "torch": torch, "cuda": None, "nccl": None, "engine_libraries": {"ddp": None}}
    return records.make_record(
        run_id=run_id, status="ok", reason=None,
        config={"workload": "mlp", "engine": "ddp", "device": "cpu", "batch_size": 16, "num_threads": 1,
                "options": {"hidden_size": hidden_size, "num_layers": 2}, "engine_options": {}, "scaling": "weak"},
        workload={"sample_unit": "sample"},
        metrics={"samples_per_s": float(np.median(repeats)), "samples_per_s_repeats": [float(r) for r in repeats],
                 "global_batch_size": 16 * world_size, "step_time_s_median": 16 * world_size / float(np.median(repeats))},
        ranks=[], provenance={"world_size": world_size, "num_nodes": 1, "hostnames": [f"{system}01"],
                              "system_facts": facts, "cpu_model": HARDWARE["cpu_model"], "torch": torch,
                              "hpcbench": "0.1.0", "git_sha": git_sha, "python": "3.11.7",
                              "started": started.isoformat(), "ended": started.isoformat()},
    )


def write_series(folder: Path, levels: list[float], torches: list[str], *, noise: float = 0.03, seed: int = 0,
                 repeats: int = 3, prefix: str = "run", **fields) -> list[Path]:
    """A run per level, a day apart (torch version per run), each with `repeats` repeats of
    multiplicative Gaussian noise of relative sigma `noise`; one file per run under `folder`."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (level, torch) in enumerate(zip(levels, torches, strict=True)):
        run_id = f"{prefix}{i:05d}"
        run_level = level * (1 + noise * rng.standard_normal())  # the run-to-run noise
        rates = run_level * (1 + noise / 3 * rng.standard_normal(repeats))  # repeats agree more than runs do
        path = folder / f"mlp_ddp_1p_{run_id}.json"
        records.write_atomic(path, history_record(run_id, START + datetime.timedelta(days=i), rates.tolist(),
                                                  torch=torch, **fields))
        written.append(path)
    return written
