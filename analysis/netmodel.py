"""How long an all-reduce of n bytes takes on p processes over N nodes: the alpha-beta model, with its
two sources of numbers — a fabric file (jobs/fabrics/*.toml, every value with its source) or the
per-size times `hpcbench netbench` measured (alpha and beta fitted, residuals reported).

    ring          2(p-1) steps, each paying a hop's latency; every process sends 2(p-1)/p x n bytes:
                  t = base + (2(p-1) - 2(N-1)) a_intra + 2(N-1) a_inter + 2(p-1)/p x n / B
                  B: inside one node the intra-node bus bandwidth; across nodes the node's NICs
                  together (NCCL runs one ring per NIC), never more than the intra-node one.
    tree          NCCL's double binary tree: t = base + 2((g-1) a_intra + log2(N) a_inter) + 2 n / B
                  (NCCL converts a tree's bus bandwidth to algorithm bandwidth with a ratio of 1/2).
    hierarchical  reduce-scatter inside the node, all-reduce of n/g bytes across nodes (each process
                  through its share of the NICs), all-gather inside the node.

Latencies follow NCCL's own tuning model (src/graph/tuning.cc: baseLatencies, hwLatencies, and the
ring's 2(nNodes-1) inter-node steps); bandwidths are busbw as nccl-tests defines it. Which
algorithm NCCL would pick is not guessed here: callers show ring and tree, or the one named.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpcbench.errors import ConfigError

ALGORITHMS = ("ring", "tree", "hierarchical")

FABRIC_FIELDS = {
    "gpus_per_node": "GPUs in one node",
    "intra_node_busbw_gbps": "all-reduce bus bandwidth inside one node, GB/s (nccl-tests busbw)",
    "intra_node_latency_us": "latency of one step between processes in a node, microseconds",
    "nics_per_node": "network adapters per node used by the collectives",
    "nic_line_rate_gbit": "each adapter's line rate, Gbit/s",
    "achieved_fraction": "bus bandwidth reached per adapter over its line rate (0-1]",
    "inter_node_latency_us": "latency of one step across the network, microseconds",
    "base_latency_us": "a collective's fixed start cost, microseconds",
}
"""Every key a fabric file must have: each a table with `value` and `source`."""


@dataclass(frozen=True)
class Links:
    """What the all-reduce formulas need, in seconds and bytes per second."""

    gpus_per_node: int
    intra_busbw: float
    inter_busbw_per_node: float
    """All of a node's NICs together."""
    intra_latency_s: float
    inter_latency_s: float
    base_latency_s: float = 0.0
    name: str = ""
    residuals: tuple[tuple[float, float], ...] = ()
    """(size in bytes, relative residual) of the measured fits; empty for a fabric file (it states no spread)."""

    def relative_error_at(self, num_bytes: float) -> float:
        """The fit's |relative residual| at the measured size nearest `num_bytes` (log distance); 0 without a fit."""
        if not self.residuals or num_bytes <= 0:
            return 0.0
        return abs(min(self.residuals, key=lambda r: abs(math.log(r[0] / num_bytes)))[1])

    def measured_correction(self, num_bytes: float) -> float:
        """The factor from the alpha-beta line to the measured curve at `num_bytes`: 1 / (1 - residual), the
        relative residual interpolated in log size between the measured sizes (held at the ends). A line fits a
        link in two regimes badly (a token bucket's burst makes small messages fast): here the measured times
        win, and the line carries them to other shapes. 1 for a fabric file (nothing measured)."""
        if not self.residuals or num_bytes <= 0:
            return 1.0
        measured = sorted(self.residuals)
        relative = float(np.interp(math.log(num_bytes), [math.log(size) for size, _ in measured], [r for _, r in measured]))
        return 1.0 / (1.0 - min(relative, 0.9))

    def allreduce_s(self, num_bytes: float, num_nodes: int, procs_per_node: int, algorithm: str) -> float:
        return self._allreduce_line_s(num_bytes, num_nodes, procs_per_node, algorithm) * self.measured_correction(num_bytes)

    def _allreduce_line_s(self, num_bytes: float, num_nodes: int, procs_per_node: int, algorithm: str) -> float:
        p = num_nodes * procs_per_node
        if p < 2 or num_bytes <= 0:
            return 0.0
        g, big_n = procs_per_node, num_nodes
        across = min(self.intra_busbw, self.inter_busbw_per_node) if big_n > 1 else self.intra_busbw
        if algorithm == "ring":
            inter_steps = 2 * (big_n - 1)
            latency = (2 * (p - 1) - inter_steps) * self.intra_latency_s + inter_steps * self.inter_latency_s
            return self.base_latency_s + latency + 2 * (p - 1) / p * num_bytes / across
        if algorithm == "tree":
            latency = 2 * ((g - 1) * self.intra_latency_s + math.log2(big_n) * self.inter_latency_s)
            return self.base_latency_s + latency + 2 * num_bytes / across
        if algorithm == "hierarchical":
            inside = 2 * ((g - 1) * self.intra_latency_s + (g - 1) / g * num_bytes / self.intra_busbw) if g > 1 else 0.0
            between = 0.0
            if big_n > 1:
                per_process_bw = self.inter_busbw_per_node / g
                between = 2 * (big_n - 1) * self.inter_latency_s + 2 * (big_n - 1) / big_n * (num_bytes / g) / per_process_bw
            return self.base_latency_s + inside + between
        raise ConfigError("algorithm", f"{algorithm!r} is not one of {', '.join(ALGORITHMS)}")

    def latency_part_s(self, num_nodes: int, procs_per_node: int, algorithm: str) -> float:
        """The size-independent part of the all-reduce line (what a zero-byte all-reduce would cost)."""
        return self._allreduce_line_s(1e-12, num_nodes, procs_per_node, algorithm)


