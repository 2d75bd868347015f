"""Command line: argument parsing only; every subcommand calls library functions.

Bad input exits with status 2 and one line naming the field and what is allowed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from hpcbench import __version__
from hpcbench.cli_cluster import add_job_flags, sweep_folder, write_and_submit
from hpcbench.cli_data import DATA_COMMANDS, add_data_commands, run_data_command
from hpcbench.cli_probes import PROBE_COMMANDS, add_probe_commands, add_survey_command, run_probe_command, run_survey_command
from hpcbench.cli_results import COMMANDS as RESULTS_COMMANDS
from hpcbench.cli_results import add_commands as add_results_commands
from hpcbench.cli_results import run as run_results_command
from hpcbench.config import RunConfig
from hpcbench.errors import ConfigError
from hpcbench.records import check_out_dir

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hpcbench.matrix import SweepMatrix


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line on stderr (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def one_line(text: str) -> str:
    """Errors quote user input, which may hold line breaks; the message must stay one line."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _int_list(field_name: str, text: str) -> list[int]:
    items = text.split(",")
    if any(not item.strip() for item in items):
        raise ConfigError(field_name, f"{text!r} has an empty item; give comma-separated integers, e.g. 1,2,4")
    try:
        return [int(item) for item in items]
    except ValueError:
        raise ConfigError(field_name, f"{text!r} is not a comma-separated list of integers") from None


