"""Cluster job scripts: site profiles, launchers and schedulers as independent axes, rendered by pure functions.

A sweep is one job per node count plus an aggregation job. Schedulers (`launch/schedulers/`) own
their template, directives and rendezvous address; launchers (`launch/launchers/`) own the launch
line, as tokens. Every token that comes from input is shell-quoted; every name that reaches a
directive is validated first, so `x; touch /tmp/pwned` is refused, never executed.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from hpcbench.config import RunConfig
from hpcbench.errors import ConfigError, check_at_least, check_choice
from hpcbench.files import write_atomic
from hpcbench.flags import config_to_args
from hpcbench.launch.launchers import LAUNCHERS as LAUNCHER_CLASSES
from hpcbench.launch.launchers import Shape
from hpcbench.launch.schedulers import SCHEDULERS, Raw, Scheduler
from hpcbench.resolve import resolve

LAUNCHERS = {name: cls.launchers for name, cls in SCHEDULERS.classes().items()}
"""Each scheduler's launchers, as its module declares them."""

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""Job, partition, queue, account and QoS names: what every scheduler accepts, nothing a shell reads."""
MODULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]*$")
NETWORK = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
"""A network description: free text on one line (it is shell-quoted where it reaches a script)."""
TIME_LIMIT = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$")


@dataclass(frozen=True, kw_only=True)
class SiteProfile:
    """What a site needs in every job script. Loaded from TOML; unknown keys are errors."""

    scheduler: str
    partition: str | None = None
    """Slurm partition or PBS queue."""
    account: str | None = None
    qos: str | None = None
    time_limit: str = "00:30:00"
    cpus_per_node: int = 1
    gpus_per_node: int = 0
    modules: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    """Shell lines run before the launch (the site's own, trusted like the profile file itself)."""
    container: tuple[str, ...] = ()
    """A wrapper before the Python command, e.g. ["apptainer", "exec", "--nv", "IMAGE"]."""
    python: str = field(default_factory=lambda: sys.executable)
    signal_seconds: int = 120
    """Seconds before the time limit at which the job is asked to stop and write its record."""
    system: str | None = None
    """The cluster's name in records and reports (default: the first node's host name without digits)."""
    network: str | None = None
    """The interconnect between nodes ("4x HDR200 InfiniBand", "25 GbE RoCE"): exported to every job as
    HPCBENCH_NETWORK, it is part of the system in records, so runs over different fabrics never pool."""

    def __post_init__(self) -> None:
        check_choice("scheduler", self.scheduler, SCHEDULERS.names())
        for name in ("partition", "account", "qos"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not NAME.match(value)):
                raise ConfigError(name, f"{value!r} is not a valid name (letters, digits, '.', '_', '-'; at most 64)")
        if not isinstance(self.time_limit, str) or not TIME_LIMIT.match(self.time_limit):
            raise ConfigError("time_limit", f"{self.time_limit!r} is not [D-]HH[:MM[:SS]]")
        check_at_least("cpus_per_node", self.cpus_per_node, 1)
        check_at_least("gpus_per_node", self.gpus_per_node, 0)
        check_at_least("signal_seconds", self.signal_seconds, 1)
        for module in self.modules:
            if not isinstance(module, str) or not MODULE.match(module):
                raise ConfigError("modules", f"{module!r} is not a module name")
        for name in ("setup", "container"):
            if not all(isinstance(item, str) for item in getattr(self, name)):
                raise ConfigError(name, "must be a list of strings")
        if not isinstance(self.python, str) or not self.python:
            raise ConfigError("python", "must be a command or path")
        if self.network is not None and (not isinstance(self.network, str) or not NETWORK.match(self.network)):
            raise ConfigError("network", f"{self.network!r} is not a one-line description of at most 128 characters")
        if self.system is not None and (not isinstance(self.system, str) or not NAME.match(self.system)):
            raise ConfigError("system", f"{self.system!r} is not a valid name (letters, digits, '.', '_', '-'; at most 64)")


def builtin_profiles() -> dict[str, Path]:
    folder = resources.files("hpcbench.jobs") / "profiles"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".toml")}