# --- fabric files
def fabric_names() -> list[str]:
    return sorted(p.stem for p in _fabric_dir().iterdir() if p.suffix == ".toml")


def _fabric_dir() -> Any:
    return resources.files("hpcbench.jobs") / "fabrics"


def load_fabric(name_or_path: str) -> dict[str, Any]:
    """A fabric file by name (jobs/fabrics/NAME.toml) or path, validated: every known key, each with a
    positive value and a non-empty source; nothing else."""
    path = Path(name_or_path)
    if not path.suffix:
        shipped = _fabric_dir() / f"{name_or_path}.toml"
        if not shipped.is_file():
            raise ConfigError("fabric", f"{name_or_path!r} is neither a file nor one of: {', '.join(fabric_names())}")
        text, where = shipped.read_text(), f"jobs/fabrics/{name_or_path}.toml"
    else:
        try:
            text, where = path.read_text(), str(path)
        except OSError as exc:
            raise ConfigError("fabric", f"file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("fabric", f"file {where}: not TOML ({exc})") from None
    return {**check_fabric(data, where), "file": where}


def check_fabric(data: dict[str, Any], where: str) -> dict[str, Any]:
    allowed = {"name", "description", *FABRIC_FIELDS}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError("fabric", f"file {where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    for key in ("name", "description"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise ConfigError("fabric", f"file {where}: {key} must be a non-empty string")
    for key, meaning in FABRIC_FIELDS.items():
        entry = data.get(key)
        if not isinstance(entry, dict):
            raise ConfigError("fabric", f"file {where}: {key} ({meaning}) is missing: give [{key}] value = ..., source = \"...\"")
        extra = sorted(set(entry) - {"value", "source"})
        if extra:
            raise ConfigError("fabric", f"file {where}: {key} has unknown key(s) {', '.join(extra)}; allowed: value, source")
        value, source = entry.get("value"), entry.get("source")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ConfigError("fabric", f"file {where}: {key}.value must be a positive number, got {value!r}")
        if not isinstance(source, str) or not source.strip():
            raise ConfigError("fabric", f"file {where}: {key} = {value} has no source: every value says where it comes from")
    if data["achieved_fraction"]["value"] > 1:
        raise ConfigError("fabric", f"file {where}: achieved_fraction.value must be in (0, 1], got {data['achieved_fraction']['value']}")
    if int(data["gpus_per_node"]["value"]) != data["gpus_per_node"]["value"] or int(data["nics_per_node"]["value"]) != data["nics_per_node"]["value"]:
        raise ConfigError("fabric", f"file {where}: gpus_per_node and nics_per_node must be whole numbers")
    return data


def fabric_links(fabric: dict[str, Any]) -> Links:
    v = {key: fabric[key]["value"] for key in FABRIC_FIELDS}
    nic_busbw = v["nic_line_rate_gbit"] / 8 * 1e9 * v["achieved_fraction"]
    return Links(gpus_per_node=int(v["gpus_per_node"]), intra_busbw=v["intra_node_busbw_gbps"] * 1e9,
                 inter_busbw_per_node=v["nics_per_node"] * nic_busbw, intra_latency_s=v["intra_node_latency_us"] * 1e-6,
                 inter_latency_s=v["inter_node_latency_us"] * 1e-6, base_latency_s=v["base_latency_us"] * 1e-6,
                 name=fabric["name"])


# --- from netbench
STEPS_AND_SHARE = {"all_reduce": (lambda p: 2 * (p - 1), lambda p: 2 * (p - 1) / p),
                   "all_gather": (lambda p: p - 1, lambda p: (p - 1) / p),
                   "reduce_scatter": (lambda p: p - 1, lambda p: (p - 1) / p),
                   "broadcast": (lambda p: p - 1, lambda p: 1.0)}
"""Per collective, as a ring runs it on p processes: latency steps, and the share of n each process sends
(nccl-tests' bus factor): intercept = steps x alpha, slope = share x beta."""


@dataclass(frozen=True)
class Fit:
    """t(n) = intercept + slope x n, fitted to one netbench curve, and alpha and beta as a ring reads them."""

    collective: str
    backend: str
    world_size: int
    num_nodes: int
    intercept_s: float
    slope_s_per_byte: float
    alpha_s: float
    beta_s_per_byte: float
    residuals: list[dict[str, float]]
    rms_relative_residual: float
    run_id: str


def fit_alpha_beta(rows: pd.DataFrame, collective: str = "all_reduce") -> Fit:
    """Least squares on relative error (each size counts alike, small and large), one collective's curve;
    for all-reduce intercept = 2(p-1) alpha, slope = 2(p-1)/p beta (STEPS_AND_SHARE for the others)."""
    sizes, times = rows["size_bytes"].to_numpy(float), rows["time_s"].to_numpy(float)
    p = int(rows["world_size"].iloc[0])
    if p < 2 or len(sizes) < 2:
        raise ConfigError("netbench", f"run {rows['run_id'].iloc[0]}: needs 2+ processes and 2+ sizes to fit alpha and beta")
    weights = 1 / times
    design = np.column_stack([np.ones_like(sizes), sizes]) * weights[:, None]
    (intercept, slope), *_ = np.linalg.lstsq(design, times * weights, rcond=None)
    intercept, slope = max(float(intercept), 0.0), max(float(slope), 1e-15)
    predicted = intercept + slope * sizes
    relative = (times - predicted) / times
    steps, share = (f(p) for f in STEPS_AND_SHARE[collective])
    return Fit(collective=collective, backend=str(rows["backend"].iloc[0]), world_size=p,
               num_nodes=int(rows["num_nodes"].iloc[0]), intercept_s=intercept, slope_s_per_byte=slope,
               alpha_s=intercept / steps, beta_s_per_byte=slope / share,
               residuals=[{"size_bytes": float(s), "time_s": float(t), "fit_s": float(f), "relative": float(r)}
                          for s, t, f, r in zip(sizes, times, predicted, relative)],
               rms_relative_residual=float(np.sqrt(np.mean(relative**2))), run_id=str(rows["run_id"].iloc[0]))


def netbench_fits(netbench: pd.DataFrame, backend: str) -> list[Fit]:
    """One fit per netbench run and collective of `backend` (a run is one process count on one node count);
    the all-reduce fits model gradients, the others are recorded with their residuals."""
    mine = netbench[(netbench["backend"] == backend) & (netbench["world_size"] > 1)]
    return [fit_alpha_beta(rows.sort_values("size_bytes"), collective)
            for (_, collective), rows in mine.groupby(["run_id", "collective"]) if collective in STEPS_AND_SHARE]


def netbench_links(fits: list[Fit], num_nodes: int, procs_per_node: int) -> Links:
    """Links for a point of N nodes x g processes from the measured fits: across nodes the fit with the
    most nodes, inside one the 1-node fit with the most processes (or, lacking one, the same). Refused
    when the point crosses nodes and no fit did: a network not measured is not predicted."""
    fits = [f for f in fits if f.collective == "all_reduce"]
    across = [f for f in fits if f.num_nodes > 1]
    inside = [f for f in fits if f.num_nodes == 1]
    if num_nodes > 1 and not across:
        raise ConfigError("netbench", f"no all-reduce measured across nodes (measured: "
                              f"{', '.join(f'{f.world_size}p/{f.num_nodes}n' for f in fits) or 'none'}); "
                              f"run netbench on 2+ nodes first")
    if num_nodes == 1 and procs_per_node > 1 and not inside and not across:
        raise ConfigError("netbench", "no all-reduce measured to model this point")
    net = max(across, key=lambda f: (f.num_nodes, f.world_size)) if across else None
    local = max(inside, key=lambda f: f.world_size) if inside else net
    net = net or local
    return Links(gpus_per_node=procs_per_node, intra_busbw=1 / local.beta_s_per_byte,
                 inter_busbw_per_node=1 / net.beta_s_per_byte, intra_latency_s=local.alpha_s, inter_latency_s=net.alpha_s,
                 name=f"netbench {net.backend}: {', '.join(sorted({f.run_id for f in (net, local)}))}",
                 residuals=tuple((r["size_bytes"], r["relative"]) for r in (net if num_nodes > 1 else local).residuals))
