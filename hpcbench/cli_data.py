"""The input pipeline's commands: `hpcbench data make` (image files in the formats people train from) and
`hpcbench iobench` (what the storage path delivers, beside netbench)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

DATA_COMMANDS = ("data", "iobench")


def add_data_commands(commands: Any) -> None:
    from hpcbench.datafiles import DEFAULT_SHARD_SAMPLES, FORMATS

    data = commands.add_parser("data", help="make image files to train from (--data files): JPEG folders or tar shards")
    actions = data.add_subparsers(dest="action", required=True, parser_class=type(data))
    make = actions.add_parser("make", help="write N JPEG images (scikit-learn's digits, coloured, with grain) in a format")
    make.add_argument("out", metavar="OUT", help="folder to create (absent or empty)")
    make.add_argument("--format", required=True, help=f"{' or '.join(FORMATS)}")
    make.add_argument("--samples", type=int, required=True, help="images to write")
    make.add_argument("--image-size", type=int, default=64, help="square image side in pixels (default 64)")
    make.add_argument("--shard-samples", type=int, default=DEFAULT_SHARD_SAMPLES,
                      help=f"tar-shards: samples per shard (default {DEFAULT_SHARD_SAMPLES})")
    make.add_argument("--seed", type=int, default=0, help="colours and grain (default 0)")

    iobench = commands.add_parser("iobench", help="read bandwidth and samples/s from a data folder per rank, node and "
                                  "in aggregate (random small files or sequential shards), as records")
    iobench.add_argument("--data-dir", required=True, help="a folder `hpcbench data make` wrote (or an ImageFolder)")
    iobench.add_argument("--nproc", dest="nproc_list", default="1,2", help="comma-separated process counts (default 1,2)")
    iobench.add_argument("--workers", type=int, default=1, help="reader threads per rank, as --loader-workers (default 1)")
    iobench.add_argument("--seconds", type=float, default=3.0, help="reading time per point (default 3)")
    iobench.add_argument("--timeout", type=float, default=120.0, help="seconds before a stuck rank ends the job")
    iobench.add_argument("--out", default="results", help="folder for the records")


def run_data_command(args: argparse.Namespace, int_list: Any) -> int:
    from hpcbench import datafiles
    from hpcbench.errors import check_choice

    if args.command == "data":
        check_choice("format", args.format, datafiles.FORMATS)
        facts = datafiles.make(args.out, args.format, args.samples, args.image_size, shard_samples=args.shard_samples,
                               seed=args.seed)
        summary = facts.summary()
        print(f"hpcbench data: {summary['samples']} images ({args.image_size}x{args.image_size} JPEG) in "
              f"{summary['files']} {'files' if facts.format == 'jpeg-folder' else 'shards'}, "
              f"{summary['bytes'] / 2**20:.1f} MiB ({summary['bytes_per_sample'] / 1024:.1f} KiB a sample) -> {args.out}")
        return 0
    from hpcbench.iobench import IobenchConfig
    from hpcbench.launch.local import RunFailed, run_iobench

    datafiles.inspect(args.data_dir)  # missing, empty or damaged: one line before any rank starts
    cfg = IobenchConfig(data_dir=args.data_dir, workers=args.workers, seconds=args.seconds, timeout_s=args.timeout,
                        out_dir=args.out)
    for count in int_list("nproc", args.nproc_list):
        try:
            run_iobench(cfg, count)
        except RunFailed as exc:
            print(f"hpcbench iobench: failed: {exc}", file=sys.stderr)
            return 1
    return 0
