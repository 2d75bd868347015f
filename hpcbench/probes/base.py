"""What every probe shares: its registry entry, its rank program's entry point and its record."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from hpcbench import records
from hpcbench.engines import engine_libraries
from hpcbench.errors import ConfigError
from hpcbench.plugins import Registry
from hpcbench.provenance import provenance


RANK_PROGRAM = "hpcbench.probes"
"""Every probe's rank program: `python -m hpcbench.probes NAME ARGS` (the package's __main__)."""


class Probe:
    """A probe as launch code and the command line see it: its rank program and how to call it."""

    name: ClassVar[str]
    """The record's kind and the command's name."""
    program: ClassVar[str] = RANK_PROGRAM

    @staticmethod
    def config(**values: Any) -> Any:
        """The probe's config from its command's values; a ConfigError names the field."""
        raise NotImplementedError

    @staticmethod
    def args(cfg: Any) -> list[str]:
        """The rank program's flags that reproduce `cfg` (without --out, --run-id and --record)."""
        raise NotImplementedError

    parser: ClassVar[Callable[[], argparse.ArgumentParser]]
    """The rank program's flags (with add_record_flags')."""
    measure: ClassVar[Callable[[Any, str, Path | None], int]]
    """One rank's part on a config; rank 0 writes the record. The exit code."""

    @classmethod
    def run(cls, values: dict[str, Any], run_id: str, path: Path | None) -> int:
        """One rank's part from the parsed flags."""
        return cls.measure(cls.config(**values), run_id, path)

    @classmethod
    def command(cls, cfg: Any) -> list[str]:
        """What follows `python -m hpcbench.probes` to run `cfg` on a rank."""
        return [cls.name, *cls.args(cfg)]

    @staticmethod
    def launcher(cfg: Any) -> str:
        """The local launcher its ranks start under (the collectives' own: torchrun for gloo, mpirun for MPI)."""
        raise NotImplementedError

    @staticmethod
    def label(cfg: Any) -> str:
        """The record file name's middle part (netbench_<label>_<N>p_<id>.json)."""
        raise NotImplementedError


PROBES: Registry[type[Probe]] = Registry("probe", "probe")


def add_record_flags(parser: argparse.ArgumentParser) -> None:
    """Where a rank program writes: every probe takes the same three."""
    parser.add_argument("--out", dest="out_dir", default="results", help="folder for the record")
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--record", default=None, help="record file (default: OUT/<probe>_<label>_<N>p_<run id>.json)")


def probe_main(argv: list[str]) -> None:
    """The rank program: `NAME ARGS` -> that probe's run. Bad input: one line and exit 2, before or after the
    collectives start (a record folder refused on any rank). Exits without the interpreter's teardown, as the
    training worker does (pytorch/pytorch#179291)."""
    name = argv[0] if argv else ""
    try:
        probe = PROBES.get(name)
        values = vars(probe.parser().parse_args(argv[1:]))
        run_id, record = values.pop("run_id") or records.new_run_id(), values.pop("record")
        code = probe.run(values, run_id, Path(record) if record else None)
    except ConfigError as exc:
        print(f"hpcbench {name}: error: {exc}", file=sys.stderr)
        code = 2
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def write_probe_record(*, kind: str, label: str, comm: Any, run_id: str, path: Path | None, out_dir: str,
                       config: dict[str, Any], metrics: dict[str, Any], hosts: list[str], started: str,
                       reason: str | None = None) -> Path:
    """Rank 0's record of a probe: its config, what it measured and where it ran (a `reason` marks it failed)."""
    placement = comm.placement
    path = path or records.record_path(out_dir, kind, label, placement.world_size, run_id)
    prov = provenance(hosts=hosts, engine_versions=comm.versions(), started=started, ended=records.utc_now().isoformat(),
                      launcher=placement.launcher, engine_libraries=engine_libraries())
    record = records.make_record(run_id=run_id, status="failed" if reason else "ok", reason=reason, config=config,
                                 workload=None, metrics=metrics, ranks=[], provenance=prov, kind=kind)
    records.write_atomic(path, record)
    return path
