"""A small API for notebooks: run a sweep, load its records, get tables and figures.

Distributed workers never start inside a notebook's kernel (a kernel is one long-lived process
that torch.distributed would bind to a rank): `run_sweep` calls the `hpcbench` command line in a
subprocess, as a participant would in a terminal, and everything else reads the records it wrote.
Figures are matplotlib `Figure`s, which Jupyter shows when a cell returns one.

    from hpcbench.analysis import notebook as hb
    out = hb.run_sweep("results/hands-on", workloads=["mlp"], nproc=[1, 2], steps=10)
    runs = hb.load(out)
    hb.scaling(runs)
    hb.throughput_plot(runs)
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from hpcbench.analysis import plots
from hpcbench.analysis.comm import communication_table, netbench_frame
from hpcbench.analysis.convergence import quality_figure, tta_table
from hpcbench.analysis.efficiency import engine_table, pipeline_table, schedule_panel
from hpcbench.analysis.inputs import input_table
from hpcbench.analysis.load import read_valid, runs_frame
from hpcbench.analysis.scaling import scaling_table, verdicts
from hpcbench.progress import ENV as PROGRESS_ENV

__all__ = ["breakdown_plot", "bubble", "bubble_shrinks", "efficiency_plot", "engines", "input_plot", "inputs", "load",
           "reference", "run_sweep", "scaling", "schedule_plot", "source", "throughput_plot", "tta", "tta_plot", "verdicts",
           "which_scales_better"]


def run_sweep(out: str | Path, *, workloads: Iterable[str] = ("mlp", "cnn"), nproc: Iterable[int] = (1, 2),
              **flags: Any) -> Path:
    """`hpcbench sweep` in a subprocess, writing records into `out`; returns that folder.

    Every other keyword is a flag of `hpcbench sweep --help`, spelled with `_` for `-` (`steps=10`,
    `mode="tta"`, `lr_scaling="linear"`, `model="convnet"`); True gives `--flag`, False `--no-flag`.
    The command's table is printed; a failure raises with the command's last lines of output.
    """
    out = Path(out)
    args = [sys.executable, "-m", "hpcbench", "sweep", "--workloads", ",".join(workloads),
            "--nproc", ",".join(str(n) for n in nproc), "--out", str(out)]
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False:
            args.append("--no-" + flag[2:])
        elif value is not None:
            args += [flag, str(value)]
    result = subprocess.run(args, capture_output=True, text=True, env=_plain_progress_env())
    if result.returncode != 0:
        raise RuntimeError(f"hpcbench sweep failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    print(result.stdout)
    return out


def load(*paths: str | Path) -> pd.DataFrame:
    """One row per training run (ok runs only) from record files and folders: config, metrics, provenance."""
    return runs_frame(read_valid(paths))


def scaling(runs: pd.DataFrame, mode: str = "weak") -> pd.DataFrame:
    """Throughput, speedup and efficiency per experiment and process count (one curve per experiment and system)."""
    return scaling_table(runs, mode)


def which_scales_better(table: pd.DataFrame, first: str, second: str) -> str:
    """Exercise 1 against what this machine measured, at the largest process count both ran: which workload's
    efficiency is higher, and whether the measurement can tell (intervals apart, neither point contended)."""
    both = table[table["workload"].isin([first, second]) & (table["world_size"] > 1)]
    sizes = both.groupby("world_size")["workload"].nunique()
    if not (sizes == 2).any():
        return f"not measured: {first} and {second} have no process count above 1 in common"
    at = both[both["world_size"] == sizes[sizes == 2].index.max()].set_index("workload")
    shown = {w: f"{w} {at.loc[w, 'efficiency']:.0%} [{at.loc[w, 'efficiency_low']:.0%}, {at.loc[w, 'efficiency_high']:.0%}]"
             for w in (first, second)}
    busy = [w for w in (first, second) if "contended" in at.loc[w, "warnings"]]
    if busy:
        return (f"this machine cannot answer it now: other processes took its CPUs during {', '.join(busy)} "
                f"({'; '.join(at.loc[w, 'warnings'] for w in busy)}). Close them and rerun the sweep.")
    low, high = sorted((first, second), key=lambda w: at.loc[w, "efficiency"])
    if at.loc[low, "efficiency_high"] >= at.loc[high, "efficiency_low"]:
        return (f"this machine cannot tell: {shown[first]} and {shown[second]} overlap (the repeats' noise is larger "
                "than the difference). Rerun with repeats='auto'.")
    return f"{high} scales better here: {shown[high]} against {shown[low]} (95 % intervals, apart)"


def bubble_shrinks(runs: pd.DataFrame) -> str:
    """Exercise 4 against what this machine measured: does the measured bubble fall as micro-batches grow?"""
    table = pipeline_table(runs).groupby("microbatches")["bubble_measured"].median()
    if len(table) < 2:
        return "not measured: run the pipeline at two micro-batch counts or more"
    shown = ", ".join(f"{b:.0%} at {m}" for m, b in table.items())
    if table.is_monotonic_decreasing:
        return f"the measured bubble shrinks as micro-batches grow, as the formula says: {shown}"
    return (f"this machine does not show it: measured {shown}. The formula's bubble falls; here the per-micro-batch "
            "overhead and the noise of a loaded machine (see the runs' warnings) are larger than what it saves.")


def tta(runs: pd.DataFrame) -> pd.DataFrame:
    """Time to accuracy per experiment and process count, beside the throughput speedup of the same runs."""
    return tta_table(runs)


def engines(runs: pd.DataFrame) -> pd.DataFrame:
    """The same work under each engine and layout side by side (`run_sweep(..., engine="ddp,fsdp,tp,pp")`):
    samples and tokens per second, peak memory per rank, MFU, the pipeline bubble, collectives per step."""
    return engine_table(runs)


def bubble(runs: pd.DataFrame) -> pd.DataFrame:
    """Each pipeline run's bubble, measured beside the analytic (p-1)/(v*m+p-1)."""
    return pipeline_table(runs)