def _name_list(field_name: str, text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise ConfigError(field_name, f"{text!r} has an empty item; give comma-separated names, e.g. mlp,cnn")
    return items


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; the arguments only of the command `argv` names (all of them without argv) where
    building them imports much: the run flags list every plug-in's options (the plug-ins and torch, ~3 s), the
    results and data commands' defaults live in pandas- and torch-importing modules. So `status`, polled every
    few seconds beside running jobs, costs 0.1 s of CPU instead of 2.3 s here (a poller at 1 s took most of a core)."""
    named = next((arg for arg in argv if not arg.startswith("-")), None) if argv is not None else None

    def wanted(command: str) -> bool:
        return argv is None or command == named
    parser = OneLineParser(prog="hpcbench", description="Distributed training benchmarks with honest scaling numbers.")
    parser.add_argument("--version", action="version", version=f"hpcbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    run = commands.add_parser("run", help="run one workload on N local processes and write its record")
    sweep = commands.add_parser("sweep", help="run a grid of experiments x process counts and print the scaling table")
    if wanted("run"):
        _add_run_flags(run)
    if wanted("sweep"):
        _add_sweep_flags(sweep)

    listing = commands.add_parser("list", help="list the workloads (defaults, real data), the engines (options), or the "
                                  "fabrics `hpcbench predict --fabric` knows")
    listing.add_argument("what", nargs="?", default="workloads", choices=["workloads", "engines", "fabrics"])

    for name, text in (("render", "write the job scripts of a cluster sweep (one job per node count + a report job)"),
                       ("submit", "render a cluster sweep and submit it: the report job runs after all points")):
        cluster = commands.add_parser(name, help=text)
        if not wanted(name):
            continue
        cluster.add_argument("file", nargs="?", metavar="FILE.toml", help="a sweep file: one job per experiment and "
                             "node count (see jobs/sweeps/)")
        add_job_flags(cluster, required=True, what="WORKLOAD sweep")
        _add_run_flags(cluster, skip=("num_procs", "out_dir"))

    status = commands.add_parser("status", help="pending / running / done / failed for each job of a submitted sweep")
    status.add_argument("sweep_dir", metavar="SWEEP", help="the --sweep-dir of `hpcbench submit`")

    peak = commands.add_parser("peak", help="achievable matmul TFLOP/s of this device (a MAMF-style sweep), as a record: "
                               "the measured denominator for MFU")
    peak.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    peak.add_argument("--precision", default="fp32", help="fp32, tf32, bf16 or fp16 (tf32 and fp16: cuda only)")
    peak.add_argument("--sizes", default=None, help="comma-separated square matmul sizes (default: cpu 256..2048, "
                      "cuda 4096..16384)")
    peak.add_argument("-n", "--iters", type=int, default=10, help="timed multiplications per size (default 10)")
    peak.add_argument("-w", "--warmup", type=int, default=3, help="untimed multiplications first (default 3)")
    peak.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    peak.add_argument("--out", default="results", help="folder for the record")

    report = commands.add_parser("report", help="records -> HTML report with plots, Markdown summary, CSV table")
    report.add_argument("paths", nargs="+", metavar="RESULTS", help="record files or folders (searched recursively)")
    report.add_argument("-o", "--out", required=True, help="folder for report.html, report.md, scaling.csv, plots/")

    predict = commands.add_parser("predict", help="step time, efficiency and limiting term at scales not run, from a run's "
                                  "gradient-ready timeline and a fabric file or netbench records; writes a prediction record")
    predict.add_argument("paths", nargs="+", metavar="RECORDS", help="training records (files or folders) with a compute-only window")
    network = predict.add_mutually_exclusive_group()
    network.add_argument("--fabric", default=None, help="a fabric file, or the name of one in jobs/fabrics (e.g. h100-ndr)")
    network.add_argument("--netbench", default=None, metavar="DIR", help="netbench records of the same system (alpha and beta are fitted)")
    predict.add_argument("--iobench", default=None, metavar="DIR", help="iobench records of the same system: runs that "
                         "read files (--data files) get the input term (input-bound where storage feeds a rank slower "
                         "than it trains)")
    predict.add_argument("--nodes", required=True, help="comma-separated node counts, e.g. 1,2,4,8")
    predict.add_argument("--gpus-per-node", type=int, required=True, help="processes (GPUs) per node")
    predict.add_argument("--algorithm", default="ring,tree", help="all-reduce algorithm(s): ring, tree, hierarchical "
                         "(default ring,tree: which one NCCL would pick is not guessed)")
    predict.add_argument("--scaling", default="weak", choices=("weak", "strong"), help="weak: the run's batch per process; "
                         "strong: --global-batch-size split over the processes (needs runs at each per-process batch)")
    predict.add_argument("--global-batch-size", type=int, default=None, help="with --scaling strong")
    predict.add_argument("--out", default=None, help="folder for the prediction record (default: beside the first run)")
    source = predict.add_mutually_exclusive_group()
    source.add_argument("--compute-samples-per-s", type=float, default=None, metavar="N",
                        help="compute source: a published single-GPU throughput at the run's batch (needed for a GPU fabric "
                             "when the run computed elsewhere)")
    source.add_argument("--compute-step-ms", type=float, default=None, metavar="T", help="compute source: the step time on the target device")
    predict.add_argument("--survey", default=None, metavar="DIR", help="a survey of the target cluster (`hpcbench "
                         "survey`): its devices' measured spread and per-step jitter and its nodes' link rates replace "
                         "the shared defaults (the default fleet printed beside it)")
    predict.add_argument("--fleet-spread", type=float, default=None, metavar="F",
                         help="devices' speed spread as a fraction of the median (default for GPUs 0.08, arXiv 2208.11035; CPUs 0)")
    predict.add_argument("--interference", type=float, default=None, metavar="F", help="compute slowdown while an all-reduce "
                         "runs beside it (default: measured by the run, else 0.189 for GPUs, arXiv 2507.03114; CPUs 0)")
    predict.add_argument("--syncs-per-step", type=int, default=1, metavar="K",
                         help="global synchronisations per optimizer step (e.g. a per-micro-step barrier): stragglers paid K times")
    predict.add_argument("--no-overlap", action="store_true", help="gradients all-reduced after backward in one bucket "
                         "(clipped by global norm first): nothing hides them")

    add_results_commands(commands, wanted)
    add_data_commands(commands, wanted)
    add_probe_commands(commands)
    add_survey_command(commands)
    return parser


LOCAL_RANK_COMMANDS = ("run", "sweep", "netbench", "iobench", "survey")
"""The commands that start ranks on this machine: they start a zygote early and exit without teardown."""


def program() -> None:
    """The `hpcbench` command: main(), then exit without the interpreter's teardown after the commands that
    start ranks (0.6-0.9 s here with torch loaded). What they write is closed by then: records are renamed
    into place whole, output is flushed below."""
    argv = sys.argv[1:]
    code = main()
    if argv and argv[0] in LOCAL_RANK_COMMANDS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _start_warm_early(argv: list[str]) -> None:
    """The commands that start local ranks start their zygote first, so its imports (torch, hpcbench) run
    while this process imports the same for its flags: ~2 s of a run's start-up hidden (hpcbench.launch.warm)."""
    if argv and argv[0] in LOCAL_RANK_COMMANDS and not {"-h", "--help"} & set(argv):
        from hpcbench.errors import ConfigError
        from hpcbench.launch.warm import start_early

        try:
            start_early()
        except ConfigError:
            pass  # refused with the other input below


def _add_run_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    from hpcbench.flags import add_run_arguments

    add_run_arguments(parser, skip=skip)


def _add_sweep_flags(sweep: argparse.ArgumentParser) -> None:
    from hpcbench.engines import ENGINES
    from hpcbench.matrix import DEFAULT_WORKLOADS

    sweep.add_argument("file", nargs="?", metavar="FILE.toml", help="a sweep file (see jobs/sweeps/); flags given "
                       "beside it override its values")
    sweep.add_argument("--workloads", default=None, help=f"comma-separated (default: {','.join(DEFAULT_WORKLOADS)})")
    sweep.add_argument("--nproc", dest="nproc_list", default=None, help="comma-separated process counts (default: 1,2,4,… up to the cores)")
    sweep.add_argument("--engine", default=None,
                       help=f"comma-separated engines, each a curve of its own: {', '.join(ENGINES.names())} (default: {RunConfig.engine})")
    sweep.add_argument("--seeds", type=int, default=None, help="runs per point with seeds --seed, --seed + 1, … "
                       "(default 1; time to accuracy reports all and their olympic mean)")
    sweep.add_argument("--rounds", type=int, default=None, help="run the whole grid this many times, point after point "
                       "(1, 2, 1, 2, …), so drift hits every point alike; a point's runs pool (default 1)")
    _add_run_flags(sweep, skip=("workload", "num_procs", "engine"))


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the program itself (not a test calling in): start the ranks' interpreter beside ours
        argv = sys.argv[1:]
        _start_warm_early(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        if args.command in LOCAL_RANK_COMMANDS:
            from hpcbench.launch.warm import start_mode
            from hpcbench.progress import progress_mode

            progress_mode()  # a bad HPCBENCH_PROGRESS or HPCBENCH_START is refused here, before any rank starts
            start_mode()
        if args.command == "run":
            return cmd_run(args)
        if args.command == "sweep":
            return cmd_sweep(args)
        if args.command in ("render", "submit"):
            return cmd_cluster(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command in PROBE_COMMANDS:
            return run_probe_command(args, _int_list)
        if args.command == "survey":
            return run_survey_command(args, _int_list)
        if args.command == "peak":
            return cmd_peak(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command in DATA_COMMANDS:
            return run_data_command(args)
        if args.command in RESULTS_COMMANDS:
            return run_results_command(args)
        if args.command == "predict":
            return cmd_predict(args)
        return cmd_list(args.what)
    except ConfigError as exc:
        print(f"hpcbench {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hpcbench {args.command}: interrupted", file=sys.stderr)
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    from hpcbench.flags import config_from_namespace
    from hpcbench.launch import local
    from hpcbench.resolve import resolve

    cfg = resolve(config_from_namespace(args))
    check_out_dir(cfg.out_dir)
    try:
        local.run_local(cfg)
    except local.RunInterrupted as exc:
        print(f"hpcbench run: {exc} (record: {exc.record_path})", file=sys.stderr)
        return 128 + exc.signum
    except local.RunFailed as exc:
        print(f"hpcbench run: failed: {exc} (record: {exc.record_path})", file=sys.stderr)
        return 1
    return 0


def sweep_matrix(args: argparse.Namespace, workloads: list[str] | None, engines: list[str] | None) -> SweepMatrix:
    """The sweep file's matrix (or the defaults), with the flags given beside it on top."""
    from hpcbench.flags import given_engine_options, given_options, given_run_values
    from hpcbench.matrix import SweepMatrix, load_sweep_file

    matrix = load_sweep_file(args.file) if args.file else SweepMatrix()
    matrix.workloads = workloads or matrix.workloads
    matrix.engines = engines or matrix.engines
    matrix.run_values.update({k: v for k, v in given_run_values(args).items() if k not in ("workload", "engine")})
    matrix.shared_options = given_options(args)
    for engine, options in given_engine_options(args).items():
        matrix.engine_options.setdefault(engine, {}).update(options)
    return matrix


def cmd_sweep(args: argparse.Namespace) -> int:
    from hpcbench.analysis import format_scaling_table, load_records, scaling_table
    from hpcbench.analysis.scaling import baselines_note, verdicts
    from hpcbench.sweep import plan_grid, run_grid

    matrix = sweep_matrix(args, args.workloads and _name_list("workloads", args.workloads),
                          args.engine and _name_list("engine", args.engine))
    if args.nproc_list:
        matrix.process_counts = _int_list("nproc", args.nproc_list)
    if args.seeds is not None:
        matrix.seeds = args.seeds
    if args.rounds is not None:
        matrix.rounds = args.rounds
    grid = plan_grid(matrix)
    check_out_dir(grid[0].out_dir)
    outcome = run_grid(grid)

    out = Path(grid[0].out_dir).resolve()
    print()
    runs = load_records(outcome.paths)
    for mode in dict.fromkeys(cfg.scaling for cfg in grid):
        print(f"{mode} scaling:")
        table = scaling_table(runs, mode)
        print(format_scaling_table(table, compact=True))
        if table["bare_efficiency"].notna().any():
            print("\n".join(baselines_note(table)))
        said = verdicts(table)
        if said:
            print("what each point says:", *(f"  - {line}" for line in said), sep="\n")
    if any(cfg.mode == "tta" for cfg in grid):
        from hpcbench.analysis.convergence import format_tta_table, tta_table

        print("\ntime to accuracy (seconds from the first step, evaluations included; speedups against the fewest "
              "processes):")
        print(format_tta_table(tta_table(runs)))
    print(f"\n{len(outcome.paths)} record(s) in {out}; threads per process: {grid[0].num_threads}")
    print(f"plots and report: hpcbench report {out} -o {out / 'report'}")
    for failure in outcome.failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    if outcome.interrupted:
        return 128 + outcome.interrupted.signum
    return 1 if outcome.failures else 0


def cmd_cluster(args: argparse.Namespace) -> int:
    """Validate everything, render every script in memory, then write (and for submit, submit)."""
    from hpcbench.launch.jobs import load_profile, plan_sweep
    from hpcbench.resolve import data_dir_unseen

    profile = load_profile(args.profile)
    sweep_dir = sweep_folder(args.sweep_dir)
    matrix = sweep_matrix(args, args.workload and [args.workload], args.engine and [args.engine])
    if matrix.rounds != 1:
        raise ConfigError("rounds", "applies to local sweeps (`hpcbench sweep`) only (submit the sweep again for "
                          "another round)")
    if matrix.seeds != 1:
        raise ConfigError("seeds", "applies to local sweeps (`hpcbench sweep`) only; a cluster sweep runs one seed "
                          "(--seed) per job")
    experiments = matrix.experiments()
    node_counts = _int_list("nodes", args.nodes) if args.nodes else matrix.node_counts or [1, 2]
    specs = []
    for number, experiment in enumerate(experiments, start=1):
        cfg = dataclasses.replace(experiment, out_dir=str(sweep_dir / "records"))
        several = len(experiments) > 1
        job_name = args.job_name or f"hpcbench-{cfg.workload}"
        specs += plan_sweep(
            cfg, profile=profile, launcher=args.launcher, node_counts=node_counts,
            tasks_per_node=args.tasks_per_node or matrix.tasks_per_node or 1, threads_per_task=cfg.num_threads,
            sweep_dir=sweep_dir, job_name=f"{job_name}-{number:02d}" if several else job_name,
            script_prefix=f"job_{number:02d}-{cfg.workload}_" if several else "job_",
        )
    notes = [f"data-dir: {data_dir} is not on this host; the job's ranks check it when it starts (one that cannot "
             "read it ends the job with one line)" for data_dir in dict.fromkeys(e.data_dir for e in experiments
                                                                                if data_dir_unseen(e))]
    return write_and_submit(args.command, profile, specs, args.templates, submit=args.command == "submit", notes=notes)


def command_parsers(parser: argparse.ArgumentParser,
                    path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command words, its parser) for the parser and every subcommand below it: what the docs' reference prints."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from command_parsers(sub, (*path, name))


def cmd_status(args: argparse.Namespace) -> int:
    from hpcbench.launch.submit import STATE_FILE, sweep_status

    if not (Path(args.sweep_dir) / STATE_FILE).is_file():
        raise ConfigError("SWEEP", f"{args.sweep_dir!r} has no {STATE_FILE}: not a submitted sweep")
    rows = sweep_status(args.sweep_dir)
    for row in rows:
        print(f"{row['job_id']:>12}  {row['state']:8s} {row['script']}")
    return 1 if any(row["state"] in ("failed", "blocked") for row in rows) else 0


def cmd_peak(args: argparse.Namespace) -> int:
    from hpcbench.peak import run_peak

    sizes = _int_list("sizes", args.sizes) if args.sizes else None
    record, path = run_peak(args.device, args.precision, args.out, sizes, args.iters, args.warmup, args.threads)
    m = record["metrics"]
    for row in m["shapes"]:
        print(f"  {row['m']:>6} x {row['n']} x {row['k']}: {row['tflops']:.3f} TFLOP/s")
    datasheet = (f"{m['achievable_share_of_datasheet']:.0%} of the datasheet's {m['datasheet_tflops']} TFLOP/s"
                 if m["datasheet_tflops"] else f"no datasheet peak: {m['datasheet_note']}")
    print(f"hpcbench peak: {args.precision} on {args.device}: {m['achievable_tflops']:.3f} TFLOP/s achievable "
          f"({datasheet}) -> {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from hpcbench.analysis.report import build_report

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise ConfigError("RESULTS", f"no such file or folder: {missing[0]}")
    try:
        written = build_report(args.paths, args.out)
    except ValueError as exc:
        print(f"hpcbench report: error: {exc}", file=sys.stderr)
        return 1
    for path in written.values():
        print(path)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from hpcbench import records
    from hpcbench.analysis.predict import (check_shape, format_points, predict, prediction_record, resolve_inputs,
                                           resolve_terms, write_plot)

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise ConfigError("RECORDS", f"no such file or folder: {missing[0]}")
    nodes = _int_list("nodes", args.nodes)
    check_shape(nodes, args.gpus_per_node)
    algorithms = _name_list("algorithm", args.algorithm)
    surveyed = None
    if args.survey:
        from hpcbench.analysis.survey import load_survey, surveyed_fleet

        if args.fleet_spread is not None:
            raise ConfigError("survey", "give the fleet's spread once: --survey (measured) or --fleet-spread (given)")
        surveyed = surveyed_fleet(load_survey(args.survey))
    found = resolve_inputs(args.paths, fabric=args.fabric, netbench=args.netbench, scaling=args.scaling, iobench=args.iobench)
    made, defaults = [], []
    for inputs in found:
        settings = {"fleet_spread": args.fleet_spread, "interference": args.interference,
                    "syncs_per_step": args.syncs_per_step, "no_overlap": args.no_overlap,
                    "compute_step_ms": args.compute_step_ms, "compute_samples_per_s": args.compute_samples_per_s}
        shape = {"nodes": nodes, "gpus_per_node": args.gpus_per_node, "algorithms": algorithms, "scaling": args.scaling,
                 "global_batch_size": args.global_batch_size}
        terms = resolve_terms(inputs, **settings, surveyed=surveyed)
        made.append((inputs, terms, predict(inputs, **shape, terms=terms)))
        if surveyed:
            default = resolve_terms(inputs, **settings)
            defaults.append((default, predict(inputs, **shape, terms=default)))
    config = {"nodes": nodes, "gpus_per_node": args.gpus_per_node, "algorithms": algorithms, "scaling": args.scaling,
              "global_batch_size": args.global_batch_size, "fabric": args.fabric, "netbench": args.netbench,
              "iobench": args.iobench, "survey": args.survey}
    for inputs, terms, points in made:
        record = prediction_record(inputs, points, config, terms)
        out = Path(args.out) if args.out else Path(inputs.base["path"]).parent
        records.check_out_dir(str(out))
        network_name = Path(args.fabric).stem if args.fabric else "netbench"
        path = out / f"prediction_{network_name}_{inputs.base['config']['workload']}_{record['run_id']}.json"
        records.write_atomic(path, record)
        network = inputs.network
        where = (f"fabric {network['fabric']['name']} ({network['fabric']['file']})" if network["kind"] == "fabric"
                 else f"netbench {network['backend']} fits (RMS residual "
                      f"{max(f['rms_relative_residual'] for f in network['fits'] if f['collective'] == 'all_reduce'):.1%})")
        print(format_points(points, f"PREDICTION (model v{record['config']['model_version']}, not a measurement): "
                                    f"{inputs.base['experiment']['label']} from run {inputs.base['run_id']}, {where}", terms))
        plotted = write_plot(record, path, [t.path for t in inputs.timelines.values()])
        if surveyed:
            default, others = defaults[made.index((inputs, terms, points))]
            print(f"the measured fleet ({terms.fleet_spread:.1%}) beside the default one ({default.fleet_spread:.1%}: "
                  f"{default.fleet_source.split(':')[0]}):")
            for mine, theirs in zip(points, others):
                if "refused" not in mine:
                    print(f"  {mine['algorithm']:<12}{mine['num_nodes']:>5} node(s): efficiency {mine['efficiency']:.1%} "
                          f"(measured fleet) vs {theirs['efficiency']:.1%} (default fleet)")
        print(f"-> {path}\n-> {plotted}\n")
    return 0


def cmd_list(what: str) -> int:
    if what == "fabrics":
        from hpcbench.analysis.netmodel import fabric_names, load_fabric

        for name in fabric_names():
            print(f"{name:15s} {load_fabric(name)['description']}")
        return 0
    from hpcbench.engines import ENGINES
    from hpcbench.plugins import option_flag
    from hpcbench.workloads import registry

    if what == "engines":
        for name, engine in ENGINES.classes().items():
            flags = ", ".join("--" + option_flag(f.name, engine.flag_prefix) for f in dataclasses.fields(engine.Options))
            print(f"{name:10s} {engine.description}")
            print(f"{'':10s}   options: {flags or '-'}; local launcher: {engine.local_launcher}")
        return 0
    for name, cls in sorted(registry().items()):
        workload = cls()
        defaults = ", ".join(f"{k}={v}" for k, v in workload.resolve_options({}).items()) or "-"
        print(f"{name:10s} {cls.description}")
        print(f"{'':10s}   sample: {cls.sample_unit}; batch/proc default {cls.default_batch_size}; options: {defaults}")
        print(f"{'':10s}   real data: {cls.real_data}")
        if cls.tta_data:
            options = workload.options(workload.resolve_options({}))
            targets = "; ".join(f"{quality.metric} {'>=' if quality.higher_is_better else '<='} {quality.target:g} "
                                f"with --data {data} ({quality.why})"
                                for data in dict.fromkeys((cls.tta_data, "real"))
                                if (quality := workload.quality(options, data)))
            print(f"{'':10s}   --mode tta target: {targets}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
