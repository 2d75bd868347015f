"""`hpcbench report`: records -> a self-contained HTML report, a Markdown summary and CSV tables."""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hpcbench import records
from hpcbench.files import write_atomic
from hpcbench.analysis import plots
from hpcbench.analysis.breakdown import phase_table, straggler_table
from hpcbench.analysis.comm import communication_table, netbench_frame
from hpcbench.analysis.convergence import quality_figure, tta_table
from hpcbench.analysis.efficiency import (efficiency_table, engine_table, peaks_frame, precision_table, schedule_panel,
                                          stage_table)
from hpcbench.analysis.inputs import INPUT_HEADING, IOBENCH_HEADING, input_table, iobench_frame
from hpcbench.analysis.load import read_valid, runs_frame
from hpcbench.analysis.predict import predictions_frame
from hpcbench.analysis.scaling import ENGINE_COST_NOTED, INTERVALS, amdahl_fits, baselines_note, scaling_table, verdicts, with_intervals


@dataclass
class Section:
    """One system's part of the report: its curves, fits, communication model and plots."""

    name: str
    system_id: str
    network: str | None
    """The interconnect the records name (a profile's `network`, HPCBENCH_NETWORK), shown in the heading."""
    description: str
    weak: pd.DataFrame
    strong: pd.DataFrame
    fits: pd.DataFrame
    comm: pd.DataFrame
    stragglers: pd.DataFrame
    phases: pd.DataFrame
    efficiency: pd.DataFrame
    precisions: pd.DataFrame
    engines: pd.DataFrame
    stages: pd.DataFrame
    """Every rank of the runs that cut the model: a pipeline's stages side by side."""
    tta: pd.DataFrame
    inputs: pd.DataFrame
    """Runs that read files: DS-Analyzer's split and input-bound."""
    iobench: pd.DataFrame
    """What the storage delivers (iobench), beside netbench's network."""
    predictions: pd.DataFrame
    """`hpcbench predict`'s points for this system's experiments: shown apart, never pooled with measurements."""
    bandwidth: pd.DataFrame
    """netbench: each collective's peak bus bandwidth per scale, the table beside the busbw figure."""
    images: dict[str, bytes]

    @property
    def heading(self) -> str:
        return f"System {self.name} ({self.system_id})" + (f", network {self.network}" if self.network else "")


