"""Sweep matrices: the experiments a sweep runs, from flags or from a sweep file (TOML).

A sweep file names what varies and what stays fixed; every list is an axis of the grid:

    workloads = ["mlp", "cnn"]          # axes: workloads, engines, scaling, batch sizes,
    scaling = ["weak"]                  # each workload's and each engine's options
    nproc = [1, 2]                      # the scale: local process counts (`hpcbench sweep`)
    nodes = [1, 2, 4]                   # ... or nodes x tasks per node (`hpcbench render/submit`)
    tasks_per_node = 4
    steps = 20                          # any run flag, spelled as the flag with `_` for `-`
    cnn.model = ["resnet18", "resnet50"]

The whole grid is built and checked before anything runs; an unknown key is an error that lists
the valid ones.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcbench.config import RunConfig, flag_fields
from hpcbench.engines import ENGINES
from hpcbench.errors import ConfigError, check_at_least
from hpcbench.plugins import option_flag
from hpcbench.workloads import get_workload, registry

DEFAULT_WORKLOADS = ("mlp", "cnn")
SCALE_KEYS = ("nproc", "nodes", "tasks_per_node")
"""Where a point sits on its curve: local process counts, or nodes x tasks per node on a cluster."""
SWEPT_FIELDS = ("scaling", "batch_size", "global_batch_size")
"""Run fields a sweep may list several values of (other run fields are one value for the whole sweep)."""
NOT_IN_FILES = ("workload", "engine", "num_procs")
"""Run fields a sweep file spells as its own axes: `workloads`, `engines`, `nproc`."""


def file_key(f: dataclasses.Field) -> str:
    """A run field's key in a sweep file: its flag without dashes (`--global-batch-size` -> `global_batch_size`)."""
    return f.metadata["flag"].lstrip("-").replace("-", "_")


RUN_KEYS = {file_key(f): f.name for f in flag_fields() if f.name not in NOT_IN_FILES}
"""Sweep-file key -> RunConfig field."""


@dataclass(kw_only=True)
class SweepMatrix:
    """What a sweep varies and what it keeps; `experiments()` expands it into one config per experiment."""

    workloads: list[str] = field(default_factory=lambda: list(DEFAULT_WORKLOADS))
    engines: list[str] = field(default_factory=lambda: [RunConfig.engine])
    run_values: dict[str, Any] = field(default_factory=dict)
    """RunConfig field -> value; a list for the fields in SWEPT_FIELDS means one experiment per value."""
    workload_options: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    """workload -> option -> the values to sweep."""
    shared_options: dict[str, Any] = field(default_factory=dict)
    """Options for every swept workload that has them (the command line's workload flags)."""
    engine_options: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    process_counts: list[int] | None = None
    node_counts: list[int] | None = None
    tasks_per_node: int | None = None
    seeds: int = 1
    """Runs per point, seeds --seed, --seed + 1, …: the spread of one experiment (time to accuracy's olympic mean)."""
    rounds: int = 1
    """Times the whole grid runs, point after point in each round (1, 2, 1, 2, …): a machine's drift over the
    minutes of a sweep hits every point alike instead of the last ones, and the point's runs pool."""

    def experiments(self) -> list[RunConfig]:
        """Every experiment of the grid (num_procs left at 1: the scale is the caller's), checked."""
        if not self.workloads:
            raise ConfigError("workloads", "needs at least one workload")
        if not self.engines:
            raise ConfigError("engines", "needs at least one engine")
        for name in self.workloads:
            get_workload(name)
        for name in self.engines:
            ENGINES.get(name)
        self._check_options_apply()
        scalings = _as_list(self.run_values.get("scaling", RunConfig.scaling))
        fixed = {k: v for k, v in self.run_values.items() if k not in SWEPT_FIELDS}
        grid = []
        for workload in self.workloads:
            for options in self._option_points(workload):
                for engine in self.engines:
                    for engine_options in _product(self.engine_options.get(engine, {})):
                        for scaling in scalings:
                            for batch in self._batch_points(scaling, mixed=len(scalings) > 1):
                                grid.append(RunConfig(**fixed, **batch, workload=workload, engine=engine,
                                                      scaling=scaling, options=options, engine_options=engine_options))
        return grid

    def _check_options_apply(self) -> None:
        for workload, options in self.workload_options.items():
            if workload not in self.workloads:
                raise ConfigError(workload, f"options of a workload the sweep does not run (workloads: {', '.join(self.workloads)})")
            _check_option_names(get_workload(workload).Options, options, f"workload {workload!r}", "")
        for name in self.shared_options:
            if not any(name in _field_names(get_workload(w).Options) for w in self.workloads):
                raise ConfigError(option_flag(name), f"is not an option of any swept workload ({', '.join(self.workloads)})")
        for engine, options in self.engine_options.items():
            if engine not in self.engines:
                prefix = ENGINES.get(engine).flag_prefix
                raise ConfigError(engine, f"options of an engine the sweep does not run (the --{prefix}-* options "
                                  f"apply to engine {engine} only; engines: {', '.join(self.engines)})")
            cls = ENGINES.get(engine)
            _check_option_names(cls.Options, options, f"engine {engine!r}", cls.flag_prefix)

    def _option_points(self, workload: str) -> list[dict[str, Any]]:
        mine = _field_names(get_workload(workload).Options)
        shared = {name: [value] for name, value in self.shared_options.items() if name in mine}
        return _product({**self.workload_options.get(workload, {}), **shared})

    def _batch_points(self, scaling: str, mixed: bool) -> list[dict[str, Any]]:
        """The batch fields of each experiment: per process (weak) or global (strong).

        With both modes in one sweep, `batch_size` belongs to the weak and `global_batch_size` to
        the strong experiments; with one mode, both go through, so RunConfig's checks speak.
        """
        weak = {"batch_size": _as_list(self.run_values.get("batch_size"))}
        strong = {"global_batch_size": _as_list(self.run_values.get("global_batch_size"))}
        if not mixed:
            return [{k: v for k, v in point.items() if v is not None} for point in _product({**weak, **strong})]
        values = weak if scaling == "weak" else strong
        return [{k: v for k, v in point.items() if v is not None} for point in _product(values)]


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _product(axes: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the axes' values (a scalar is an axis of one value), in the given order."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*(_as_list(axes[n]) for n in names))]


def _field_names(options_cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(options_cls)}


def _check_option_names(options_cls: type, given: dict[str, Any], owner: str, flag_prefix: str) -> None:
    """Names only: the values are checked per experiment, when each is resolved."""
    valid = _field_names(options_cls)
    unknown = sorted(set(given) - valid)
    if unknown:
        raise ConfigError(option_flag(unknown[0], flag_prefix),
                          f"not an option of {owner} (its options: {', '.join(sorted(valid)) or 'none'})")


def builtin_sweeps() -> dict[str, Path]:
    """The example sweeps shipped in jobs/sweeps/, by name."""
    folder = resources.files("hpcbench.jobs") / "sweeps"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".toml")}


