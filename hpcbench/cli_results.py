"""The commands over results gathered over time and clusters: index, history, compare, check, references.

Argument parsing and printing only; the work is in hpcbench.analysis (index, history, compare, references).
Each takes record files, folders and indexes alike (an index is queried, not its records read).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpcbench.errors import ConfigError


def add_commands(commands: Any, wanted: Callable[[str], bool]) -> None:
    """The subcommands, on the main parser's subparsers; the arguments only of those `wanted` (their defaults
    come from the analysis modules, which import pandas and matplotlib: ~1 s another command need not pay)."""
    for name, (text, add_flags) in COMMANDS.items():
        parser = commands.add_parser(name, help=text)
        if wanted(name):
            add_flags(parser)


def _add_index(index: argparse.ArgumentParser) -> None:
    from hpcbench.analysis.index import DEFAULT_DB

    index.add_argument("paths", nargs="+", metavar="DIR", help="folders (searched recursively) or record files")
    index.add_argument("--db", default=str(DEFAULT_DB), help=f"the index file (default {DEFAULT_DB})")
    index.add_argument("--lock-timeout", type=float, default=120.0, help="seconds to wait for another writer (default 120)")


def _add_history(history: argparse.ArgumentParser) -> None:
    from hpcbench.analysis.history import DEFAULT_ALPHA as HISTORY_ALPHA
    from hpcbench.analysis.history import METRICS

    history.add_argument("paths", nargs="+", metavar="RESULTS", help="record files, folders or an index")
    history.add_argument("--metric", default="samples_per_s", choices=list(METRICS), help="default samples_per_s")
    history.add_argument("--system", default=None, help="only this system name")
    history.add_argument("--experiment", default=None, help="only experiments whose id is this or whose label contains it")
    history.add_argument("--world-size", type=int, default=None, help="only this process count")
    history.add_argument("--tolerance", default="5%", help="smallest step reported (default 5%%)")
    history.add_argument("--alpha", type=float, default=HISTORY_ALPHA,
                         help=f"false-alarm level per series, corrected for the splits tried (default {HISTORY_ALPHA})")
    history.add_argument("--runs", action="store_true", help="print every run of every series (default: when one series)")
    history.add_argument("--plot", default=None, metavar="FILE", help="write the history figure (.png or .svg)")


def _add_check(check: argparse.ArgumentParser) -> None:
    check.add_argument("paths", nargs="+", metavar="RUNS", help="record files, folders or an index")
    check.add_argument("--references", required=True, metavar="FILE.toml", help="see `hpcbench references`")


def _add_references(references: argparse.ArgumentParser) -> None:
    references.add_argument("paths", nargs="+", metavar="RUNS", help="record files, folders or an index")
    references.add_argument("--metric", default="samples_per_s", help="default samples_per_s")


def _add_compare(compare: argparse.ArgumentParser) -> None:
    from hpcbench.analysis.compare import DEFAULT_ALPHA

    compare.add_argument("baseline", help="baseline records (file, folder or index)")
    compare.add_argument("new", help="new records (file, folder or index)")
    compare.add_argument("--tolerance", default="5%", help="allowed slowdown, e.g. 5%% or 0.05 (default 5%%)")
    compare.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                         help=f"significance level of the test (default {DEFAULT_ALPHA})")
    compare.add_argument("--across-systems", action="store_true",
                         help="pair the same experiment and scale on different systems (each row names both)")


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "index": ("add the records under folders to a SQLite index (incremental; the records stay the truth, the index "
              "can be rebuilt from them)", _add_index),
    "history": ("each curve point's metric over time, software changes marked, steps detected and attributed",
                _add_history),
    "compare": ("throughput per configuration, new vs baseline, with a 95%% interval and a test over the runs (or one "
                "run's repeats); exit 1 on a significant slowdown beyond the tolerance", _add_compare),
    "check": ("runs against a reference file (value, lower, upper, unit per system, experiment and scale); exit 1 "
              "when one is out of bounds or missing", _add_check),
    "references": ("a reference file from a known-good set of runs (to stdout)", _add_references),
}
"""Each command: its help and what adds its arguments."""


def run(args: argparse.Namespace) -> int:
    return {"index": cmd_index, "history": cmd_history, "compare": cmd_compare, "check": cmd_check,
            "references": cmd_references}[args.command](args)


def _existing(field_name: str, paths: list[str]) -> list[str]:
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise ConfigError(field_name, f"no such file or folder: {missing[0]}")
    return paths


def _tolerance(text: str) -> float:
    from hpcbench.analysis.compare import parse_tolerance

    try:
        return parse_tolerance(text)
    except ValueError:
        raise ConfigError("tolerance", f"{text!r} is not a percentage such as 5% or a fraction such as 0.05 in [0, 1)") from None


def _alpha(value: float) -> float:
    if not 0 < value < 1:
        raise ConfigError("alpha", f"must be in (0, 1), got {value!r}")
    return value


def cmd_index(args: argparse.Namespace) -> int:
    from hpcbench.analysis.index import IndexBusy, update_index

    try:
        done = update_index(_existing("DIR", args.paths), Path(args.db), lock_timeout_s=args.lock_timeout)
    except IndexBusy as exc:
        print(f"hpcbench index: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        raise ConfigError("db", str(exc)) from None
    print(done.summary(Path(args.db)))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    import pandas as pd

    from hpcbench.analysis.history import history
    from hpcbench.analysis.index import Selection, load_runs

    min_change, alpha = _tolerance(args.tolerance), _alpha(args.alpha)
    selection = Selection(system=args.system, experiment=args.experiment, world_size=args.world_size)
    runs = load_runs(_existing("RESULTS", args.paths), repeats=False, selection=selection)
    points, steps = history(runs, args.metric, alpha=alpha, min_change=min_change)
    if points.empty:
        print(f"hpcbench history: error: no run with {args.metric} matches", file=sys.stderr)
        return 1
    keys = ["hardware_id", "experiment_id", "num_nodes", "world_size"]
    series = points.groupby(keys, sort=False)
    summary = series.agg(system=("system_name", "first"), experiment=("experiment_label", "first"),
                         runs=("run", "size"), first=("started", "first"), last=("started", "last"),
                         software_changes=("changed", lambda c: int((c != "").sum())),
                         last_value=(args.metric, "last")).reset_index()
    stepped = steps.groupby(keys).size().rename("steps")
    summary = summary.join(stepped, on=keys).fillna({"steps": 0}).astype({"steps": int})
    with pd.option_context("display.width", 250, "display.max_colwidth", 70):
        print(f"history of {args.metric}: {len(summary)} series, {len(points)} runs "
              f"(a series: one system's hardware, one experiment, one scale)")
        shown = ["system", "experiment", "num_nodes", "world_size", "runs", "first", "last", "software_changes",
                 "last_value", "steps"]
        print(summary.assign(first=summary["first"].str[:16], last=summary["last"].str[:16])[shown].to_string(index=False))
        if args.runs or len(summary) == 1:
            for _, rows in series:
                print(f"\n{rows['system_name'].iloc[0]}: {rows['experiment_label'].iloc[0]}, "
                      f"{rows['num_nodes'].iloc[0]} node(s), {rows['world_size'].iloc[0]} process(es)")
                print(rows[["run", "started", "run_id", args.metric, "changed"]].assign(
                    started=rows["started"].str[:19]).to_string(index=False))
        print(f"\n{len(steps)} step(s) (p < {alpha:g} corrected for the splits tried, and beyond {min_change:.1%}):")
        for _, step in steps.iterrows():
            print(f"  {step['verdict']}: {step['system_name']}: {step['experiment_label']}, {step['world_size']}p: "
                  f"{step['change']:+.1%} [{step['ci95_low']:+.1%}, {step['ci95_high']:+.1%}] from run {step['run']} "
                  f"({step['started'][:19]}, {step['run_id']}), confidence {step['confidence']:.4f}; "
                  f"software: {step['changed']}")
    if args.plot:
        from hpcbench.analysis.plots import history_figure

        history_figure(points, steps, args.metric, runs).savefig(args.plot, dpi=110)
        print(f"-> {args.plot}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from hpcbench.analysis.compare import compare
    from hpcbench.analysis.index import load_runs

    tolerance, alpha = _tolerance(args.tolerance), _alpha(args.alpha)
    _existing("baseline", [args.baseline])
    _existing("new", [args.new])
    table = compare(load_runs([args.baseline]), load_runs([args.new]), tolerance, args.across_systems, alpha)
    if table.empty:
        hint = "" if args.across_systems else " on the same system (--across-systems pairs different systems)"
        print(f"hpcbench compare: error: no configuration appears in both sets of records{hint}", file=sys.stderr)
        return 1
    shown = table.drop(columns=["system_id", "experiment_id", "scaling", "procs_per_node", "regressed"], errors="ignore")
    shown["change"] = [f"{c:+.1%} [{lo:+.1%}, {hi:+.1%}]"
                       for c, lo, hi in zip(table["change"], table["ci95_low"], table["ci95_high"])]
    print(shown.drop(columns=["ci95_low", "ci95_high"]).to_string(index=False, formatters={
        "baseline_samples_per_s": "{:.1f}".format, "new_samples_per_s": "{:.1f}".format, "p_value": "{:.3g}".format}))
    counts = table["verdict"].value_counts()
    print(f"\n{counts.get('slower', 0)} of {len(table)} configuration(s) slower (significant at p < {alpha:g} and "
          f"beyond {tolerance:.1%}); " + ", ".join(f"{counts[v]} {v}" for v in counts.index if v != "slower"))
    return 1 if counts.get("slower", 0) else 0


def cmd_check(args: argparse.Namespace) -> int:
    from hpcbench.analysis.index import load_runs
    from hpcbench.analysis.references import check, read_references

    references = read_references(Path(_existing("references", [args.references])[0]))
    table = check(load_runs(_existing("RUNS", args.paths)), references)
    for _, row in table.iterrows():
        measured = "no matching run" if row["status"] == "no run" else f"{row['measured']:.4g} {row['unit']} ({row['change']:+.1%})"
        print(f"{row['status']:>6}  {row['system']}: {row['experiment']}, {row['num_nodes']} node(s) {row['world_size']}p "
              f"{row['metric']}: {measured}; reference {row['reference']:.4g} in [{row['low']:.4g}, {row['high']:.4g}]")
    failed = int((table["status"] != "pass").sum())
    print(f"{failed} of {len(table)} reference(s) failed" if failed else f"all {len(table)} reference(s) passed")
    return 1 if failed else 0


def cmd_references(args: argparse.Namespace) -> int:
    from hpcbench.analysis.index import load_runs
    from hpcbench.analysis.references import UNITS, format_references, references_from

    if args.metric not in UNITS:
        raise ConfigError("metric", f"{args.metric!r} is not one of: {', '.join(UNITS)}")
    runs = load_runs(_existing("RUNS", args.paths))
    made = references_from(runs, args.metric)
    if not made:
        print("hpcbench references: error: no run to take references from", file=sys.stderr)
        return 1
    print(format_references(made, f"{len(runs)} run(s) in {', '.join(args.paths)}"))
    return 0
