"""Figures (matplotlib's object API, no global pyplot state): each stamped with hardware, versions and dates."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from hpcbench import records
from hpcbench.analysis.curves import curve_keys, legend_labels


def stamp(fig: Figure, runs: pd.DataFrame) -> None:
    """Where and when the numbers were measured, in small print along the bottom edge."""
    def values(column: str) -> str:
        found = sorted({str(v) for v in runs.get(column, pd.Series(dtype=object)).dropna()})
        return ", ".join(found) or "n/a"

    dates = sorted(str(s)[:10] for s in runs.get("started", pd.Series(dtype=object)).dropna())
    when = f"{dates[0]} .. {dates[-1]}" if dates else "n/a"
    network = f" | network: {values('network')}" if values("network") != "n/a" else ""
    text = (f"system: {values('system_name')}{network} | cpu: {values('cpu_model')} | gpu: {values('gpu_model')} | torch {values('torch')} | "
            f"hpcbench {values('hpcbench')} | measured {when}")
    fig.text(0.01, 0.005, _wrapped(fig, text, 6), fontsize=6, color="0.35", ha="left", va="bottom")


def _wrapped(fig: Figure, text: str, fontsize: float) -> str:
    """`text` in lines that fit the figure's width: a one-panel figure is 4.4 inches, which a long title or
    footer overran (cut at "slowes", "meas"). A character is about 0.55 of the font size wide."""
    return "\n".join(textwrap.wrap(text, max(20, int(fig.get_figwidth() * 72 / (0.55 * fontsize) * 0.95))))


def suptitle(fig: Figure, text: str, fontsize: float = 12) -> None:
    """The figure's title, wrapped to its width, with the top margin grown by the lines it needs."""
    lines = _wrapped(fig, text, fontsize)
    extra_in = (lines.count("\n")) * fontsize * 1.25 / 72
    if extra_in:
        fig.subplots_adjust(top=fig.subplotpars.top - extra_in / fig.get_figheight())
    fig.suptitle(lines, fontsize=fontsize)


def _process_axis(ax, counts) -> None:
    """Log2 axis with the measured process counts as plain tick labels."""
    counts = sorted({int(c) for c in counts})
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.minorticks_off()
    ax.set_xlabel("processes")


def _figure(width_in: float, height_in: float) -> Figure:
    """Fixed margins in inches instead of a layout engine: laying out costs more than drawing here
    (reports over thousands of records must stay fast), and these figures have a known shape."""
    fig = Figure(figsize=(width_in, height_in))
    fig.subplots_adjust(left=0.75 / width_in, right=1 - 0.2 / width_in, bottom=0.75 / height_in,
                        top=1 - 0.6 / height_in, hspace=0.45, wspace=0.35)
    return fig


