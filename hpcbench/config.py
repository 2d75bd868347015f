"""Run configuration: one dataclass, resolved and validated before any process starts.

Every field carries its command-line flag and a one-line help in its metadata, so the CLI,
the worker entry point and the launchers share one description of what a run is. What the
workload and the engine add (their own options, defaults and checks) is theirs: `options` and
`engine_options` hold it here, and `hpcbench.resolve` fills it in from the plug-ins.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hpcbench.errors import ConfigError, check_at_least, check_bool, check_choice, check_in_range

DEVICES = ("auto", "cpu", "cuda")
DATA_SOURCES = ("synthetic", "real", "bundled", "files")
"""synthetic: one generated batch; real: a dataset from --data-dir; bundled: real data shipped inside an installed
package (scikit-learn's digits, CPython's pydoc text), so a run needs no download; files: image files from --data-dir
in a format people train from (hpcbench.datafiles: JPEG folders or tar shards), fetched and decoded every step."""
DATA_FORMATS = ("jpeg-folder", "tar-shards")
"""throughput: timed windows of a fixed number of steps; tta: train until a held-out quality target (time to accuracy)."""
LR_SCALINGS = ("none", "linear", "sqrt")
"""How the learning rate grows with the global batch (Goyal et al. 2017: linear, with a gradual warm-up)."""
TTA_FIELDS = ("target", "max_epochs", "max_time_s", "eval_every")
SCALINGS = ("weak", "strong")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
"""fp32: IEEE fp32 everywhere (TF32 off, also cuDNN's); tf32: TF32 tensor-core matmuls and convolutions;
bf16, fp16: autocast around forward and loss (fp16 with a gradient scaler)."""
CUDA_ONLY_PRECISIONS = ("tf32", "fp16")
MAX_TIMEOUT_S = 7 * 24 * 3600
TTA_DEFAULT_MAX_TIME_S = 1800.0
"""Half an hour: a time-to-accuracy run that has not reached its target by then says so."""
"""A week: longer than any batch allocation, and finite (a timeout of inf or NaN would never fire)."""

__all__ = ["ConfigError", "RunConfig", "check_at_least", "check_choice", "flag_fields", "CUDA_ONLY_PRECISIONS", "DEVICES",
           "MAX_TIMEOUT_S", "PRECISIONS"]


AUTO = "auto"
AUTO_REPEATS_WIDTH = 0.02
"""--repeats auto's default target: the 95 % interval of the mean throughput over repeats within ± this share, finer
than the effects the tables compare (a few per cent). cnn's windows here reach it in a few repeats; 2-process mlp's
0.5 s windows vary by 7 % (cv) on this quiet 2-core VM and need the budget."""
AUTO_REPEATS_BUDGET_S = 60.0
"""... or when the timed windows have taken this long: a noisy machine may never settle, and says so."""
AUTO_REPEATS_MIN, AUTO_REPEATS_MAX = 3, 50
"""An interval needs a few repeats; the cap keeps a window of a few milliseconds from repeating without end."""


def _opt(flag: str, help: str, default: Any = None, **kwargs: Any) -> Any:
    return field(default=default, metadata={"flag": flag, "help": help}, **kwargs)


@dataclass(kw_only=True)
class RunConfig:
    """One benchmark run: a workload, an engine, a process count and how to time it."""

    workload: str = _opt("--workload", "reference workload (see `hpcbench list`)", "mlp")
    engine: str = _opt("--engine", "communication engine (see `hpcbench list engines`)", "ddp")
    device: str = _opt("--device", f"device: {', '.join(DEVICES)} (auto = cuda when available)", "auto")
    num_procs: int = _opt("--nproc", "processes (ranks) on this node", 1)
    batch_size: int | None = _opt("--batch-size", "samples per process per step (weak scaling); default: the workload's")
    num_steps: int = _opt("--steps", "timed steps per repeat", 20)
    num_warmup_steps: int = _opt("--warmup", "untimed warm-up steps before the first repeat", 5)
    num_repeats: int | str = _opt("--repeats", "timed repeats (the record keeps each), or auto: repeat until the "
                                  "throughput's 95 % interval is within --repeats-width or --repeats-budget s of timed "
                                  f"windows have passed ({AUTO_REPEATS_MIN}..{AUTO_REPEATS_MAX} repeats)", 3)
    repeats_width: float | None = _opt("--repeats-width", "with --repeats auto: the 95 % interval's half-width to "
                                       f"reach, a share of the throughput (default {AUTO_REPEATS_WIDTH:g})")
    repeats_budget_s: float | None = _opt("--repeats-budget", "with --repeats auto: seconds of timed windows after "
                                          f"which it stops, reached or not (default {AUTO_REPEATS_BUDGET_S:g})")
    seed: int = _opt("--seed", "seed for model init and synthetic data", 0)
    data: str | None = _opt("--data", f"data source: {', '.join(DATA_SOURCES)} (default: synthetic; with --mode tta the "
                            "workload's held-out data, bundled where it has some)")
    data_dir: str | None = _opt("--data-dir", "directory holding the dataset (--data real: torchvision's layout; "
                                "--data files: `hpcbench data make`'s)")
    data_format: str | None = _opt("--data-format", f"with --data files: {', '.join(DATA_FORMATS)} (default: what "
                                   "--data-dir holds; given, it is checked)")
    num_data_workers: int = _opt("--loader-workers", "DataLoader worker processes per rank (--data real, files)", 0)
    prefetch_factor: int | None = _opt("--prefetch-factor", "batches each loader worker keeps ready (needs "
                                       "--loader-workers >= 1; default: torch's, 2)")
    pin_memory: bool = _opt("--pin-memory", "page-locked host batches, copied to the GPU asynchronously (--device cuda, "
                            "--data real or files)", False)
    num_threads: int | None = _opt("--threads", "CPU threads per process; default: cores / largest process count")
    timeout_s: float = _opt("--timeout", "collective timeout in seconds; a stuck or dead rank ends the job after it", 120.0)
    out_dir: str = _opt("--out", "folder for run records", "results")
    scaling: str = _opt("--scaling", "weak: fixed batch per process; strong: fixed --global-batch-size, split over the "
                        "processes", "weak")
    global_batch_size: int | None = _opt("--global-batch-size", "with --scaling strong: samples per step over all processes")
    breakdown: bool = _opt("--breakdown", "after the timed repeats, time one more window of steps without gradient "
                           "synchronisation: compute-only step time, exposed communication, stragglers "
                           "(--no-breakdown skips it)", True)
    phases: bool = _opt("--phases", "time one more window with a device sync between data, forward, backward and "
                        "optimizer step: seconds and shares per phase (the syncs perturb overlap, hence its own window)",
                        False)
    precision: str = _opt("--precision", f"arithmetic: {', '.join(PRECISIONS)} (tf32 and fp16 on cuda only; bf16 and fp16 "
                          "autocast forward and loss, fp16 with a gradient scaler)", "fp32")
    channels_last: bool = _opt("--channels-last", "NHWC memory format for the model and its image batches (image "
                               "workloads)", False)
    compile: bool = _opt("--compile", "torch.compile the model; compiling happens in warm-up (extended until nothing "
                         "new compiles) and its seconds are recorded as compile_s, outside every timed window", False)
    mode: str = _opt("--mode", "what is measured, a run mode (tta: train until the workload's held-out quality target "
                     "or a budget; time, steps and samples to target)", "throughput")
    target: float | None = _opt("--target", "with --mode tta: the held-out quality to reach (default: the workload's "
                                "for its data; `hpcbench list` shows them)")
    max_epochs: int | None = _opt("--max-epochs", "with --mode tta: stop after this many epochs without reaching the "
                                  "target (no epoch limit by default)")
    max_time_s: float | None = _opt("--max-time", "with --mode tta: stop after this many seconds without reaching the "
                                    f"target (default: {TTA_DEFAULT_MAX_TIME_S:.0f})")
    eval_every: int | None = _opt("--eval-every", "with --mode tta: training steps between held-out evaluations "
                                  "(default: one epoch; the workload's cadence where it has no epochs)")
    lr_scaling: str = _opt("--lr-scaling", f"learning rate x k for a global batch k times the 1-process one: "
                           f"{', '.join(LR_SCALINGS)} (k = processes under weak scaling, 1 under strong)", "none")
    lr_warmup_steps: int = _opt("--lr-warmup-steps", "steps over which the learning rate rises linearly from the "
                                "1-process rate to the scaled one (Goyal et al.'s gradual warm-up)", 0)
    system: str | None = _opt("--system", "name of the machine or cluster in reports (default: the profile's `system`, "
                              "else the host name without domain and trailing digits)")
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "workload options, resolved"})
    engine_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "engine options, resolved"})

    def __post_init__(self) -> None:
        optional = tuple(name for name in ("data_dir", "system") if getattr(self, name) is not None)
        for name in ("workload", "engine", "mode", "out_dir") + optional:
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(_flag_name(name), f"must be a non-empty string, got {getattr(self, name)!r}")
        for name in ("options", "engine_options"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(name, f"must be a mapping of option names to values, got {getattr(self, name)!r}")
        check_choice("device", self.device, DEVICES)
        if self.data is not None:
            check_choice("data", self.data, DATA_SOURCES)
        check_choice("lr-scaling", self.lr_scaling, LR_SCALINGS)
        check_at_least("lr-warmup-steps", self.lr_warmup_steps, 0)
        self._check_tta_fields()
        check_choice("scaling", self.scaling, SCALINGS)
        if self.global_batch_size is not None:
            check_at_least("global-batch-size", self.global_batch_size, 1)
            if self.scaling != "strong":
                raise ConfigError("global-batch-size", "applies to --scaling strong only (weak scaling fixes --batch-size)")
        elif self.scaling == "strong":
            raise ConfigError("global-batch-size", "required with --scaling strong (samples per step over all processes)")
        check_at_least("nproc", self.num_procs, 1)
        if self.batch_size is not None:
            check_at_least("batch-size", self.batch_size, 1)
        check_choice("precision", self.precision, PRECISIONS)
        for name in ("breakdown", "phases", "channels_last", "compile"):
            check_bool(_flag_name(name), getattr(self, name))
        check_at_least("seed", self.seed, 0)
        check_at_least("steps", self.num_steps, 1)
        check_at_least("warmup", self.num_warmup_steps, 0)
        if self.num_repeats != AUTO:
            check_at_least("repeats", self.num_repeats, 1, "or auto")
        check_at_least("loader-workers", self.num_data_workers, 0)
        self._check_loader_fields()
        if self.num_threads is not None:
            check_at_least("threads", self.num_threads, 1)
        check_in_range("timeout", self.timeout_s, 0, MAX_TIMEOUT_S, "seconds")
        for flag, value, high, unit in (("repeats-width", self.repeats_width, 1, ""),
                                        ("repeats-budget", self.repeats_budget_s, MAX_TIMEOUT_S, "seconds")):
            if value is not None:
                check_in_range(flag, value, 0, high, unit)
                if self.num_repeats != AUTO:
                    raise ConfigError(flag, "applies to --repeats auto only")
        if self.data == "real" and not self.data_dir:
            raise ConfigError("data-dir", "required with --data real (a folder in torchvision's layout)")
        if self.data == "files" and not self.data_dir:
            raise ConfigError("data-dir", "required with --data files (a folder `hpcbench data make` wrote)")
        if self.data_dir and self.data not in ("real", "files"):
            raise ConfigError("data-dir", f"applies to --data real or --data files only (this run's data: "
                                          f"{self.data or 'the default, synthetic'}); add one of them or drop --data-dir")

    @property
    def planned_repeats(self) -> int:
        """The timed repeats at most: the count given, or auto's cap."""
        return AUTO_REPEATS_MAX if self.num_repeats == AUTO else self.num_repeats

    def _check_loader_fields(self) -> None:
        """The input pipeline's settings apply to data read through a DataLoader only, and to each other."""
        if self.data_format is not None:
            check_choice("data-format", self.data_format, DATA_FORMATS)
            if self.data != "files":
                raise ConfigError("data-format", "applies to --data files only")
        if self.prefetch_factor is not None:
            check_at_least("prefetch-factor", self.prefetch_factor, 1)
            if self.num_data_workers == 0:
                raise ConfigError("prefetch-factor", "needs --loader-workers >= 1 (without workers the step loads "
                                  "its own batch, nothing is prefetched)")
        check_bool("pin-memory", self.pin_memory)
        loaded = self.data in ("real", "files")
        for name, given in (("loader-workers", self.num_data_workers > 0), ("pin-memory", self.pin_memory)):
            if given and self.data is not None and not loaded:
                raise ConfigError(name, f"applies to --data real or files, not {self.data} (its batches never pass "
                                  "through a DataLoader)")
        if self.pin_memory and self.device == "cpu":
            raise ConfigError("pin-memory", "applies to --device cuda only (it speeds host-to-GPU copies)")

    def _check_tta_fields(self) -> None:
        given = [name for name in TTA_FIELDS if getattr(self, name) is not None]
        if self.mode != "tta" and given:
            raise ConfigError(_flag_name(given[0]), "applies to --mode tta only")
        if self.max_epochs is not None:
            check_at_least("max-epochs", self.max_epochs, 1)
        if self.eval_every is not None:
            check_at_least("eval-every", self.eval_every, 1)
        if self.max_time_s is not None:
            check_in_range("max-time", self.max_time_s, 0, MAX_TIMEOUT_S, "seconds")
        if self.target is not None and (isinstance(self.target, bool) or not isinstance(self.target, (int, float))
                                        or self.target != self.target or abs(self.target) == float("inf")):
            raise ConfigError("target", f"must be a finite number, got {self.target!r}")
        if self.mode == "tta" and self.phases:
            raise ConfigError("phases", "applies to --mode throughput only (a time-to-accuracy run times training as it is)")

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
