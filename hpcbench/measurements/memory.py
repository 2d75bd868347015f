"""Peak memory over the timed repeats, on every rank: CUDA's allocator peaks on a GPU, the
process's peak resident set on a CPU (the kernel keeps only a lifetime peak there, so it says so)."""

from __future__ import annotations

import resource
import sys
from typing import Any

import torch

from hpcbench.measurements.base import THROUGHPUT, Measurement, RankContext, RunFacts, register

GIB = 2**30


def peak_rss_bytes() -> int:
    """ru_maxrss: KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@register
class PeakMemory(Measurement):
    name = "peak_memory"
    order = 20

    def __init__(self, ctx: RankContext) -> None:
        super().__init__(ctx)
        self.cuda = ctx.device.type == "cuda"
        self.allocated: int | None = None
        self.reserved: int | None = None

    def start(self, window: str) -> None:
        if window == THROUGHPUT and self.cuda:
            torch.cuda.reset_peak_memory_stats(self.ctx.device)

    def stop(self, window: str, complete: bool) -> None:
        if window != THROUGHPUT or not complete:
            return
        if self.cuda:
            allocated = torch.cuda.max_memory_allocated(self.ctx.device)
            reserved = torch.cuda.max_memory_reserved(self.ctx.device)
        else:
            allocated, reserved = peak_rss_bytes(), None
        self.allocated = max(self.allocated or 0, allocated)
        self.reserved = max(self.reserved or 0, reserved) if reserved is not None else None

    def rank_result(self) -> dict[str, Any]:
        return {"peak_memory_bytes": self.allocated, "peak_reserved_bytes": self.reserved,
                "peak_memory_kind": "cuda_max_allocated" if self.cuda else "process_peak_rss"}

    @classmethod
    def merge(cls, ranks: list[dict[str, Any]], run: RunFacts) -> dict[str, Any]:
        """The largest rank's: the one that runs out first."""
        def largest_gib(key: str) -> float | None:
            values = [r.get(key) for r in ranks]
            return max(values) / GIB if values and all(v is not None for v in values) else None

        kind = ranks[0].get("peak_memory_kind")
        return {
            "peak_memory_gib": largest_gib("peak_memory_bytes"),
            "peak_reserved_gib": largest_gib("peak_reserved_bytes"),
            "peak_memory_kind": kind,
            "peak_memory_note": ("torch.cuda.max_memory_allocated over the timed repeats (reserved: the caching "
                                 "allocator's max_memory_reserved)" if kind == "cuda_max_allocated" else
                                 "the process's peak resident set since it started (getrusage ru_maxrss): the kernel "
                                 "keeps no per-window peak; includes the interpreter and libraries"),
        }
