"""Worker entry point: one rank of a run, started by hpcbench's local launcher or by any external
launcher that sets rank variables (torchrun, srun, mpirun, horovodrun):

    torchrun --nproc-per-node 4 -m hpcbench.worker --workload cnn --out results/
"""

from __future__ import annotations

from hpcbench.guard import StopSignals

STOP = StopSignals()
if __name__ == "__main__":
    # Before the imports below, which take seconds (torch): a stop signal during start-up must
    # end the run with an `interrupted` record, not a KeyboardInterrupt traceback.
    STOP.install()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from torch.distributed.elastic.multiprocessing.errors import record  # noqa: E402

from hpcbench import records  # noqa: E402
from hpcbench.engines import discover  # noqa: E402
from hpcbench.errors import ConfigError  # noqa: E402
from hpcbench.flags import add_run_arguments, config_from_namespace  # noqa: E402
from hpcbench.resolve import resolve  # noqa: E402
from hpcbench.runner import run_worker  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hpcbench.worker", description=__doc__.splitlines()[0])
    add_run_arguments(p, skip=("num_procs",))
    p.add_argument("--run-id", default=None, help="id in the record's file name (default: start time + random)")
    p.add_argument("--record", default=None, help="the record's file (default: OUT/<workload>_<engine>_<N>p_<run id>.json, "
                   "N the world size; hpcbench's own launcher passes the path it will read)")
    return p


def refuse(exc: ConfigError) -> None:
    """One line per rank, in one write: every rank says it at once into the same stream, and
    print()'s separate writes of text and newline interleaved two ranks' lines."""
    os.write(2, f"hpcbench worker: error: {exc}\n".encode())


@record  # lets torch's elastic agent report this rank's traceback to the launcher
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    placement = discover()
    try:
        cfg = resolve(config_from_namespace(args, num_procs=placement.local_world_size), world_size=placement.world_size)
    except ConfigError as exc:
        refuse(exc)
        return 2
    run_id = args.run_id or records.new_run_id()  # only rank 0 writes, so only rank 0's id matters
    path = Path(args.record) if args.record else records.record_path(cfg.out_dir, cfg.workload, cfg.engine,
                                                                      placement.world_size, run_id)
    try:
        signum = run_worker(cfg, placement, run_id, path, STOP)
    except ConfigError as exc:  # the record's folder, refused on every rank before any step
        refuse(exc)
        return 2
    return 0 if signum is None else 128 + signum  # the shell's convention for "ended by signal N"


if __name__ == "__main__":
    code = main()
    # Skip interpreter finalization: gloo's native threads can still hold work objects then and
    # abort the process (pytorch/pytorch#179291), turning a finished run into a failed one.
    # The record is already fsynced and the process group destroyed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