def _grid(count: int) -> tuple[Figure, list]:
    cols = min(3, max(1, count))
    rows = math.ceil(count / cols)
    fig = _figure(4.4 * cols, 3.4 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for extra in axes[count:]:
        extra.set_visible(False)
    return fig, axes[:count]


def throughput_figure(table: pd.DataFrame, runs: pd.DataFrame) -> Figure:
    """Throughput vs processes per workload: median with 95 % CI bars, and the ideal line from the baseline."""
    workloads = sorted(table["workload"].unique())
    fig, axes = _grid(len(workloads))
    for ax, workload in zip(axes, workloads):
        curves = [curve for _, curve in table[table["workload"] == workload].groupby(curve_keys("weak"))]
        labels = legend_labels([str(curve["experiment_label"].iloc[0]) for curve in curves])
        for curve, label in zip(curves, labels):
            curve = curve.sort_values("world_size")
            n = curve["world_size"].to_numpy()
            y = curve["samples_per_s"].to_numpy()
            err = np.vstack([y - curve["ci95_low"].to_numpy(), curve["ci95_high"].to_numpy() - y])
            line = ax.errorbar(n, y, yerr=err, marker="o", capsize=3, label=label)
            base = curve["baseline_samples_per_s"].iloc[0]
            if not math.isnan(base):
                ax.plot(n, base * n, linestyle="--", color=line[0].get_color(), alpha=0.5, label="ideal (N x baseline)")
        unit = runs.loc[runs["workload"] == workload, "sample_unit"].dropna()
        ax.set_title(workload)
        ax.set_ylabel(f"{unit.iloc[0] if len(unit) else 'samples'}/s")
        _process_axis(ax, table.loc[table["workload"] == workload, "world_size"])
        ax.legend(fontsize=7)
    suptitle(fig, "Throughput vs processes (median, 95 % bootstrap CI)")
    stamp(fig, runs)
    return fig


def efficiency_figure(table: pd.DataFrame, runs: pd.DataFrame, mode: str = "weak") -> Figure:
    fig = _figure(7, 4.6)
    ax = fig.subplots()
    measured = table.dropna(subset=["efficiency"])
    curves = [curve for _, curve in measured.groupby(curve_keys(mode))]
    labels = legend_labels([str(curve["experiment_label"].iloc[0]) for curve in curves])
    for curve, label in zip(curves, labels):
        curve = curve.sort_values("world_size")
        ax.plot(curve["world_size"], 100 * curve["efficiency"], marker="o", label=label)
    ax.axhline(100, color="0.5", linestyle="--", linewidth=1)
    _process_axis(ax, measured["world_size"] if not measured.empty else [1])
    ax.set_ylabel(f"{mode} scaling efficiency (%)")
    ax.legend(fontsize=7)
    ax.set_title(_wrapped(fig, f"{mode.capitalize()} scaling efficiency vs the 1-process baseline", 12))
    stamp(fig, runs)
    return fig


def prediction_figure(predictions: pd.DataFrame, table: pd.DataFrame, runs: pd.DataFrame) -> Figure:
    """Step time against processes: measured mean steps (points) of each predicted experiment, and every
    prediction (dashed, its interval shaded), labelled as one: a model's numbers never pass as measured."""
    experiments = sorted(predictions["experiment_id"].unique())
    fig, axes = _grid(len(experiments)) if len(experiments) > 1 else (lambda f: (f, [f.subplots()]))(_figure(7.5, 4.6))
    for ax, experiment in zip(axes, experiments):
        mine = predictions[(predictions["experiment_id"] == experiment) & predictions["step_time_s"].notna()]
        measured = table[table["experiment_id"] == experiment].sort_values("world_size")
        if not measured.empty:
            ax.plot(measured["world_size"], 1e3 * measured["step_time_s_mean"], "o", color="black", label="measured")
        for (network, algorithm, prediction), curve in mine.groupby(["network_model", "algorithm", "prediction_id"]):
            curve = curve.sort_values("world_size")
            line = ax.plot(curve["world_size"], 1e3 * curve["step_time_s"], linestyle="--", marker="x",
                           label=f"PREDICTION {network}, {algorithm}")
            ax.fill_between(curve["world_size"], 1e3 * curve["step_time_s_low"], 1e3 * curve["step_time_s_high"],
                            color=line[0].get_color(), alpha=0.15)
        _process_axis(ax, [*mine["world_size"], *measured["world_size"]])
        ax.set_ylabel("step time (ms)")
        ax.set_title(textwrap.shorten(str(mine["experiment_label"].iloc[0]), 60), fontsize=8)
        ax.legend(fontsize=6)
    suptitle(fig, "Step time: measured (points), PREDICTED (dashed: a model, not a measurement)", 9)
    stamp(fig, runs)
    return fig


def step_time_figure(runs: pd.DataFrame) -> Figure:
    """Per-rank step-time distribution of each workload's largest run: a straggler's box stands apart."""
    largest = runs.sort_values("world_size").groupby("workload").tail(1).sort_values("workload")
    fig, axes = _grid(len(largest))
    for ax, (_, run) in zip(axes, largest.iterrows()):
        ranks = records.load(run["path"])["ranks"]
        times = [[1e3 * t for repeat in r["step_times_s"] for t in repeat] for r in ranks]
        ax.boxplot(times, showfliers=True)
        several_hosts = len({r.get("host") for r in ranks}) > 1  # a slow node shows by its name, not its rank number
        ax.set_xticks(range(1, len(ranks) + 1), [f"{r['rank']}\n{r.get('host')}" if several_hosts else str(r["rank"])
                                                  for r in ranks], fontsize=7 if several_hosts else None)
        ax.set_title(f"{run['workload']}, {run['world_size']} procs ({run['engine']})")
        ax.set_xlabel("rank, host" if several_hosts else "rank")
        ax.set_ylabel("step time (ms)")
    suptitle(fig, "Per-rank step times")
    stamp(fig, runs)
    return fig


def engines_figure(table: pd.DataFrame, runs: pd.DataFrame) -> Figure | None:
    """Engines side by side per workload and process count; None unless two or more engines were measured."""
    experiments = runs.drop_duplicates("experiment_id").set_index("experiment_id")
    # A bar per engine and its options (tp's degree, pp's schedule): two layouts of one engine are not one median.
    options = experiments["engine_options"] if "engine_options" in experiments else pd.Series(None, experiments.index)
    series = {eid: " ".join([engine, *(f"{k}={v}" for k, v in sorted((opts or {}).items()) if v not in (None, False, "none"))])
              for eid, engine, opts in zip(experiments.index, experiments["engine"], options)}
    table = table.assign(work_id=table["experiment_id"].map(experiments["work_id"]),
                         layout=table["experiment_id"].map(series).fillna(table["engine"]))
    engines = sorted(table["layout"].unique())
    if len(engines) < 2:
        return None
    # One bar group per point of the same work (same system, same experiment but for the engine) that every layout measured.
    points = (table.groupby(["system_id", "work_id", "workload", "world_size", "layout"])["samples_per_s"].median()
              .unstack("layout").dropna())
    fig = _figure(max(6, 0.9 * len(points)), 4.6)
    ax = fig.subplots()
    width = 0.8 / len(engines)
    x = np.arange(len(points))
    for i, engine in enumerate(engines):
        ax.bar(x + i * width, points[engine], width, label=engine)
    ax.set_xticks(x + width * (len(engines) - 1) / 2, [f"{key[2]}\n{key[3]}p" for key in points.index], fontsize=7)
    ax.set_ylabel("samples/s")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("Engines side by side")
    stamp(fig, runs)
    return fig


SCHEDULE_STEPS_SHOWN = 2
SCHEDULE_COLOURS = {"F": "tab:blue", "B": "tab:orange"}


def schedule_figure(pipelines: list[tuple[str, list[list[list]]]], runs: pd.DataFrame) -> Figure | None:
    """Pipeline schedules as they ran: per run (title, each rank's timed actions [kind, stage, micro-batch, start,
    end]), a lane per rank over its first SCHEDULE_STEPS_SHOWN steps of the last timed repeat: forwards, backwards
    (labelled with their micro-batch) and, white, the idle time between them. None without a pipeline run."""
    if not pipelines:
        return None
    fig, axes = _grid(len(pipelines))
    for ax, (title, by_rank) in zip(axes, pipelines):
        steps = [a for a in by_rank[0] if a[0] == "step"][:SCHEDULE_STEPS_SHOWN]
        start, end = (steps[0][3], steps[-1][4]) if steps else (0.0, max(a[4] for a in by_rank[0]))
        for lane, actions in enumerate(by_rank):
            for kind, stage, microbatch, begin, finish in actions:
                if kind not in SCHEDULE_COLOURS or begin < start or finish > end:
                    continue
                ax.barh(lane, (finish - begin) * 1e3, left=(begin - start) * 1e3, color=SCHEDULE_COLOURS[kind],
                        edgecolor="white", linewidth=0.5)
                ax.text((begin + finish - 2 * start) * 500, lane, str(microbatch), ha="center", va="center", fontsize=6)
        for step in steps:
            ax.axvline((step[4] - start) * 1e3, color="grey", linewidth=0.6, linestyle=":")
        ax.set_yticks(range(len(by_rank)), [f"rank {r}" for r in range(len(by_rank))])
        ax.invert_yaxis()
        ax.set_xlabel("ms from the step's start (this rank's clock)")
        ax.set_title(title, fontsize=8)
    axes[0].legend(handles=[Patch(color=SCHEDULE_COLOURS["F"], label="forward"),
                            Patch(color=SCHEDULE_COLOURS["B"], label="backward")], fontsize=7, loc="lower right")
    suptitle(fig, "Pipeline schedules as measured (white: idle, the bubble)")
    stamp(fig, runs)
    return fig


def busbw_figure(netbench: pd.DataFrame) -> Figure:
    """A panel per collective; a line per backend and process count (nccl-tests' busbw)."""
    collectives = [c for c in ("all_reduce", "all_gather", "reduce_scatter", "broadcast") if c in set(netbench["collective"])]
    fig, axes = _grid(len(collectives))
    for ax, collective in zip(axes, collectives):
        rows = netbench[netbench["collective"] == collective]
        for (backend, world, nodes, device), line in rows.groupby(["backend", "world_size", "num_nodes", "device"]):
            curve = line.groupby("size_bytes")["busbw_gbps"].median()
            ax.plot(curve.index, curve.to_numpy(), marker="o", markersize=3,
                    label=f"{backend}: {world} procs, {nodes} node(s), {device}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel("busbw (GB/s)")
        ax.set_title(collective.replace("_", "-"))
        ax.legend(fontsize=7)
    suptitle(fig, "Bus bandwidth per collective and backend (nccl-tests definitions)")
    stamp(fig, netbench)
    return fig


def breakdown_figure(table: pd.DataFrame, comm: pd.DataFrame, runs: pd.DataFrame) -> Figure | None:
    """Per curve, a bar per process count: compute-only step time and the exposed communication on
    top (measured), with the ring all-reduce bound from netbench as a marker (predicted)."""
    measured = table.dropna(subset=["compute_step_time_s"])  # exposed_comm null: not measurable, drawn as none
    if measured.empty:
        return None
    keys = curve_keys("weak")
    curves = list(measured.groupby(keys, sort=True))
    fig, axes = _grid(len(curves))
    labels = legend_labels([key[keys.index("experiment_label")] for key, _ in curves])
    bounds = comm.set_index([*keys, "world_size"])["allreduce_bound_s"] if not comm.empty else pd.Series(dtype=float)
    for ax, (key, group), label in zip(axes, curves, labels):
        group = group.sort_values("world_size")
        x = np.arange(len(group))
        compute_ms = group["compute_step_time_s"].to_numpy(float) * 1e3
        exposed_ms = np.nan_to_num(np.clip(group["exposed_comm_s"].to_numpy(float), 0, None)) * 1e3
        ax.bar(x, compute_ms, color="tab:blue", label="compute (no gradient sync)")
        ax.bar(x, exposed_ms, bottom=compute_ms, color="tab:orange", label="exposed communication")
        for i in np.flatnonzero((group["world_size"].to_numpy() == 1) & (exposed_ms > 0)):
            # nothing to communicate at 1 process: the orange there is the engine's own cost
            ax.annotate("engine's own cost\n(nothing to send)", (x[i], compute_ms[i] + exposed_ms[i]), ha="center",
                        va="bottom", fontsize=6, xytext=(0, 2), textcoords="offset points")
        predicted = [bounds.get((*key, n), np.nan) for n in group["world_size"]]
        ax.plot(x, compute_ms + np.asarray(predicted, float) * 1e3, "k_", markersize=18, mew=2,
                label="compute + all-reduce bound (predicted)")
        ax.set_xticks(x, [str(int(n)) for n in group["world_size"]])
        ax.set_xlabel("processes")
        ax.set_ylabel("step time (ms)")
        ax.set_ylim(0, 1.4 * float(np.nanmax([*(compute_ms + exposed_ms), *(compute_ms + np.asarray(predicted) * 1e3)])))
        ax.set_title("\n".join(textwrap.wrap(label, 48)), fontsize=8)
        ax.legend(fontsize=6, loc="upper left")  # in the headroom above the bars
    suptitle(fig, "Where the step time goes (weak scaling, mean step, slowest rank)")
    stamp(fig, runs)
    return fig


HISTORY_PANELS = 9
"""A history figure shows at most this many series (those with steps first): more panels are unreadable."""


def history_figure(points: pd.DataFrame, steps: pd.DataFrame, metric: str, runs: pd.DataFrame) -> Figure:
    """A panel per series: the metric by run start, software changes as dashed lines named at the top,
    detected steps as a red (regression) or green (improvement) marker with their size."""
    keys = ["hardware_id", "experiment_id", "num_nodes", "world_size"]
    stepped = set(map(tuple, steps[keys].to_numpy().tolist()))
    series = sorted(points.groupby(keys, sort=False), key=lambda item: (tuple(item[0]) not in stepped, item[0]))
    series = series[:HISTORY_PANELS]
    fig, axes = _grid(len(series))
    for ax, (key, rows) in zip(axes, series):
        when = pd.to_datetime(rows["started"], utc=True, format="ISO8601")
        ax.plot(when, rows[metric], marker="o", markersize=3, linewidth=1)
        for moment, change in zip(when, rows["changed"]):
            if change:
                ax.axvline(moment, color="0.5", linestyle="--", linewidth=0.8)
                ax.annotate(textwrap.shorten(change, 40), (moment, 1), xycoords=("data", "axes fraction"),
                            rotation=90, fontsize=5, va="top", ha="right", color="0.3")
        mine = steps[(steps[keys].to_numpy() == np.array(key, dtype=object)).all(axis=1)]
        for _, step in mine.iterrows():
            moment = pd.to_datetime(step["started"], utc=True, format="ISO8601")
            value = rows.loc[rows["run_id"] == step["run_id"], metric].iloc[0]
            color = "tab:red" if step["verdict"] == "regression" else "tab:green"
            ax.plot([moment], [value], marker="v" if step["change"] < 0 else "^", color=color, markersize=9)
            ax.annotate(f"{step['change']:+.0%}", (moment, value), textcoords="offset points", xytext=(6, -10),
                        color=color, fontsize=8)
        label = rows["experiment_label"].iloc[0]
        ax.set_title(textwrap.shorten(f"{rows['system_name'].iloc[0]}: {label}", 60) + f", {key[3]}p", fontsize=7)
        ax.set_ylabel(metric)
        ax.tick_params(axis="x", labelsize=6, labelrotation=30)
    suptitle(fig, f"History: {metric} by run (dashed: software changed; triangles: detected steps)")
    stamp(fig, runs)
    return fig


def input_figure(inputs: pd.DataFrame, runs: pd.DataFrame) -> Figure | None:
    """A bar per run that read files, as tall as its step from storage: compute alone (synthetic), the prep stall
    and the fetch stall on top (DS-Analyzer's split; a stall within noise below zero is drawn as none)."""
    measured = inputs.dropna(subset=["synthetic_step_ms", "cached_step_ms", "storage_step_ms"])
    if measured.empty:
        return None
    fig = _figure(max(5.0, 1.1 * len(measured) + 2), 4.2)
    ax = fig.subplots()
    x = np.arange(len(measured))
    storage = measured["storage_step_ms"].to_numpy(dtype=float)
    compute = np.minimum(measured["synthetic_step_ms"].to_numpy(dtype=float), storage)
    prep = np.clip(measured["cached_step_ms"].to_numpy(dtype=float) - compute, 0, storage - compute)
    parts = ((compute, "compute (synthetic)", "#4c72b0"), (prep, "prep stall (cached - synthetic)", "#dd8452"),
             (storage - compute - prep, "fetch stall (storage - cached)", "#c44e52"))  # a stall below noise: 0
    bottom = np.zeros(len(measured))
    for values, label, colour in parts:
        ax.bar(x, values, bottom=bottom, color=colour, label=label)
        bottom += values
    names = [f"{r.data_format}\n{r.num_nodes} node(s), {r.world_size} rank(s)" + ("\ninput-bound" if r.input_bound else "")
             for r in measured.itertuples()]
    ax.set_xticks(x, names, fontsize=7)
    ax.set_ylabel("step (ms), slowest rank, mean")
    ax.legend(fontsize=7)
    suptitle(fig, "Where the step goes when it reads files")
    stamp(fig, runs)
    return fig


def survey_figure(nodes: list[str], metrics: list[str], grid: list[list[float]], title: str) -> Figure:
    """The survey's node x metric table as colour: each value over its fleet's median, above 1 worse (red)."""
    width, height = 2.6 + 1.3 * len(metrics), 2.4 + 0.35 * len(nodes)
    fig = _figure(width, height)
    fig.subplots_adjust(bottom=1.6 / height, right=1 - 1.3 / width)  # room for the metric names and the colour bar
    ax = fig.add_subplot(1, 1, 1)
    values = np.array(grid, dtype=float)
    image = ax.imshow(np.log2(values), cmap="RdYlGn_r", vmin=-2, vmax=2, aspect="auto")
    ax.set_xticks(range(len(metrics)), [m.replace("_", " ") for m in metrics], rotation=30, ha="right")
    ax.set_yticks(range(len(nodes)), nodes)
    for i in range(len(nodes)):
        for j in range(len(metrics)):
            if not math.isnan(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="x worse than median (log2)")
    suptitle(fig, title, fontsize=10)
    return fig
