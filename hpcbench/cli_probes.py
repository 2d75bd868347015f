"""The probes' commands: `hpcbench netbench` (the collectives) and `hpcbench iobench` (the storage path), on local
processes or, with --profile, as cluster jobs like a sweep's (one per node count, then a report job whose report
carries their tables)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from hpcbench.cli_cluster import add_job_flags, sweep_folder, write_and_submit
from hpcbench.errors import ConfigError
from hpcbench.records import check_out_dir

PROBE_COMMANDS = ("netbench", "iobench")
LOCAL_COUNTS = {"netbench": "2,4,… up to the cores", "iobench": "1,2"}


def add_probe_commands(commands: Any) -> None:
    netbench = commands.add_parser("netbench", help="collective bandwidth across message sizes (algbw, busbw, #wrong) "
                                   "per backend, as records")
    netbench.add_argument("--backend", dest="backends", default=None, help="comma-separated, side by side: gloo, nccl, horovod, mpi (default: gloo)")
    netbench.add_argument("--collectives", default=None, help="comma-separated: all_reduce, all_gather, reduce_scatter, broadcast (default: all)")
    netbench.add_argument("-b", "--min-bytes", default="8", help="smallest message (nccl-tests' -b; K, M, G suffixes; default 8)")
    netbench.add_argument("-e", "--max-bytes", default="256M", help="largest message (nccl-tests' -e; default 256M)")
    netbench.add_argument("-f", "--step-factor", type=int, default=2, help="size multiplier between steps (nccl-tests' -f; default 2)")
    netbench.add_argument("--sizes", default=None, help="comma-separated message sizes instead of -b/-e/-f")
    netbench.add_argument("-n", "--iters", type=int, default=20, help="timed iterations per size (default 20)")
    netbench.add_argument("-w", "--warmup", type=int, default=5, help="untimed iterations first (default 5)")
    netbench.add_argument("--check", action=argparse.BooleanOptionalAction, default=True, help="verify one result per size (#wrong; default on)")
    netbench.add_argument("--device", default=None, help="cpu or cuda (default: the backend's: gloo cpu, nccl cuda, mpi cpu)")
    netbench.add_argument("--timeout", type=float, default=120.0, help="collective timeout in seconds")

    iobench = commands.add_parser("iobench", help="read bandwidth and samples/s from a data folder per rank, node and "
                                  "in aggregate (random small files or sequential shards), as records")
    iobench.add_argument("--data-dir", required=True, help="a folder `hpcbench data make` wrote (or an ImageFolder); "
                         "with --profile, the path on the nodes")
    iobench.add_argument("--workers", type=int, default=1, help="reader threads per rank, as --loader-workers (default 1)")
    iobench.add_argument("--seconds", type=float, default=3.0, help="reading time per point (default 3)")
    iobench.add_argument("--timeout", type=float, default=120.0, help="seconds before a stuck rank ends the job")

    for name, parser in (("netbench", netbench), ("iobench", iobench)):
        parser.add_argument("--nproc", dest="nproc_list", default=None,
                            help=f"comma-separated local process counts (default: {LOCAL_COUNTS[name]})")
        parser.add_argument("--out", default="results", help="folder for the records (local processes)")
        add_job_flags(parser, required=False, what=f"{name} probes", nodes="1,2", tasks="1")
        parser.add_argument("--threads", type=int, default=None, help="with --profile: CPU threads per rank (default: "
                            "the profile's CPUs per node / tasks per node)")
        parser.add_argument("--render", action="store_true", help="with --profile: write the job scripts only, as "
                            "`hpcbench render` does (default: write and submit them)")


def run_probe_command(args: argparse.Namespace, int_list: Callable[[str, str], list[int]]) -> int:
    from hpcbench.probes import PROBES

    probe = PROBES.get(args.command)
    configs, notes = (_netbench_configs(args) if args.command == "netbench" else _iobench_configs(args))
    if args.profile:
        return _as_jobs(args, probe, configs, notes, int_list)
    for name in ("nodes", "tasks_per_node", "launcher", "job_name", "templates", "sweep_dir", "threads"):
        if getattr(args, name) is not None:
            raise ConfigError(name.replace("_", "-"), "places cluster jobs: give --profile with it (or leave it out "
                              "for local processes)")
    if args.render:
        raise ConfigError("render", "writes cluster jobs: give --profile with it")
    return _locally(args, probe, configs, int_list)


def _netbench_configs(args: argparse.Namespace) -> tuple[list[Any], list[str]]:
    from hpcbench.probes.netbench import NetbenchConfig, check_available, default_backend, parse_size, size_range

    sizes = ([parse_size(x) for x in args.sizes.split(",")] if args.sizes
             else size_range(parse_size(args.min_bytes), parse_size(args.max_bytes), args.step_factor))
    collectives = {"collectives": args.collectives.split(",")} if args.collectives else {}
    configs = [NetbenchConfig(backend=backend, device=args.device, sizes=sizes, num_iters=args.iters,
                              num_warmup=args.warmup, check=args.check, timeout_s=args.timeout, out_dir=args.out,
                              **collectives)
               for backend in (args.backends or default_backend()).split(",")]
    if not args.profile:  # the nodes' libraries and devices are checked by the job's ranks
        for cfg in configs:
            check_available(cfg)
    return configs, []


def _iobench_configs(args: argparse.Namespace) -> tuple[list[Any], list[str]]:
    from hpcbench import datafiles
    from hpcbench.probes.iobench import IobenchConfig

    notes = []
    if args.profile and not Path(args.data_dir).exists():
        notes.append(f"data-dir: {args.data_dir} is not on this host; the job's ranks check it when it starts")
    else:
        datafiles.inspect(args.data_dir)  # missing, empty or damaged: one line before any rank starts
    return [IobenchConfig(data_dir=args.data_dir, workers=args.workers, seconds=args.seconds, timeout_s=args.timeout,
                          out_dir=args.out)], notes


def _locally(args: argparse.Namespace, probe: Any, configs: list[Any],
             int_list: Callable[[str, str], list[int]]) -> int:
    from hpcbench import records
    from hpcbench.launch.local import RunFailed, run_probe
    from hpcbench.sweep import default_process_counts

    if args.nproc_list:
        counts = int_list("nproc", args.nproc_list)
    elif args.command == "netbench":
        counts = [n for n in default_process_counts() if n > 1] or [1]
    else:
        counts = [1, 2]
    for count in counts:
        if count < 1:
            raise ConfigError("nproc", f"must be at least 1, got {count}")
    check_out_dir(args.out)
    written = []
    try:
        for cfg in configs:
            for count in counts:
                run_id = records.new_run_id()
                path = records.record_path(cfg.out_dir, probe.name, probe.label(cfg), count, run_id)
                written.append(run_probe(probe.program, [*probe.command(cfg), "--run-id", run_id], probe.launcher(cfg),
                                         count, cfg.timeout_s, path))
    except RunFailed as exc:
        print(f"hpcbench {probe.name}: failed: {exc}", file=sys.stderr)
        return 1
    if probe.name == "netbench":
        from hpcbench.probes.netbench import side_by_side

        print(side_by_side([json.loads(path.read_text()) for path in written]))
    return 0


def _placed(args: argparse.Namespace) -> tuple[Any, Path]:
    """The site profile and the sweep folder of a command given --profile (no local process count with them)."""
    from hpcbench.launch.jobs import load_profile

    if args.nproc_list:
        raise ConfigError("nproc", "counts local processes; a job's ranks are --nodes x --tasks-per-node")
    if not args.sweep_dir:
        raise ConfigError("sweep-dir", "needed with --profile: the folder for the scripts, logs, records and report")
    return load_profile(args.profile), sweep_folder(args.sweep_dir)


def _as_jobs(args: argparse.Namespace, probe: Any, configs: list[Any], notes: list[str],
             int_list: Callable[[str, str], list[int]]) -> int:
    from hpcbench.launch.jobs import plan_probe

    profile, sweep_dir = _placed(args)
    node_counts = int_list("nodes", args.nodes) if args.nodes else [1, 2]
    several = len(configs) > 1
    specs = []
    for number, cfg in enumerate(configs, start=1):
        job_name = args.job_name or f"hpcbench-{probe.name}"
        specs += plan_probe(probe.program, probe.command(cfg), profile=profile, launcher=args.launcher,
                            node_counts=node_counts, tasks_per_node=args.tasks_per_node or 1, threads_per_task=args.threads,
                            device=getattr(cfg, "device", None) or "cpu", sweep_dir=sweep_dir,
                            job_name=f"{job_name}-{number:02d}" if several else job_name,
                            script_prefix=f"job_{number:02d}-{probe.label(cfg)}_" if several else "job_")
    return write_and_submit(args.command, profile, specs, args.templates, submit=not args.render, notes=notes)


def add_survey_command(commands: Any) -> None:
    survey = commands.add_parser("survey", help="measure every node of an allocation (each device's compute, links in "
                                 "two rings, storage, steadiness) and name the node, link or mount that holds a job back")
    survey.add_argument("--from", dest="source", default=None, metavar="RECORDS", help="print the diagnosis of a survey "
                        "already measured (a survey record, or a folder: its newest)")
    survey.add_argument("--history", nargs="+", default=None, metavar="RECORDS", help="each node's metrics over "
                        "many surveys against its fleet's median: the nodes that drifted from their peers, and when")
    survey.add_argument("--logs", default=None, metavar="DIR", help="with --from: the survey job's logs, read when it "
                        "wrote no survey record (the diagnosis job passes them): the node whose task failed first")
    survey.add_argument("--baseline", default=None, metavar="SURVEY", help="an earlier survey record of the same "
                        "system to judge every node against (default: the nodes' own median)")
    survey.add_argument("--workload", default="mlp", help="the short training run's workload (default mlp)")
    survey.add_argument("--steps", type=int, default=10, help="the training run's timed steps (default 10)")
    survey.add_argument("--data-dir", default=None, help="the shared data folder every node reads (default: no storage probe)")
    survey.add_argument("--alone-nodes", type=int, default=16, help="nodes that also run their matmul and their "
                        "reads alone, one at a time (a sample beyond that many: the probes whose time grows with the "
                        "nodes; default 16)")
    survey.add_argument("--link-bytes", default="16M", help="each ring message (K, M suffixes; default 16M)")
    survey.add_argument("--repeats", type=int, default=3, help="rounds of each probe (default 3)")
    survey.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    survey.add_argument("--threads", type=int, default=None, help="CPU threads per rank (default: cores / ranks here, "
                        "the profile's CPUs / tasks on a cluster)")
    survey.add_argument("--timeout", type=float, default=120.0, help="seconds before a stuck rank ends the job")
    survey.add_argument("--probe-timeout", type=float, default=60.0, help="seconds a node's own probe (matmul, storage) "
                        "may take before it is named hung and the survey goes on without it (below --timeout; default 60)")
    survey.add_argument("--nproc", dest="nproc_list", default=None, help="local processes (default 2)")
    survey.add_argument("--out", default="results", help="folder for the records (local processes)")
    add_job_flags(survey, required=False, what="survey job", nodes="2; one count: the allocation's size", tasks="1")
    survey.add_argument("--render", action="store_true", help="with --profile: write the job scripts only")


def run_survey_command(args: argparse.Namespace, int_list: Callable[[str, str], list[int]]) -> int:
    """Measure (locally or as one job over the nodes, then a job that diagnoses), or diagnose (--from)."""
    from hpcbench.probes import PROBES
    from hpcbench.probes.netbench import parse_size
    from hpcbench.probes.survey import SurveyConfig

    if args.history:
        from hpcbench.analysis.survey import format_node_history, load_surveys, node_history

        if args.source or args.profile:
            raise ConfigError("history", "reads surveys already measured: give it without --from and --profile")
        print(format_node_history(node_history(load_surveys(args.history))))
        return 0
    if args.source:
        return _print_survey(args.source, args.baseline, args.logs)
    probe = PROBES.get("survey")
    cfg = SurveyConfig(device=args.device, link_bytes=parse_size(args.link_bytes), repeats=args.repeats,
                       data_dir=args.data_dir, alone_nodes=args.alone_nodes, timeout_s=args.timeout,
                       probe_timeout_s=args.probe_timeout, out_dir=args.out)
    train = _survey_training(args)
    if args.profile:
        return _survey_job(args, probe, cfg, train, int_list)
    count = int_list("nproc", args.nproc_list)[0] if args.nproc_list else 2
    return _survey_locally(args, probe, cfg, train, count)


def _survey_training(args: argparse.Namespace) -> Any:
    """The short training run before the probes: the runner's compute-only window and per-step times per rank."""
    from hpcbench.config import RunConfig

    return RunConfig(workload=args.workload, device=args.device, num_steps=args.steps, num_warmup_steps=2,
                     num_repeats=2, breakdown=True, num_threads=args.threads, timeout_s=args.timeout, out_dir=args.out)


