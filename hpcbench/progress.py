"""Progress for whoever watches: a tqdm bar on a terminal, one plain line per repeat in batch logs.

`HPCBENCH_PROGRESS=bar|lines|off` overrides the choice (the default follows whether stderr is a
terminal). A bar is updated once per step, which costs well under a microsecond; it redraws at
most twice a second, and tqdm's monitor thread is switched off, so nothing wakes up inside a
timed window on its own (benchmarks/overhead.py measures the difference).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm

from hpcbench.errors import check_choice

MODES = ("bar", "lines", "off")
ENV = "HPCBENCH_PROGRESS"
REDRAW_S = 0.5

tqdm.monitor_interval = 0  # no helper thread in a rank that is being timed


def progress_mode(stream: TextIO | None = None) -> str:
    """bar on a terminal, plain lines elsewhere, unless HPCBENCH_PROGRESS says otherwise."""
    chosen = os.environ.get(ENV)
    if chosen:
        check_choice(ENV, chosen, MODES)
        return chosen
    stream = stream or sys.stderr
    try:
        return "bar" if stream.isatty() else "lines"
    except (AttributeError, ValueError):  # a closed or replaced stream
        return "lines"


class RunProgress:
    """Rank 0's view of one run: warm-up, each timed repeat, then any further window (`extra_steps`)."""

    def __init__(self, num_warmup_steps: int, num_repeats: int, num_steps: int, mode: str, extra_steps: int = 0) -> None:
        self.num_repeats = num_repeats
        self.num_steps = num_steps
        self.mode = mode
        self.repeats_done = 0
        self.bar = None
        if mode == "bar":
            self.bar = tqdm(total=num_warmup_steps + num_repeats * num_steps + extra_steps, desc="warm-up", unit="step",
                            mininterval=REDRAW_S, leave=False, dynamic_ncols=True,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps [{elapsed}<{remaining}]")

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def repeat_started(self) -> None:
        self.window_started(f"repeat {self.repeats_done + 1}/{self.num_repeats}")

    def window_started(self, name: str) -> None:
        """Drawn at once (outside any timed window): a short window may end before the next timed redraw."""
        if self.bar is not None:
            self.bar.set_description_str(name, refresh=True)

    def repeat_done(self, seconds: float) -> None:
        """Called after the window has stopped: this line is never inside a timed window."""
        self.repeats_done += 1
        if self.mode == "lines":
            self.note(f"hpcbench: repeat {self.repeats_done}/{self.num_repeats} done ({self.num_steps} steps, "
                      f"{seconds:.3f} s on rank 0)")

    def note(self, message: str) -> None:
        """A line for the log; above the bar when there is one."""
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        elif self.mode != "off":
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class SweepProgress:
    """The sweep's view: which point runs now, how many are done, how long the rest will take."""

    def __init__(self, total: int, mode: str, terminal: TextIO) -> None:
        self.total = total
        self.mode = mode
        self.started = 0
        self.bar = None
        if mode == "bar":
            self.bar = tqdm(total=total, unit="point", file=terminal, dynamic_ncols=True, mininterval=REDRAW_S,
                            bar_format="sweep {n_fmt}/{total_fmt} points |{bar}| [{elapsed}<{remaining}] {desc}")

    def point_started(self, description: str) -> None:
        self.started += 1
        if self.bar is not None:
            self.bar.set_description_str(f"now: {description}")
        elif self.mode == "lines":
            print(f"hpcbench sweep: point {self.started}/{self.total}: {description}", file=sys.stderr, flush=True)

    def point_done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.set_description_str("")
            self.bar.close()


@contextmanager
def sweep_progress(total: int) -> Iterator[SweepProgress]:
    """A sweep's progress. With a bar, everything written to stdout and stderr meanwhile (the
    workers' lines included: they inherit the descriptors) passes through one pipe and is printed
    above the bar, so the bar stays on the terminal's last line."""
    mode = progress_mode()
    if mode != "bar":
        progress = SweepProgress(total, mode, sys.stderr)
        try:
            yield progress
        finally:
            progress.close()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    terminal = os.fdopen(os.dup(saved[2]), "w", buffering=1)
    read_end, write_end = os.pipe()
    for fd in (1, 2):
        os.dup2(write_end, fd)
    os.close(write_end)
    progress = SweepProgress(total, mode, terminal)
    forwarder = threading.Thread(target=_forward_lines, args=(read_end, progress), daemon=True)
    forwarder.start()
    finished = threading.Event()
    clock = threading.Thread(target=_tick, args=(progress, finished), daemon=True)
    clock.start()
    try:
        yield progress
    finally:
        finished.set()
        clock.join()
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, original in saved.items():
            os.dup2(original, fd)  # the pipe's last write ends now belong to the workers, which have exited
            os.close(original)
        forwarder.join(timeout=2)  # a stray grandchild may hold the pipe open: never wait on it
        progress.close()
        terminal.close()


def _forward_lines(read_end: int, progress: SweepProgress) -> None:
    with os.fdopen(read_end, errors="replace") as lines:
        for line in lines:
            tqdm.write(line.rstrip("\n"), file=progress.bar.fp)



def _tick(progress: SweepProgress, finished: threading.Event) -> None:
    """Elapsed and ETA keep moving while a quiet point runs (in the launcher, never in a rank)."""
    while not finished.wait(1.0):
        progress.bar.refresh()
