"""`hpcbench report`: records -> a self-contained HTML report, a Markdown summary and CSV tables."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from hpcbench import records
from hpcbench.files import write_atomic
from hpcbench.analysis import plots
from hpcbench.analysis.comm import communication_table, netbench_frame
from hpcbench.analysis.load import read_valid, runs_frame
from hpcbench.analysis.scaling import amdahl_fits, scaling_table


def build_report(paths: Iterable[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """Write report.html, report.md, scaling.csv (and the plots as PNG and SVG) into out_dir."""
    paths = list(paths)
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    found = read_valid(paths)  # each file read once
    runs = runs_frame(found)
    netbench = netbench_frame(found)
    if runs.empty and netbench.empty:
        raise ValueError(f"no valid ok records in {', '.join(map(str, paths))}")
    weak = scaling_table(runs, "weak")
    strong = scaling_table(runs, "strong")
    fits = amdahl_fits(weak, "weak")
    comm = communication_table(weak, runs, netbench)

    figures: dict[str, Figure | None] = {}
    if not runs.empty:
        figures["throughput"] = plots.throughput_figure(weak, runs)
        figures["efficiency"] = plots.efficiency_figure(weak, runs, "weak")
        if not strong.empty:
            figures["strong_efficiency"] = plots.efficiency_figure(strong, runs, "strong")
        figures["step_times_per_rank"] = plots.step_time_figure(runs)
        figures["engines"] = plots.engines_figure(weak, runs)
    if not netbench.empty:
        figures["busbw"] = plots.busbw_figure(netbench)
    images = {name: _save(fig, out / "plots" / name) for name, fig in figures.items() if fig is not None}

    tables = pd.concat([weak.assign(mode="weak"), strong.assign(mode="strong")], ignore_index=True)
    written = {"csv": out / "scaling.csv", "markdown": out / "report.md", "html": out / "report.html"}
    write_atomic(written["csv"], tables.to_csv(index=False))
    write_atomic(written["markdown"], _markdown(weak, strong, fits, comm, runs, netbench))
    write_atomic(written["html"], _html(weak, strong, fits, comm, runs, netbench, images))
    return written


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
        f"{len(runs)} training run(s), {netbench['run_id'].nunique() if not netbench.empty else 0} netbench run(s).",
        "Weak scaling keeps the per-process batch; strong scaling keeps the global batch. Efficiency is "
        "speedup / N against the 1-process, 1-node point of the same curve (`baseline_runs` names it). "
        "CI: 95 % percentile bootstrap of the median over all repeats of all runs of a point. "
        "Karp-Flatt e = (1/S - 1/N) / (1 - 1/N).",
        "Amdahl columns are PREDICTIONS from a fit to the measured points, not measurements.",
    ]


SHOWN = ["workload", "engine", "device", "batch_size", "global_batch_size", "num_nodes", "world_size", "num_runs",
         "samples_per_s", "ci95_low", "ci95_high", "cv", "speedup", "efficiency", "karp_flatt", "baseline_runs"]


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[c for c in SHOWN if c in frame] or frame.columns].round(4) if not frame.empty else frame


def _markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_none_\n"
    cells = [[str(c) for c in frame.columns]] + [[str(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "---|" * len(frame.columns))
    return "\n".join(lines) + "\n"


def _markdown(weak, strong, fits, comm, runs, netbench) -> str:
    parts = ["# hpcbench report", "", *_summary_lines(runs, netbench), "", "## Weak scaling", "",
             _markdown_table(_rounded(weak)), "## Strong scaling", "", _markdown_table(_rounded(strong)),
             "## Amdahl fit (predictions)", "", _markdown_table(fits.round(4)),
             "## Communication model", "", _markdown_table(comm.round(6))]
    return "\n".join(parts)


def _html(weak, strong, fits, comm, runs, netbench, images: dict[str, bytes]) -> str:
    def table(frame: pd.DataFrame) -> str:
        return frame.to_html(index=False, border=0, na_rep="-") if not frame.empty else "<p><em>none</em></p>"

    figures = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{html.escape(name.replace('_', ' '))}</figcaption></figure>"
        for name, png in images.items()
    )
    summary = "".join(f"<p>{html.escape(line)}</p>" for line in _summary_lines(runs, netbench))
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
{summary}
<h2>Plots</h2>{figures}
<h2>Weak scaling</h2>{table(_rounded(weak))}
<h2>Strong scaling</h2>{table(_rounded(strong))}
<h2>Amdahl fit (predictions, not measurements)</h2>{table(fits.round(4))}
<h2>Communication model</h2>{table(comm.round(6))}
</body></html>
"""