def build_report(paths: Iterable[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """Write report.html, report.md, scaling.csv (and the plots as PNG and SVG) into out_dir.

    One section per system: curves, fits and plots never mix machines. With several systems each
    has its plots in plots/<system name>-<system id>/, with one they are in plots/.
    """
    paths = list(paths)
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    found = read_valid(paths)  # each file read once
    runs = runs_frame(found)
    netbench = netbench_frame(found)
    iobench = iobench_frame(found)
    if runs.empty and netbench.empty and iobench.empty and not any(r.get("kind") == "survey" for _, r in found):
        raise ValueError(f"no valid ok records in {', '.join(map(str, paths))}")
    weak = scaling_table(runs, "weak")
    strong = scaling_table(runs, "strong")
    fits = amdahl_fits(weak, "weak")
    comm = communication_table(weak, runs, netbench)
    stragglers = straggler_table(runs)
    phases = phase_table(runs)
    efficiency = efficiency_table(runs, peaks_frame(found))
    precisions = precision_table(runs)
    engines = engine_table(runs)
    stages = stage_table(runs)
    tta = tta_table(runs)
    inputs = input_table(runs)
    predictions = predictions_frame(found)

    systems = sorted({*zip(runs["system_name"], runs["system_id"]), *zip(netbench["system_name"], netbench["system_id"]),
                      *zip(iobench["system_name"], iobench["system_id"])})
    sections = []
    for name, system_id in systems:
        def mine(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[(frame["system_name"] == name) & (frame["system_id"] == system_id)] if not frame.empty else frame

        folder = out / "plots" / (f"{_slug(name)}-{system_id}" if len(systems) > 1 else "")
        folder.mkdir(parents=True, exist_ok=True)
        figures = _figures(mine(weak), mine(strong), mine(runs), mine(netbench), mine(comm), mine(predictions))
        figures["pipeline_schedules"] = plots.schedule_figure(_pipelines(mine(engines), mine(runs), dict(found)), mine(runs))
        figures["input_split"] = plots.input_figure(mine(inputs), mine(runs))
        images = {fig_name: _save(fig, folder / fig_name) for fig_name, fig in figures.items() if fig is not None}
        network = next((v for v in (*mine(runs)["network"], *mine(netbench)["network"], *mine(iobench)["network"])
                        if pd.notna(v)), None)
        sections.append(Section(name, system_id, network, _describe(mine(runs), mine(netbench)), mine(weak), mine(strong),
                                mine(fits), mine(comm), mine(stragglers), mine(phases), mine(efficiency),
                                mine(precisions), mine(engines), mine(stages), mine(tta), mine(inputs), mine(iobench),
                                mine(predictions), bandwidth_table(mine(netbench)), images))

    tables = pd.concat([weak.assign(mode="weak"), strong.assign(mode="strong")], ignore_index=True)
    written = {"csv": out / "scaling.csv", "markdown": out / "report.md", "html": out / "report.html"}
    write_atomic(written["csv"], tables.to_csv(index=False))
    if not tta.empty:
        written["tta_csv"] = out / "time_to_accuracy.csv"
        write_atomic(written["tta_csv"], tta.to_csv(index=False))
    failed = _not_ok(found)
    surveys = _surveys(found, out / "plots")
    write_atomic(written["markdown"], _markdown(sections, runs, netbench, failed, surveys))
    write_atomic(written["html"], _html(sections, runs, netbench, failed, surveys))
    return written


def _surveys(found: list[tuple[Path, dict]], folder: Path) -> list[tuple[str, pd.DataFrame, list[str], dict[str, bytes]]]:
    """Each survey record: its heading, the node x metric table, the findings with their cost, the figure."""
    from hpcbench.analysis.survey import cost, diagnose, format_survey, ratios, survey_table

    made = []
    for _, record in sorted(found, key=lambda item: item[1]["run_id"]):
        if record.get("kind") != "survey" or record["status"] != "ok":
            continue
        findings = diagnose(record)
        header, rows = survey_table(record, findings)
        text = format_survey(record, findings, cost(record, findings)).splitlines()
        lines = text[text.index("(x: against the fleet's median; *: a finding)"):]
        heading = f"Survey {record['run_id']}: {len(record['metrics']['nodes'])} node(s) of {record['system']['name']}"
        nodes, metrics, grid = ratios(record)
        figure = plots.survey_figure(nodes, metrics, grid, heading)
        made.append((heading, pd.DataFrame(rows, columns=header), lines,
                     {"survey": _save(figure, folder / f"survey-{record['run_id']}")}))
    return made


def _figures(weak: pd.DataFrame, strong: pd.DataFrame, runs: pd.DataFrame, netbench: pd.DataFrame,
             comm: pd.DataFrame, predictions: pd.DataFrame) -> dict[str, Figure | None]:
    figures: dict[str, Figure | None] = {}
    if not predictions.empty and predictions["step_time_s"].notna().any():
        figures["prediction"] = plots.prediction_figure(predictions, weak, runs)
    if not runs.empty:
        if not weak.empty:
            figures["throughput"] = plots.throughput_figure(weak, runs)
            figures["efficiency"] = plots.efficiency_figure(weak, runs, "weak")
            figures["step_breakdown"] = plots.breakdown_figure(weak, comm, runs)
        if not strong.empty:
            figures["strong_efficiency"] = plots.efficiency_figure(strong, runs, "strong")
        figures["step_times_per_rank"] = plots.step_time_figure(runs)
        figures["engines"] = plots.engines_figure(weak, runs)
        figures["time_to_accuracy"] = quality_figure(runs)
    if not netbench.empty:
        figures["busbw"] = plots.busbw_figure(netbench)
    return figures


SCHEDULES_SHOWN = 6
STAGE_HEADING = ("Per rank of the runs that cut the model (every rank, not only rank 0: a pipeline's stages side by "
                 "side; step median, peak memory, measured bubble)")


def _pipelines(engines: pd.DataFrame, runs: pd.DataFrame, records_by_path: dict) -> list[tuple[str, list[list[list]]]]:
    """Per pipeline layout in the engines table (at most SCHEDULES_SHOWN), its newest run's per-rank actions."""
    if engines.empty or runs.empty:
        return []
    found = []
    for row in engines[engines["bubble_measured"].notna()].head(SCHEDULES_SHOWN).itertuples():
        same = runs[(runs["work_id"] == row.work_id) & (runs["world_size"] == row.world_size)]
        for path in same.sort_values("started", ascending=False)["path"]:
            panel = schedule_panel(records_by_path.get(Path(path)) or records_by_path.get(path) or {})
            if panel and panel[0] == row.layout:
                found.append(panel[1:])
                break
    return found


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "system"


def _describe(runs: pd.DataFrame, netbench: pd.DataFrame) -> str:
    """The system at the top of its section: hardware, software, and what was measured on it."""
    if runs.empty and netbench.empty:
        return "Storage measurements only (iobench)."
    first = (runs if not runs.empty else netbench).iloc[0]
    facts = [f"CPU {first.get('cpu_model')}"]
    for column, unit in (("cores_per_node", " cores"), ("memory_gib_per_node", " GiB")):
        if column in first and pd.notna(first[column]):
            facts.append(f"{int(first[column])}{unit} per node")
    if first.get("gpu_model"):
        facts.append(f"GPU {first['gpu_model']} x {first.get('gpus_per_node')}")
    facts.append(f"torch {first.get('torch')}")
    return (f"{'; '.join(facts)}. {len(runs)} training run(s) of {runs['experiment_id'].nunique() if not runs.empty else 0} "
            f"experiment(s), {netbench['run_id'].nunique() if not netbench.empty else 0} netbench run(s).")


def _save(fig: Figure, stem: Path) -> bytes:
    """Write the figure as PNG and SVG (each atomically); returns the PNG for embedding."""
    images = {}
    for suffix, kwargs in ((".png", {"dpi": 110}), (".svg", {})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix[1:], **kwargs)
        images[suffix] = buffer.getvalue()
        write_atomic(stem.with_suffix(suffix), images[suffix])
    return images[".png"]


def _summary_lines(runs: pd.DataFrame, netbench: pd.DataFrame) -> list[str]:
    return [
        f"{len(runs)} training run(s), {netbench['run_id'].nunique() if not netbench.empty else 0} netbench run(s). "
        "A curve is one experiment on one system: runs of different work or different machines are never pooled.",
        "Weak scaling keeps the per-process batch; strong scaling keeps the global batch. Efficiency is "
        "speedup / N against the 1-process, 1-node point of the same curve (`baseline_runs` names it). "
        "bare_efficiency divides instead by single-process training without the engine's gradient "
        "synchronisation, what a user means by 1: that run's throughput with its 1-process exposed "
        "communication taken out of the step (its global batch over its compute-only step). "
        "engine_cost_at_1 is the share of 1-process throughput the engine costs with nothing to communicate "
        f"(named under the table above {ENGINE_COST_NOTED:.0%}); it is the orange bar at 1 process in the step "
        "breakdown. "
        "ci95_low/ci95_high: 95 % percentile bootstrap of the median throughput over all repeats of all runs of a "
        "point. A value followed by [low,high] carries its 95 % interval: Student t of the mean throughput over the "
        "repeats, of the compute-only step over its window's steps, and of the data stall over the repeats; a "
        "difference takes both half-widths in quadrature, a ratio both far ends. "
        "Karp-Flatt e = (1/S - 1/N) / (1 - 1/N).",
        "Amdahl columns are PREDICTIONS from a curve fit to the measured points, a second opinion that knows nothing of the "
        "network. `hpcbench predict` records (a model of the gradient all-reduces over a fabric or the netbench-measured "
        "network, from a run's gradient-ready timeline) are drawn and tabled apart, labelled PREDICTION, never pooled "
        "with measurements.",
        "Exposed communication = step time - compute-only step time (the same steps without gradient "
        "synchronisation, timed after the repeats). One statistic per window: each window's mean step (its time "
        "over its steps), slowest rank, so that compute and exposed communication add up to the step the "
        "throughput implies. Overlap = 1 - exposed / the ring "
        "all-reduce bound from netbench. A straggler is a rank slowest in more than twice its fair share of "
        "the compute-only steps.",
    ]


EFFICIENCY_HEADING = ("Memory, FLOPs and energy per run (MFU: achieved TFLOP/s per device over the datasheet's dense "
                      "peak, and over the rate `hpcbench peak` measured; null where unknown, with the reason)")
PRECISION_HEADING = "Precision side by side (the same work, medians over runs)"
ENGINE_HEADING = ("Engines and layouts side by side (the same work at the same world size, medians over runs: "
                  "throughput, peak memory per rank, MFU, the pipeline bubble measured and analytic, exposed "
                  "communication, collectives per step; a warning where ranks competed for cores)")
TTA_HEADING = ("Time to accuracy (--mode tta): olympic mean over the seeds that reached the target, beside the "
               "throughput speedup of the same runs")
TTA_HIDDEN = ["system_name", "system_id", "experiment_id"]
PREDICTION_HEADING = ("PREDICTIONS (hpcbench predict: the run's gradient-ready timeline over a modelled network; "
                      "not measurements)")
PREDICTION_SHOWN = ["workload", "network_model", "algorithm", "num_nodes", "world_size", "step_time_s", "step_time_s_low",
                    "step_time_s_high", "efficiency", "ceiling_efficiency", "stragglers_s", "interference_s", "exposed_comm_s",
                    "framework_s", "limit", "refused", "from_run", "model_version"]


def _predicted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[PREDICTION_SHOWN].round(4) if not frame.empty else frame

SHOWN = ["workload", "experiment_label", "batch_size", "global_batch_size", "num_nodes", "world_size", "num_runs",
         "samples_per_s", "ci95_low", "ci95_high", "cv", "speedup", "efficiency", "bare_efficiency", "engine_cost_at_1",
         "exposed_comm_share", "data_stall_share", "karp_flatt", "warnings", "baseline_runs"]
"""The scaling tables' columns; each of scaling.INTERVALS is printed with its 95 % interval beside it."""


def _findings(section: Section) -> list[str]:
    """Findings first: each point's verdict in words (scaling.verdicts: what limits it, whether its numbers are the
    workload's alone or past a bound no measurement crosses). Contended points are left out of the Amdahl fits."""
    lines = [f"{mode} scaling, {line}" for mode, table in (("weak", section.weak), ("strong", section.strong))
             for line in verdicts(table)]
    if any("not this workload's alone" in line or "baseline was contended" in line for line in lines):
        lines.append("Contended points: other processes (or another virtual machine, as steal) took more of the CPUs "
                     "the run could use than its records' threshold (metrics.system_load.contended_share); they are "
                     "marked in the tables and left out of the Amdahl fits. Rerun them on a quiet machine.")
    return lines or ["Nothing to flag: no point contended, noisy, communication-bound or past a bound a measurement "
                     "cannot cross."]


def _engine_costs(table: pd.DataFrame) -> list[str]:
    """Each curve whose engine costs more than ENGINE_COST_NOTED at one process, as a line under its table."""
    return [f"{line}\n" for line in baselines_note(table)[1:]]


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    bounds = [f"{c}{end}" for c in SHOWN if c in INTERVALS for end in ("_low", "_high") if f"{c}{end}" in frame]
    shown = frame[[c for c in SHOWN if c in frame] + bounds].round(4)
    if "data_stall_share" in shown and shown["data_stall_share"].isna().all():  # shown only for runs that read data
        shown = shown.drop(columns=["data_stall_share", "data_stall_share_low", "data_stall_share_high"], errors="ignore")
    return with_intervals(shown)


def _markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_none_\n"
    cells = [[str(c) for c in frame.columns]] + [[str(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "---|" * len(frame.columns))
    return "\n".join(lines) + "\n"


def _not_ok(found: list[tuple[Path, dict]]) -> list[str]:
    """Every training record that is not `ok` (failed, interrupted), one line each: counted and named, never
    silently dropped (none of them is in any table)."""
    lines = [f"{record['status']}: {path.name} ({record.get('reason') or 'no reason recorded'})" for path, record in found
             if record.get("kind", "train") == "train" and record.get("status") != "ok"]
    return [f"{len(lines)} record(s) not ok, left out of every table:", *lines] if lines else []


def bandwidth_table(netbench: pd.DataFrame) -> pd.DataFrame:
    """Per collective, backend and scale: the peak bus bandwidth over message sizes (median over runs) and the
    size it was reached at, and the bandwidth at 1 MiB (latency-bound sizes are in the figure)."""
    columns = ["collective", "backend", "device", "num_nodes", "world_size", "runs", "peak_busbw_gbps", "at_size_bytes",
               "busbw_gbps_at_1MiB"]
    if netbench.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, group in netbench.groupby(["collective", "backend", "device", "num_nodes", "world_size"], sort=True):
        by_size = group.groupby("size_bytes")["busbw_gbps"].median()
        rows.append([*key, group["run_id"].nunique(), by_size.max(), int(by_size.idxmax()), by_size.get(2**20, np.nan)])
    return pd.DataFrame(rows, columns=columns)


def _tables(section: Section) -> list[tuple[str, pd.DataFrame, list[str]]]:
    """The section's tables, each (heading, table, lines under it); a table with nothing in it is left out, so a
    network sweep's report is its bandwidth, not fifteen empty headings."""
    found = [
        ("Weak scaling", _rounded(section.weak), _engine_costs(section.weak)),
        ("Strong scaling", _rounded(section.strong), _engine_costs(section.strong)),
        (PREDICTION_HEADING, _predicted(section.predictions), []),
        ("Amdahl fit (a curve fit of the measured points: a second opinion, not a measurement)",
         section.fits.round(4), []),
        ("Communication: exposed (measured) and the all-reduce bound (predicted)", section.comm.round(6), []),
        ("Collective bandwidth (netbench: peak bus bandwidth over message sizes, median over runs)",
         section.bandwidth.round(3), []),
        ("Stragglers", section.stragglers.round(4), []),
        ("Step phases (--phases: synchronised between phases, so overlap is lost)", section.phases.round(4), []),
        (EFFICIENCY_HEADING, section.efficiency.round(4), []),
        (PRECISION_HEADING, section.precisions.round(4), []),
        (ENGINE_HEADING, section.engines.round(4), []),
        (STAGE_HEADING, section.stages.round(4), []),
        (INPUT_HEADING, section.inputs.round(4), []),
        (IOBENCH_HEADING, section.iobench.round(3), []),
        (TTA_HEADING, section.tta.drop(columns=TTA_HIDDEN).round(4), []),
    ]
    return [(heading, table, lines) for heading, table, lines in found if not table.empty]


def _markdown(sections: list[Section], runs: pd.DataFrame, netbench: pd.DataFrame, failed: list[str],
              surveys: list[tuple[str, pd.DataFrame, list[str], dict[str, bytes]]]) -> str:
    parts = ["# hpcbench report", "", *(f"- {line}" if i else line for i, line in enumerate(failed)), ""]
    for heading, table, lines, _ in surveys:  # what holds a job back first: the node to leave out
        parts += [f"## {heading}", "", _markdown_table(table), *(f"- {line.strip()}" for line in lines), ""]
    for section in sections:
        parts += [f"## {section.heading}", "", section.description, "",
                  "### Findings", "", *(f"- {line}" for line in _findings(section)), ""]
        for heading, table, lines in _tables(section):
            parts += [f"### {heading}", "", _markdown_table(table), *lines]
    parts += ["", "## Definitions", "", *_summary_lines(runs, netbench)]  # findings first, definitions last
    return "\n".join(parts)


def _html(sections: list[Section], runs: pd.DataFrame, netbench: pd.DataFrame, failed: list[str],
          surveys: list[tuple[str, pd.DataFrame, list[str], dict[str, bytes]]]) -> str:
    def table(frame: pd.DataFrame) -> str:
        return frame.to_html(index=False, border=0, na_rep="-") if not frame.empty else "<p><em>none</em></p>"

    def paragraphs(lines: list[str]) -> str:
        return "".join(f"<p>{html.escape(line)}</p>" for line in lines)

    def figures(images: dict[str, bytes]) -> str:
        return "".join(
            f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            f"<figcaption>{html.escape(name.replace('_', ' '))}</figcaption></figure>"
            for name, png in images.items()
        )

    body = "".join(f"<h2>{html.escape(heading)}</h2>{table(frame)}{paragraphs(lines)}{figures(images)}"
                   for heading, frame, lines, images in surveys) + "".join(
        f"<h2>{html.escape(s.heading)}</h2><p>{html.escape(s.description)}</p>"
        f"<h3>Findings</h3>{paragraphs(_findings(s))}"
        f"<h3>Plots</h3>{figures(s.images)}"
        + "".join(f"<h3>{html.escape(heading)}</h3>{table(frame)}{paragraphs(lines)}" for heading, frame, lines in _tables(s))
        for s in sections
    )
    failures = "".join(f"<p>{html.escape(line)}</p>" for line in failed)
    definitions = "".join(f"<p>{html.escape(line)}</p>" for line in _summary_lines(runs, netbench))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hpcbench report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; }}
table {{ border-collapse: collapse; font-size: 12px; margin-bottom: 1.5em; }}
td, th {{ padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right; }}
img {{ max-width: 100%; }} figure {{ margin: 1em 0; }}
</style></head><body>
<h1>hpcbench report</h1>
<p>Schema version {records.SCHEMA_VERSION}; generated {html.escape(records.utc_now().isoformat(timespec="seconds"))}.</p>
{failures}
{body}
<h2>Definitions</h2>
{definitions}
</body></html>
"""
