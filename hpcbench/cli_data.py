"""The input pipeline's command: `hpcbench data make` (image files in the formats people train from; what they
deliver from storage is the iobench probe's, hpcbench.cli_probes)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

DATA_COMMANDS = ("data",)


def add_data_commands(commands: Any, wanted: Callable[[str], bool]) -> None:
    """`data`, with its arguments only when `wanted` (their defaults are hpcbench.datafiles', which imports torch)."""
    data = commands.add_parser("data", help="make image files to train from (--data files): JPEG folders or tar shards")
    if not wanted("data"):
        return
    from hpcbench.datafiles import DEFAULT_SHARD_SAMPLES, FORMATS

    actions = data.add_subparsers(dest="action", required=True, parser_class=type(data))
    make = actions.add_parser("make", help="write N JPEG images (scikit-learn's digits, coloured, with grain) in a format")
    make.add_argument("out", metavar="OUT", help="folder to create (absent or empty)")
    make.add_argument("--format", required=True, help=f"{' or '.join(FORMATS)}")
    make.add_argument("--samples", type=int, required=True, help="images to write")
    make.add_argument("--image-size", type=int, default=64, help="square image side in pixels (default 64)")
    make.add_argument("--shard-samples", type=int, default=DEFAULT_SHARD_SAMPLES,
                      help=f"tar-shards: samples per shard (default {DEFAULT_SHARD_SAMPLES})")
    make.add_argument("--seed", type=int, default=0, help="colours and grain (default 0)")


def run_data_command(args: argparse.Namespace) -> int:
    from hpcbench import datafiles
    from hpcbench.errors import check_choice

    check_choice("format", args.format, datafiles.FORMATS)
    facts = datafiles.make(args.out, args.format, args.samples, args.image_size, shard_samples=args.shard_samples,
                           seed=args.seed)
    summary = facts.summary()
    print(f"hpcbench data: {summary['samples']} images ({args.image_size}x{args.image_size} JPEG) in "
          f"{summary['files']} {'files' if facts.format == 'jpeg-folder' else 'shards'}, "
          f"{summary['bytes'] / 2**20:.1f} MiB ({summary['bytes_per_sample'] / 1024:.1f} KiB a sample) -> {args.out}")
    return 0
