"""`hpcbench check` and `hpcbench references`: per-system reference values a cluster's CI checks runs against.

A reference file holds `[[reference]]` tables as ReFrame writes its references, `(value, lower, upper,
unit)` with the bounds as fractions of the value (lower in [-1, 0], upper >= 0, `inf` for none), keyed
by the system's name, the experiment (its label or id) and the scale:

    [[reference]]
    system = "vm"
    experiment = "mlp hidden_size=1024 num_hidden_layers=3 synthetic ddp cpu 1thr b128/proc"
    num_nodes = 1
    world_size = 2
    metric = "samples_per_s"
    value = 2900.0
    lower = -0.1
    upper = 0.25
    unit = "samples/s"

A point passes when value x (1 + lower) <= measured <= value x (1 + upper). The measured value is the
median over every repeat of the matching runs (samples/s), or over the runs (the other metrics).
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hpcbench.analysis.compare import repeats_of
from hpcbench.errors import ConfigError

UNITS = {"samples_per_s": "samples/s", "step_time_s_median": "s", "tflops_per_device": "TFLOP/s",
         "time_to_target_s": "s", "peak_memory_gib": "GiB", "energy_j_per_sample": "J/sample"}
"""The metrics a reference may hold, and the unit each is recorded in."""
FIELDS = {"system": str, "experiment": str, "num_nodes": int, "world_size": int, "metric": str, "value": float,
          "lower": float, "upper": float, "unit": str}
OPTIONAL = {"num_nodes": 1}
MIN_BOUND = 0.10
"""`references` never writes a bound tighter than 10 %: a known-good set of a few runs shows the noise of one
afternoon; runs on the following days differ more (on the 2-core test VM one week's runs of the same code
differed by up to 1.7x, the host's load)."""
SPREADS = 3.0
"""`references` bounds: 3 robust standard deviations (1.4826 x the median absolute deviation of log values)."""


@dataclass(frozen=True)
class Reference:
    system: str
    experiment: str
    num_nodes: int
    world_size: int
    metric: str
    value: float
    lower: float
    upper: float
    unit: str


def read_references(path: Path) -> list[Reference]:
    """Parse and validate a reference file; any problem is one ConfigError naming the entry and the field."""
    try:
        document = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("references", f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("references", f"{path} is not TOML: {exc}") from None
    extra = set(document) - {"reference"}
    if extra or not isinstance(document.get("reference"), list) or not document["reference"]:
        raise ConfigError("references", f"{path} must hold [[reference]] tables and nothing else"
                          + (f" (unknown: {', '.join(sorted(extra))})" if extra else ""))
    return [_reference(entry, i + 1, path) for i, entry in enumerate(document["reference"])]


def _reference(entry: dict, number: int, path: Path) -> Reference:
    where = f"{path} reference {number}"
    unknown = set(entry) - set(FIELDS)
    if unknown:
        raise ConfigError("references", f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(FIELDS)}")
    values = OPTIONAL | entry
    for name, kind in FIELDS.items():
        if name not in values:
            raise ConfigError("references", f"{where}: missing {name!r}")
        value = values[name]
        ok = (isinstance(value, (int, float)) if kind is float else isinstance(value, kind)) and not isinstance(value, bool)
        if not ok:
            raise ConfigError("references", f"{where}: {name} must be a {kind.__name__}, got {value!r}")
    reference = Reference(**{name: float(values[name]) if kind is float else values[name] for name, kind in FIELDS.items()})
    if reference.metric not in UNITS:
        raise ConfigError("references", f"{where}: metric {reference.metric!r} is not one of {', '.join(UNITS)}")
    if reference.unit != UNITS[reference.metric]:
        raise ConfigError("references", f"{where}: unit {reference.unit!r} is not {reference.metric}'s; "
                          f"{reference.metric} is recorded in {UNITS[reference.metric]!r}")
    if not (math.isfinite(reference.value) and reference.value > 0):
        raise ConfigError("references", f"{where}: value must be a positive number, got {reference.value!r}")
    if reference.lower > reference.upper:
        raise ConfigError("references", f"{where}: lower {reference.lower:g} > upper {reference.upper:g}")
    if not (-1 <= reference.lower <= 0 <= reference.upper):
        raise ConfigError("references", f"{where}: bounds are fractions of the value: lower in [-1, 0], "
                          f"upper >= 0 (inf for none); got lower {reference.lower:g}, upper {reference.upper:g}")
    if reference.num_nodes < 1 or reference.world_size < reference.num_nodes:
        raise ConfigError("references", f"{where}: num_nodes >= 1 and world_size >= num_nodes, got "
                          f"{reference.num_nodes} and {reference.world_size}")
    return reference


def measured(runs: pd.DataFrame, metric: str) -> float:
    values = repeats_of(runs) if metric == "samples_per_s" else runs[metric].dropna().astype(float).tolist()
    return float(np.median(values)) if values else math.nan


def matching(runs: pd.DataFrame, reference: Reference) -> pd.DataFrame:
    experiment = (runs["experiment_label"] == reference.experiment) | (runs["experiment_id"] == reference.experiment)
    return runs[(runs["system_name"] == reference.system) & experiment & (runs["num_nodes"] == reference.num_nodes)
                & (runs["world_size"] == reference.world_size)]


def check(runs: pd.DataFrame, references: list[Reference]) -> pd.DataFrame:
    """A row per reference: measured value, its bounds, pass/FAIL/no run."""
    rows = []
    for ref in references:
        found = matching(runs, ref)
        value = measured(found, ref.metric) if len(found) else math.nan
        low, high = ref.value * (1 + ref.lower), ref.value * (1 + ref.upper)
        status = "no run" if math.isnan(value) else "pass" if low <= value <= high else "FAIL"
        rows.append({"status": status, "system": ref.system, "experiment": ref.experiment, "num_nodes": ref.num_nodes,
                     "world_size": ref.world_size, "metric": ref.metric, "measured": value, "reference": ref.value,
                     "low": low, "high": high, "unit": ref.unit, "runs": len(found),
                     "change": value / ref.value - 1})
    return pd.DataFrame(rows)


def references_from(runs: pd.DataFrame, metric: str = "samples_per_s") -> list[Reference]:
    """A reference per (system, experiment, scale) of a known-good set: the median, and symmetric bounds of
    SPREADS robust standard deviations, never tighter than MIN_BOUND (see there)."""
    made = []
    for (system, label, nodes, size), found in runs.groupby(["system_name", "experiment_label", "num_nodes", "world_size"]):
        values = np.asarray(repeats_of(found) if metric == "samples_per_s" else found[metric].dropna(), dtype=float)
        if values.size == 0:
            continue
        logs = np.log(values)
        spread = 1.4826 * float(np.median(np.abs(logs - np.median(logs))))
        bound = max(MIN_BOUND, math.expm1(SPREADS * spread))
        made.append(Reference(str(system), str(label), int(nodes), int(size), metric, float(np.median(values)),
                              -min(bound, 1.0), bound, UNITS[metric]))
    return made


def format_references(references: list[Reference], source: str) -> str:
    """TOML for `read_references`, with a header saying where the values came from and how the bounds were set."""
    lines = [f"# hpcbench references from {source}",
             f"# value: the median; lower/upper: +-{SPREADS:g} robust standard deviations (1.4826 x MAD of log values),",
             f"# at least +-{MIN_BOUND:.0%}. Check runs against it: hpcbench check RUNS --references THIS_FILE", ""]
    for ref in references:
        lines += ["[[reference]]", f"system = {_toml(ref.system)}", f"experiment = {_toml(ref.experiment)}",
                  f"num_nodes = {ref.num_nodes}", f"world_size = {ref.world_size}", f"metric = {_toml(ref.metric)}",
                  f"value = {ref.value:.6g}", f"lower = {ref.lower:.4f}", f"upper = {ref.upper:.4f}",
                  f"unit = {_toml(ref.unit)}", ""]
    return "\n".join(lines)


def _toml(text: str) -> str:
    """A TOML basic string (JSON's escaping is a subset of TOML's)."""
    return json.dumps(text, ensure_ascii=False)
