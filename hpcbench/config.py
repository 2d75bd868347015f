"""Run configuration: one dataclass, resolved and validated before any process starts.

Every field carries its command-line flag and a one-line help in its metadata, so the CLI,
the worker entry point and the launchers share one description of what a run is.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

DEVICES = ("auto", "cpu", "cuda")
ENGINES = ("ddp", "horovod")
COMPRESSIONS = ("none", "fp16")
DATA_SOURCES = ("synthetic", "real")
MAX_TIMEOUT_S = 7 * 24 * 3600
"""A week: longer than any batch allocation, and finite (a timeout of inf or NaN would never fire)."""


class ConfigError(ValueError):
    """Bad input. Names the field and what is allowed; the CLI prints it on one line and exits 2."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field_name = field_name


def _opt(flag: str, help: str, default: Any = None, **kwargs: Any) -> Any:
    return field(default=default, metadata={"flag": flag, "help": help}, **kwargs)


@dataclass(kw_only=True)
class RunConfig:
    """One benchmark run: a workload, an engine, a process count and how to time it."""

    workload: str = _opt("--workload", "reference workload (see `hpcbench list`)", "mlp")
    engine: str = _opt("--engine", f"communication engine: {', '.join(ENGINES)}", "ddp")
    device: str = _opt("--device", f"device: {', '.join(DEVICES)} (auto = cuda when available)", "auto")
    num_procs: int = _opt("--nproc", "processes (ranks) on this node", 1)
    batch_size: int | None = _opt("--batch-size", "samples per process per step (weak scaling); default: the workload's")
    num_steps: int = _opt("--steps", "timed steps per repeat", 20)
    num_warmup_steps: int = _opt("--warmup", "untimed warm-up steps before the first repeat", 5)
    num_repeats: int = _opt("--repeats", "timed repeats (the record keeps each)", 3)
    seed: int = _opt("--seed", "seed for model init and synthetic data", 0)
    data: str = _opt("--data", f"data source: {', '.join(DATA_SOURCES)}", "synthetic")
    data_dir: str | None = _opt("--data-dir", "directory holding the real dataset (torchvision layout)")
    num_data_workers: int = _opt("--data-workers", "DataLoader worker processes per rank for --data real", 0)
    num_threads: int | None = _opt("--threads", "CPU threads per process; default: cores / largest process count")
    timeout_s: float = _opt("--timeout", "collective timeout in seconds; a stuck or dead rank ends the job after it", 120.0)
    out_dir: str = _opt("--out", "folder for run records", "results")
    hvd_compression: str = _opt("--hvd-compression", f"[horovod] gradient compression: {', '.join(COMPRESSIONS)}", "none")
    hvd_fusion_threshold_mb: float | None = _opt("--hvd-fusion-threshold-mb", "[horovod] tensor fusion buffer in MiB (Horovod's default: 128)")
    hvd_cycle_time_ms: float | None = _opt("--hvd-cycle-time-ms", "[horovod] fusion cycle time in ms (Horovod's default: 1)")
    hvd_timeline: str | None = _opt("--hvd-timeline", "[horovod] write Horovod's timeline (Chrome trace) to this file")
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "workload options, resolved"})

    def __post_init__(self) -> None:
        for name in ("workload", "out_dir") + (("data_dir",) if self.data_dir is not None else ()):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(_flag_name(name), f"must be a non-empty string, got {getattr(self, name)!r}")
        if not isinstance(self.options, dict):
            raise ConfigError("options", f"must be a mapping of workload option names to values, got {self.options!r}")
        check_choice("engine", self.engine, ENGINES)
        check_choice("device", self.device, DEVICES)
        check_choice("data", self.data, DATA_SOURCES)
        check_at_least("nproc", self.num_procs, 1)
        if self.batch_size is not None:
            check_at_least("batch-size", self.batch_size, 1)
        check_at_least("steps", self.num_steps, 1)
        check_at_least("warmup", self.num_warmup_steps, 0)
        check_at_least("repeats", self.num_repeats, 1)
        check_at_least("data-workers", self.num_data_workers, 0)
        if self.num_threads is not None:
            check_at_least("threads", self.num_threads, 1)
        is_number = isinstance(self.timeout_s, (int, float)) and not isinstance(self.timeout_s, bool)
        if not is_number or not 0 < self.timeout_s <= MAX_TIMEOUT_S:
            raise ConfigError("timeout", f"must be a number of seconds in (0, {MAX_TIMEOUT_S}], got {self.timeout_s!r}")
        check_choice("hvd-compression", self.hvd_compression, COMPRESSIONS)
        for name, value in (("hvd-fusion-threshold-mb", self.hvd_fusion_threshold_mb), ("hvd-cycle-time-ms", self.hvd_cycle_time_ms)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6):
                raise ConfigError(name, f"must be a positive number, got {value!r}")
        if self.hvd_timeline is not None and (not isinstance(self.hvd_timeline, str) or not self.hvd_timeline):
            raise ConfigError("hvd-timeline", f"must be a file path, got {self.hvd_timeline!r}")
        horovod_set = self.horovod_options() != {"compression": "none", "fusion_threshold_mb": None, "cycle_time_ms": None, "timeline": None}
        if horovod_set and self.engine != "horovod":
            raise ConfigError("engine", "the --hvd-* options apply to --engine horovod only")
        if self.data == "real" and not self.data_dir:
            raise ConfigError("data-dir", "required with --data real (a folder in torchvision's layout)")

    def horovod_options(self) -> dict[str, Any]:
        return {"compression": self.hvd_compression, "fusion_threshold_mb": self.hvd_fusion_threshold_mb,
                "cycle_time_ms": self.hvd_cycle_time_ms, "timeline": self.hvd_timeline}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown config key; valid keys: {', '.join(sorted(known))}")
        return cls(**values)