def load_sweep_file(name_or_path: str | Path) -> SweepMatrix:
    """A sweep file (TOML) or a shipped one by name, as a matrix; every key and value's shape checked, nothing run."""
    builtin = builtin_sweeps()
    path = builtin.get(str(name_or_path)) or Path(name_or_path)
    if not path.is_file():
        raise ConfigError("FILE.toml", f"{str(name_or_path)!r} is neither a file nor one of: {', '.join(sorted(builtin))}")
    try:
        values = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("sweep file", f"cannot read {path}: {exc}") from None
    workload_names, engine_names = sorted(registry()), list(ENGINES.names())
    valid = ["workloads", "engines", *SCALE_KEYS, "seeds", "rounds", *RUN_KEYS, *workload_names, *engine_names]
    matrix = SweepMatrix()
    for key, value in values.items():
        where = f"{path.name}: {key}"
        if key in ("workloads", "engines"):
            setattr(matrix, key, _names(where, value))
        elif key in ("nproc", "nodes"):
            counts = _non_empty(where, _as_list(value))
            for count in counts:
                check_at_least(where, count, 1)
            setattr(matrix, "process_counts" if key == "nproc" else "node_counts", counts)
        elif key in ("seeds", "rounds"):
            check_at_least(where, value, 1)
            setattr(matrix, key, value)
        elif key == "tasks_per_node":
            check_at_least(where, value, 1)
            matrix.tasks_per_node = value
        elif key in RUN_KEYS:
            name = RUN_KEYS[key]
            if isinstance(value, list) and name not in SWEPT_FIELDS:
                swept = ", ".join(k for k, v in RUN_KEYS.items() if v in SWEPT_FIELDS)
                raise ConfigError(where, f"takes one value for the whole sweep (lists are allowed for: {swept}, "
                                  "workloads, engines, nproc, nodes and options)")
            matrix.run_values[name] = _non_empty(where, value) if isinstance(value, list) else value
        elif key in workload_names or key in engine_names:
            if not isinstance(value, dict):
                raise ConfigError(where, f"must be a table of {key}'s options, e.g. {key}.OPTION = [A, B]")
            for option, option_values in value.items():
                if isinstance(option_values, dict) or (isinstance(option_values, list) and not option_values):
                    raise ConfigError(f"{where}.{option}", "must be a value or a non-empty list of values")
            target = matrix.workload_options if key in workload_names else matrix.engine_options
            target[key] = dict(value)
        else:
            raise ConfigError(where, f"unknown key; valid keys: {', '.join(valid)}")
    return matrix


def _names(where: str, value: Any) -> list[str]:
    names = _non_empty(where, _as_list(value))
    if not all(isinstance(name, str) and name for name in names):
        raise ConfigError(where, f"must be a list of names, got {value!r}")
    return names


def _non_empty(where: str, values: list[Any]) -> list[Any]:
    if not values:
        raise ConfigError(where, "is an empty list; give at least one value")
    return values
