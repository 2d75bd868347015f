"""The index measured: 100,000 synthetic records indexed, then 100 more; history and compare over the index,
side by side with reading the same folders directly (what `report`, `compare` and `history` do without one).

Targets (issue 27): an incremental re-index with 100 new records <= 2 s; a history query <= 1 s.
The records are tests/history_records.py's (one mlp run each, 3 repeats, ~1.5 KB): 1,000 series (10
machines x 25 experiments x 4 process counts) of 100 runs a day apart with 3 % noise, torch upgraded at
run 51 and 10 % slower from there on a tenth of the series.

    python benchmarks/index.py                    # 100,000 records in a temp folder (~1.3 GB of disk incl. the index)
    python benchmarks/index.py --records 20000    # smaller
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from history_records import START, history_record  # noqa: E402  (tests/history_records.py)

from hpcbench.analysis.compare import compare  # noqa: E402
from hpcbench.analysis.history import history  # noqa: E402
from hpcbench.analysis.index import Selection, load_runs, update_index  # noqa: E402
from hpcbench.analysis.load import load_records  # noqa: E402
from hpcbench.analysis.report import build_report  # noqa: E402

MACHINES, EXPERIMENTS, SCALES, RUNS_PER_SERIES = 10, 25, (1, 2, 4, 8), 100


def write_records(root: Path, count: int, first: int = 0) -> None:
    """`count` records, series after series; run i of a series is day i. Plain writes: this is test data."""
    import numpy as np

    rng = np.random.default_rng(first)
    for number in range(first, first + count):
        series, run = divmod(number, RUNS_PER_SERIES)
        machine, rest = divmod(series, EXPERIMENTS * len(SCALES))
        experiment, scale = divmod(rest, len(SCALES))
        upgraded = run >= RUNS_PER_SERIES // 2
        level = 1000.0 * SCALES[scale] * (0.9 if upgraded and series % 10 == 0 else 1.0)
        repeats = (level * (1 + 0.03 * rng.standard_normal(3))).tolist()
        record = history_record(f"r{number:07d}", START + datetime.timedelta(days=run, seconds=series), repeats,
                                torch="2.14.1" if upgraded else "2.13.0", world_size=SCALES[scale],
                                hidden_size=64 + experiment, system=f"machine{machine:02d}x")
        folder = root / f"m{machine:02d}" / f"e{experiment:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"mlp_{number:07d}.json").write_bytes(orjson.dumps(record))


def timed(what: str, action):
    start = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - start
    print(f"  {what:<62} {seconds:8.2f} s", flush=True)
    return result, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=100)
    parser.add_argument("--no-report", action="store_true", help="skip `report` over the folders (minutes)")
    parser.add_argument("--keep", default=None, help="folder to keep the records and index in (default: a temp folder)")
    args = parser.parse_args()
    top = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="hpcbench-index-"))
    runs, db = top / "runs", top / "index.sqlite"
    try:
        print(f"{args.records} records under {runs}")
        timed(f"write {args.records} synthetic records", lambda: write_records(runs, args.records))
        first, _ = timed("index, first time", lambda: update_index([runs], db))
        print(f"    {first.summary(db)}; {db.stat().st_size / 2**20:.0f} MiB")
        _, unchanged_s = timed("index again, nothing new", lambda: update_index([runs], db))
        write_records(runs, args.new, first=args.records)
        more, incremental_s = timed(f"index again, {args.new} new", lambda: update_index([runs], db))
        assert more.added == args.new, more.summary(db)
        one = Selection(system="machine03x", experiment="hidden_size=69 ", world_size=1)  # series 320: a step

        def history_of(selection: Selection, source: list[Path]):
            return history(load_runs(source, repeats=False, selection=selection))

        (points, steps), query_s = timed("history of one series from the index", lambda: history_of(one, [db]))
        print(f"    {len(points)} runs, {len(steps)} step(s): " + "; ".join(
            f"{s.change:+.1%} at run {s.run} ({s.changed})" for s in steps.itertuples()))
        (points, steps), all_s = timed("history of every series from the index", lambda: history_of(Selection(), [db]))
        stepped = sum(1 for series in range(-(-(args.records + args.new) // RUNS_PER_SERIES)) if series % 10 == 0)
        series_count = points.groupby(["hardware_id", "experiment_id", "world_size"]).ngroups
        print(f"    {len(points)} runs, {series_count} series, {len(steps)} step(s) (made: {stepped})")

        def halves(source: list[Path]):
            frame = load_runs(source)
            middle = START + datetime.timedelta(days=RUNS_PER_SERIES // 4)
            early = frame["started"] < middle.isoformat()
            return compare(frame[early], frame[~early], 0.05)

        table, compare_s = timed("compare first and second quarter, from the index", lambda: halves([db]))
        print(f"    {len(table)} configurations, {int(table['regressed'].sum())} slower")
        _, folder_s = timed("the same folders read directly (load_records)", lambda: load_records([runs]))
        _, folder_history_s = timed("history of one series from the folders", lambda: history_of(one, [runs]))
        report_s = None
        if not args.no_report:
            _, report_s = timed("report over the folders", lambda: build_report([runs], top / "report"))
        print(f"\nincremental re-index ({args.new} new): {incremental_s:.2f} s (target <= 2 s); nothing new: "
              f"{unchanged_s:.2f} s")
        print(f"history query, one series: {query_s:.2f} s from the index vs {folder_history_s:.2f} s from the folders "
              f"({folder_history_s / query_s:.0f}x; target <= 1 s); every series: {all_s:.2f} s")
        print(f"compare over the index: {compare_s:.2f} s; reading the folders alone: {folder_s:.2f} s"
              + (f"; report over the folders: {report_s:.0f} s" if report_s is not None else ""))
    finally:
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