def _flag_name(field_name: str) -> str:
    """How the user typed the field: its flag without dashes (`out_dir` -> `out`)."""
    flag = next(f.metadata.get("flag") for f in dataclasses.fields(RunConfig) if f.name == field_name)
    return flag.lstrip("-") if flag else field_name


def flag_fields() -> list[dataclasses.Field]:
    """The RunConfig fields that have a command-line flag, in declaration order."""
    return [f for f in dataclasses.fields(RunConfig) if "flag" in f.metadata]


def check_choice(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    """Raise a ConfigError naming the field and listing the allowed values."""
    if value not in allowed:
        raise ConfigError(name, f"{value!r} is not one of: {', '.join(map(str, allowed))}")


def check_at_least(name: str, value: int, minimum: int, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        suffix = f" ({why})" if why else ""
        raise ConfigError(name, f"must be an integer >= {minimum}{suffix}, got {value!r}")


def resolve(cfg: RunConfig, *, sweep_max_procs: int | None = None) -> RunConfig:
    """Fill in every default that depends on the workload or the machine, and validate it.

    The record stores the result, so a run can be repeated from its record alone.
    """
    from hpcbench.workloads import get_workload  # imports torch: keep config importable without it

    if cfg.engine == "horovod":
        check_horovod()
    workload = get_workload(cfg.workload)
    options = workload.resolve_options(cfg.options)
    batch_size = cfg.batch_size or workload.default_batch_size
    workload.check_run(workload.options(options), batch_size, cfg.data, cfg.data_dir)
    threads = cfg.num_threads or max(1, (os.cpu_count() or 1) // max(cfg.num_procs, sweep_max_procs or 1))
    return dataclasses.replace(
        cfg,
        device=resolve_device(cfg.device, cfg.num_procs),
        options=options,
        batch_size=batch_size,
        num_threads=threads,
    )


def check_horovod() -> None:
    """--engine horovod needs a Horovod that imports against this torch: say so before any process starts."""
    from hpcbench.engines.horovod import HorovodMissing, import_horovod

    try:
        import_horovod()
    except HorovodMissing as exc:
        raise ConfigError("engine", str(exc)) from None


def resolve_device(device: str, num_procs: int) -> str:
    """'auto' becomes cuda when a GPU is visible; cuda needs one GPU per local process."""
    import torch

    num_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto":
        device = "cuda" if num_gpus else "cpu"
    if device == "cuda" and num_gpus < num_procs:
        raise ConfigError("device", f"cuda needs one GPU per process: {num_procs} processes, {num_gpus} GPU(s) visible")
    return device