def load_profile(name_or_path: str) -> SiteProfile:
    """A built-in profile by name (`hpcbench render --profile local-slurm`) or a TOML file."""
    builtin = builtin_profiles()
    path = builtin.get(name_or_path) or Path(name_or_path)
    if not path.is_file():
        raise ConfigError("profile", f"{name_or_path!r} is neither a file nor one of: {', '.join(sorted(builtin))}")
    try:
        values = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("profile", f"cannot read {path}: {exc}") from None
    known = [f.name for f in dataclasses.fields(SiteProfile)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError("profile", f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(known)}")
    if "scheduler" not in values:
        raise ConfigError("profile", f"{path}: missing key 'scheduler' (one of: {', '.join(SCHEDULERS.names())})")
    for key in ("modules", "setup", "container"):
        if key in values:
            if not isinstance(values[key], list):
                raise ConfigError(key, "must be a list of strings")
            values[key] = tuple(values[key])
    return SiteProfile(**values)


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """One job of a sweep: a profile, a launcher, a shape and the worker's flags."""

    profile: SiteProfile
    launcher: str
    nodes: int
    tasks_per_node: int
    threads_per_task: int
    job_name: str
    sweep_dir: Path
    device: str
    worker_args: tuple[str, ...]
    """The rank program's arguments, but for where it writes (--out: the sweep's records)."""
    rank_module: str = "hpcbench.worker"
    """The rank program, `python -m MODULE`: the training worker, or a probe's."""
    then: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """More rank programs (module, arguments) on the same allocation, each after the one before ended well."""
    aggregate: tuple[str, ...] = ()
    """The `hpcbench` command of the job after every point (default: the report of the sweep's records)."""
    aggregate_whatever_end: bool = False
    """The job after every point runs even when one failed (it reports the failure: the survey's diagnosis)."""
    script_prefix: str = "job_"
    """The script's file name before `<nodes>n.sh`: sweeps of several experiments number them."""

    def __post_init__(self) -> None:
        check_choice("launcher", self.launcher, self.scheduler.launchers)
        check_at_least("nodes", self.nodes, 1)
        check_at_least("tasks-per-node", self.tasks_per_node, 1)
        check_at_least("threads", self.threads_per_task, 1)
        slots = self.profile.cpus_per_node
        if self.tasks_per_node * self.threads_per_task > slots:
            raise ConfigError("tasks-per-node", f"{self.tasks_per_node} tasks x {self.threads_per_task} threads "
                              f"exceed the profile's {slots} CPUs per node")
        if self.device == "cuda" and self.tasks_per_node > self.profile.gpus_per_node:
            raise ConfigError("tasks-per-node", f"{self.tasks_per_node} GPU tasks exceed the profile's "
                              f"{self.profile.gpus_per_node} GPUs per node")
        if not NAME.match(self.script_prefix):
            raise ConfigError("script_prefix", f"{self.script_prefix!r} is not a valid file name start")
        if not NAME.match(self.job_name):
            raise ConfigError("job-name", f"{self.job_name!r} is not a valid name (letters, digits, '.', '_', '-'; at most 64)")

    @property
    def records_dir(self) -> Path:
        return self.sweep_dir / "records"

    @property
    def scheduler(self) -> type[Scheduler]:
        return SCHEDULERS.get(self.profile.scheduler)


def python_command(profile: SiteProfile) -> list[str]:
    return [*profile.container, profile.python]


def launch_tokens(spec: JobSpec) -> list[str]:
    """The launch line as tokens (pure): literal tokens are quoted at rendering, Raw ones are not. Several rank
    programs run one after the other, each only if the one before succeeded (`&&`)."""
    shape = Shape(nodes=spec.nodes, tasks_per_node=spec.tasks_per_node, threads_per_task=spec.threads_per_task)
    launcher = LAUNCHER_CLASSES.get(spec.launcher)
    tokens: list[str] = []
    for module, args in ((spec.rank_module, spec.worker_args), *spec.then):
        program = ["-m", module, *args, "--out", str(spec.records_dir)]
        tokens += [*([Raw("&&")] if tokens else []), *launcher.command(shape, spec.scheduler, python_command(spec.profile), program)]
    return tokens


def quote_tokens(tokens: list[str]) -> str:
    return " ".join(token if isinstance(token, Raw) else shlex.quote(token) for token in tokens)


def _environment(templates_dir: str | Path | None) -> jinja2.Environment:
    """Site templates first (if given), then the shipped ones; undefined values are errors."""
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir:
        loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
    loaders.append(jinja2.FileSystemLoader(str(resources.files("hpcbench.jobs") / "templates")))
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters["q"] = lambda value: shlex.quote(str(value))
    return env


def _context(spec: JobSpec, kind: str, summary: str, launch_line: str, rendezvous: str) -> dict[str, Any]:
    profile = spec.profile
    return {
        "kind": kind, "summary": summary, "job_name": spec.job_name, "nodes": spec.nodes,
        "tasks_per_node": spec.tasks_per_node, "threads_per_task": spec.threads_per_task,
        "gpus_per_node": profile.gpus_per_node if spec.device == "cuda" else 0,
        "time_limit": profile.time_limit, "partition": profile.partition, "account": profile.account,
        "qos": profile.qos, "log_dir": spec.sweep_dir / "logs", "signal_seconds": profile.signal_seconds,
        "modules": profile.modules, "setup": profile.setup, "network": profile.network, "launcher": spec.launcher,
        "records_dir": spec.records_dir, "rendezvous": rendezvous, "launch_line": launch_line,
    }


def render_job(spec: JobSpec, templates_dir: str | Path | None = None) -> str:
    """The job script of one sweep point (pure: same spec, same text)."""
    summary = f"{spec.nodes} node(s) x {spec.tasks_per_node} task(s), {spec.launcher}"
    launcher = LAUNCHER_CLASSES.get(spec.launcher)
    rendezvous = spec.scheduler.rendezvous if launcher.needs_rendezvous else f"# {launcher.name}: the ranks find rank 0 themselves"
    context = _context(spec, "benchmark", summary, quote_tokens(launch_tokens(spec)), rendezvous)
    return _environment(templates_dir).get_template(spec.scheduler.template).render(context)


def render_aggregate(spec: JobSpec, templates_dir: str | Path | None = None) -> str:
    """The job that runs after all points: the sweep's report from its records."""
    one = dataclasses.replace(spec, nodes=1, tasks_per_node=1, threads_per_task=1, job_name=f"{spec.job_name}-report",
                              worker_args=())
    command = list(spec.aggregate) or ["report", str(spec.records_dir), "-o", str(spec.sweep_dir / "report")]
    context = _context(one, "aggregation", f"{command[0]} over the sweep's records",
                       quote_tokens([*python_command(spec.profile), "-m", "hpcbench", *command]), ":")
    context["launcher"] = "none"  # the report runs as a plain command, whatever launched the benchmark
    return _environment(templates_dir).get_template(spec.scheduler.template).render(context)


def plan_sweep(
    cfg: RunConfig, *, profile: SiteProfile, launcher: str | None, node_counts: list[int], tasks_per_node: int,
    threads_per_task: int | None, sweep_dir: str | Path, job_name: str, script_prefix: str = "job_",
) -> list[JobSpec]:
    """One JobSpec per node count, all validated before anything is rendered.

    The run config is checked here as the workers will check it, but devices and threads are
    the compute nodes' (from the profile), not this login node's. Without a launcher, the
    scheduler's default.
    """
    launcher = launcher or SCHEDULERS.get(profile.scheduler).default_launcher
    device = cfg.device if cfg.device != "auto" else ("cuda" if profile.gpus_per_node else "cpu")
    threads = threads_per_task or max(1, profile.cpus_per_node // tasks_per_node)
    if not node_counts:
        raise ConfigError("nodes", "needs at least one node count")
    for nodes in node_counts:
        check_at_least("nodes", nodes, 1)
    check_at_least("tasks-per-node", tasks_per_node, 1)
    for nodes in node_counts:  # options, batch (split over every job's processes when strong), data
        resolve(dataclasses.replace(cfg, device="cpu", num_procs=1, num_threads=threads), world_size=nodes * tasks_per_node,
                node_device=device, data_on_nodes=True)
    cfg = dataclasses.replace(cfg, system=cfg.system or profile.system)
    worker_args = (*config_to_args(cfg, skip=("num_procs", "out_dir", "device", "num_threads")), "--device", device,
                   "--threads", str(threads))
    return [
        JobSpec(profile=profile, launcher=launcher, nodes=n, tasks_per_node=tasks_per_node, threads_per_task=threads,
                job_name=job_name, sweep_dir=Path(sweep_dir).resolve(), device=device, worker_args=worker_args,
                script_prefix=script_prefix)
        for n in node_counts
    ]


def plan_probe(
    module: str, rank_args: list[str], *, profile: SiteProfile, launcher: str | None, node_counts: list[int],
    tasks_per_node: int, threads_per_task: int | None, device: str, sweep_dir: str | Path, job_name: str,
    script_prefix: str = "job_",
) -> list[JobSpec]:
    """A probe's jobs, one per node count, shaped as a sweep's: its rank program in place of the worker."""
    launcher = launcher or SCHEDULERS.get(profile.scheduler).default_launcher
    if not node_counts:
        raise ConfigError("nodes", "needs at least one node count")
    for nodes in node_counts:
        check_at_least("nodes", nodes, 1)
    check_at_least("tasks-per-node", tasks_per_node, 1)
    threads = threads_per_task or max(1, profile.cpus_per_node // tasks_per_node)
    return [
        JobSpec(profile=profile, launcher=launcher, nodes=n, tasks_per_node=tasks_per_node, threads_per_task=threads,
                job_name=job_name, sweep_dir=Path(sweep_dir).resolve(), device=device, worker_args=tuple(rank_args),
                rank_module=module, script_prefix=script_prefix)
        for n in node_counts
    ]


def render_sweep(specs: list[JobSpec], templates_dir: str | Path | None = None) -> dict[Path, str]:
    """Every script of the sweep, rendered in memory: file path -> text (the aggregation job last)."""
    scripts = {spec.sweep_dir / f"{spec.script_prefix}{spec.nodes}n.sh": render_job(spec, templates_dir) for spec in specs}
    if len(scripts) < len(specs):
        raise ConfigError("nodes", "a node count is given twice (one job each)")
    scripts[specs[0].sweep_dir / "aggregate.sh"] = render_aggregate(specs[0], templates_dir)
    return scripts


def write_scripts(scripts: dict[Path, str]) -> None:
    """Write rendered scripts, each atomically (only after all rendered: never half a sweep)."""
    for path, text in scripts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "logs").mkdir(exist_ok=True)
        write_atomic(path, text, mode=0o755)