def _survey_locally(args: argparse.Namespace, probe: Any, cfg: Any, train: Any, count: int) -> int:
    import dataclasses

    from hpcbench import records
    from hpcbench.launch.local import RunFailed, run_local, run_probe
    from hpcbench.resolve import resolve

    check_out_dir(args.out)
    try:
        trained = run_local(resolve(dataclasses.replace(train, num_procs=count)))
        run_id = records.new_run_id()
        path = records.record_path(cfg.out_dir, probe.name, probe.label(cfg), count, run_id)
        survey_args = [*probe.command(dataclasses.replace(cfg, train_record=str(trained))), "--run-id", run_id]
        run_probe(probe.program, survey_args, probe.launcher(cfg), count, cfg.timeout_s, path)
    except RunFailed as exc:
        print(f"hpcbench survey: failed: {exc}", file=sys.stderr)
        return 1
    return _print_survey(str(path), args.baseline)


def _survey_job(args: argparse.Namespace, probe: Any, cfg: Any, train: Any,
                int_list: Callable[[str, str], list[int]]) -> int:
    import dataclasses

    from hpcbench import records
    from hpcbench.launch.jobs import plan_sweep

    profile, sweep_dir = _placed(args)
    nodes = int_list("nodes", args.nodes) if args.nodes else [2]
    if len(nodes) != 1:
        raise ConfigError("nodes", "a survey is one job over every node: give one count (the allocation's size)")
    tasks = args.tasks_per_node or 1
    run_id = records.new_run_id()
    records_dir = sweep_dir / "records"
    [spec] = plan_sweep(dataclasses.replace(train, out_dir=str(records_dir)), profile=profile, launcher=args.launcher,
                        node_counts=nodes, tasks_per_node=tasks, threads_per_task=args.threads, sweep_dir=sweep_dir,
                        job_name=args.job_name or "hpcbench-survey")
    trained = records.record_path(str(records_dir), train.workload, train.engine, nodes[0] * tasks, run_id)
    survey_args = [*probe.command(dataclasses.replace(cfg, train_record=str(trained), device=spec.device)), "--run-id", run_id]
    spec = dataclasses.replace(spec, worker_args=(*spec.worker_args, "--run-id", run_id),
                               then=((probe.program, tuple(survey_args)),),
                               aggregate=("survey", "--from", str(records_dir), "--logs", str(sweep_dir / "logs")),
                               aggregate_whatever_end=True)
    return write_and_submit("survey", profile, [spec], args.templates, submit=not args.render)


