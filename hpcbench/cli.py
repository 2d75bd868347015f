"""Command line: argument parsing only; every subcommand calls library functions.

Bad input exits with status 2 and one line naming the field and what is allowed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from hpcbench.config import ConfigError, RunConfig, resolve
from hpcbench.records import check_out_dir

DEFAULT_SWEEP_WORKLOADS = "mlp,cnn"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line on stderr (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_list(field_name: str, text: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(field_name, f"{text!r} is not a comma-separated list of integers") from None
    if not values:
        raise ConfigError(field_name, "needs at least one value")
    return values


def _name_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    from hpcbench.flags import add_run_arguments

    parser = OneLineParser(prog="hpcbench", description="Distributed training benchmarks with honest scaling numbers.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    run = commands.add_parser("run", help="run one workload on N local processes and write its record")
    add_run_arguments(run)

    sweep = commands.add_parser("sweep", help="run a grid of workloads x process counts (weak scaling) and print the table")
    sweep.add_argument("--workloads", default=DEFAULT_SWEEP_WORKLOADS, help=f"comma-separated (default: {DEFAULT_SWEEP_WORKLOADS})")
    sweep.add_argument("--nproc", dest="nproc_list", default=None, help="comma-separated process counts (default: 1,2,4,… up to the cores)")
    add_run_arguments(sweep, skip=("workload", "num_procs"))

    commands.add_parser("list", help="list the workloads with their defaults and real-data option")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "sweep":
            return cmd_sweep(args)
        return cmd_list()
    except ConfigError as exc:
        print(f"hpcbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hpcbench {args.command}: interrupted", file=sys.stderr)
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    from hpcbench.flags import config_from_namespace
    from hpcbench.launch.local import RunFailed, RunInterrupted, run_local

    cfg = resolve(config_from_namespace(args))
    check_out_dir(cfg.out_dir)
    try:
        run_local(cfg)
    except RunInterrupted as exc:
        print(f"hpcbench run: {exc} (record: {exc.record_path})", file=sys.stderr)
        return 128 + exc.signum
    except RunFailed as exc:
        print(f"hpcbench run: failed: {exc} (record: {exc.record_path})", file=sys.stderr)
        return 1
    return 0


def default_process_counts() -> list[int]:
    """1, 2, 4, … up to the number of cores: the CPU demo sweep."""
    cores = os.cpu_count() or 1
    counts = [1]
    while counts[-1] * 2 <= cores:
        counts.append(counts[-1] * 2)
    return counts


def cmd_sweep(args: argparse.Namespace) -> int:
    from hpcbench.analysis import format_scaling_table, load_records, scaling_table
    from hpcbench.flags import config_from_namespace, given_options
    from hpcbench.launch.local import RunFailed, RunInterrupted, run_local
    from hpcbench.workloads import get_workload

    workloads = _name_list(args.workloads)
    if not workloads:
        raise ConfigError("workloads", "needs at least one workload")
    process_counts = _int_list("nproc", args.nproc_list) if args.nproc_list else default_process_counts()
    options = given_options(args)
    option_owners = {name: [w for w in workloads if name in get_workload(w).resolve_options({})] for name in options}
    for name, owners in option_owners.items():
        if not owners:
            raise ConfigError(name.replace("_", "-"), f"is not an option of any swept workload ({', '.join(workloads)})")

    # Validate the whole grid before running any of it.
    grid: list[RunConfig] = []
    for workload in workloads:
        mine = {k: v for k, v in options.items() if workload in option_owners[k]}
        for nproc in process_counts:
            cfg = config_from_namespace(args, workload=workload, num_procs=nproc, options=mine)
            grid.append(resolve(cfg, sweep_max_procs=max(process_counts)))
    check_out_dir(grid[0].out_dir)

    paths, failures = [], []
    interrupted: RunInterrupted | None = None
    for cfg in grid:
        try:
            paths.append(run_local(cfg))
        except RunInterrupted as exc:
            interrupted = exc
            print(f"hpcbench sweep: {cfg.workload} on {cfg.num_procs} proc(s): {exc}; the rest of the sweep is skipped", file=sys.stderr)
            break
        except RunFailed as exc:
            failures.append(f"{cfg.workload} on {cfg.num_procs} proc(s): {exc}")
            print(f"hpcbench sweep: failed: {failures[-1]}", file=sys.stderr)

    print()
    print(format_scaling_table(scaling_table(load_records(paths))))
    print(f"\n{len(paths)} record(s) in {Path(grid[0].out_dir).resolve()}; threads per process: {grid[0].num_threads}")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    if interrupted:
        return 128 + interrupted.signum
    return 1 if failures else 0


def cmd_list() -> int:
    from hpcbench.workloads import registry

    for name, cls in sorted(registry().items()):
        workload = cls()
        defaults = ", ".join(f"{k}={v}" for k, v in workload.resolve_options({}).items()) or "-"
        print(f"{name:10s} {cls.description}")
        print(f"{'':10s}   sample: {cls.sample_unit}; batch/proc default {cls.default_batch_size}; options: {defaults}")
        print(f"{'':10s}   real data: {cls.real_data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