def schedule_plot(runs: pd.DataFrame) -> Figure | None:
    """The pipeline runs' schedules as they ran (a lane per rank: forwards, backwards, idle), up to six."""
    panels = [schedule_panel(record) for _, record in read_valid(list(runs["path"]))]
    return plots.schedule_figure([panel[1:] for panel in panels if panel][:6], runs)


def inputs(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run that read files (`--data files`): its step from storage, from memory and from one batch on the
    device (DS-Analyzer's split), the prep and fetch stalls, and whether it was input-bound."""
    return input_table(runs)


def input_plot(runs: pd.DataFrame) -> Figure | None:
    """A bar per run that read files: compute alone, then the prep and fetch stalls on top."""
    return plots.input_figure(input_table(runs), runs)


def survey(records: str | Path) -> str:
    """A survey's diagnosis as `hpcbench survey --from` prints it: the node x metric table, what it names, the cost."""
    from hpcbench.analysis.survey import cost, diagnose, format_survey, load_survey

    record = load_survey(str(records))
    findings = diagnose(record)
    return format_survey(record, findings, cost(record, findings))


def reference(name: str) -> Path:
    """A folder of the reference results shipped in this checkout (`results/reference/NAME`): runs that need a
    cluster, measured once, to read beside your own."""
    folder = Path(__file__).resolve().parent.parent / "results" / "reference" / name
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: the reference results ship with the repository (a git checkout), "
                                "not with an installed package")
    return folder


def throughput_plot(runs: pd.DataFrame) -> Figure:
    return plots.throughput_figure(scaling_table(runs, "weak"), runs)


def efficiency_plot(runs: pd.DataFrame, mode: str = "weak") -> Figure:
    return plots.efficiency_figure(scaling_table(runs, mode), runs, mode)


def breakdown_plot(runs: pd.DataFrame, *netbench_paths: str | Path) -> Figure | None:
    """Stacked bars per process count: compute, exposed communication (measured) and the rest; with
    netbench records (`hpcbench netbench`), the ring all-reduce bound beside them."""
    weak = scaling_table(runs, "weak")
    netbench = netbench_frame(read_valid(netbench_paths)) if netbench_paths else netbench_frame([])
    return plots.breakdown_figure(weak, communication_table(weak, runs, netbench), runs)


def tta_plot(runs: pd.DataFrame) -> Figure | None:
    """Held-out quality against seconds, a line per run, a colour per process count."""
    return quality_figure(runs)


def source(obj: Any, start: str | None = None, end: str | None = None) -> str:
    """The installed source of a module, class or function — or of its lines from the first one containing
    `start` to the first one after it containing `end` — so a notebook shows the code that runs, not a copy."""
    lines = inspect.getsource(obj).splitlines()
    if start is not None:
        first = next(i for i, line in enumerate(lines) if start in line)
        last = next((i for i in range(first + 1, len(lines)) if end and end in lines[i]), len(lines) - 1)
        lines = lines[first:last + 1]
    return "\n".join(lines)


def _plain_progress_env() -> dict[str, str]:
    """No progress bar or lines: a notebook cell shows the sweep's table when it is done."""
    return {**os.environ, PROGRESS_ENV: "off"}