def _print_survey(source: str, baseline: str | None, logs: str | None = None) -> int:
    from hpcbench.analysis.survey import cost, diagnose, format_survey, load_survey

    try:
        record = load_survey(source)
    except ConfigError:
        if not logs:
            raise
        print(failed_survey(Path(logs).parent))  # the job ended before its record: who ended it
        return 1
    reference = load_survey(baseline, like=record) if baseline else None
    findings = diagnose(record, reference)
    print(format_survey(record, findings, cost(record, findings)))
    return 0


def failed_survey(sweep_dir: Path) -> str:
    """A survey job that ended before its record: the node whose task failed first, from the launcher's own lines in
    the job's log (srun's `srun: error: n2: task 1: Exited with exit code 3`), the ones after it, and the line that
    leaves the first out. What a node that cannot start its ranks (no Python, a missing mount) leaves behind: the
    whole job ends (`srun --kill-on-bad-exit`); this names it."""
    from hpcbench.launch.submit import failed_tasks, leave_out

    found = failed_tasks(sweep_dir)
    if found is None:
        return (f"the survey did not finish (no survey record), and no launcher's lines in {sweep_dir / 'logs'} name a "
                "failed task: see its logs")
    log, launcher, failed = found
    (first, what), after = failed[0], [(node, how) for node, how in failed[1:] if node != failed[0][0]]
    lines = [f"the survey did not finish (no survey record): the first task to fail ran on {first} ({what})"
             + (f"; after it: {', '.join(f'{node} ({how})' for node, how in after)}" if after else ""),
             f"  from {launcher}'s lines in {log}"]
    line = leave_out(sweep_dir, [first], list(dict.fromkeys(node for node, _ in after)))
    return "\n".join([*lines, *([f"to leave it out and survey the rest (the nodes the log names): {line}"] if line else [])])

