"""Engines: the only package that touches torch.distributed (and, lazily, Horovod)."""

from __future__ import annotations

from hpcbench.engines.discovery import Placement, discover


def make_engine(name: str, placement: Placement, device_type: str, timeout_s: float, horovod_options: dict | None = None):
    """Start the named engine for this process; the caller closes it in a finally block."""
    if name == "ddp":
        from hpcbench.engines.ddp import DdpEngine

        return DdpEngine(placement, device_type, timeout_s)
    if name == "horovod":
        from hpcbench.engines.horovod import HorovodEngine

        return HorovodEngine(placement, device_type, timeout_s, horovod_options or {})
    raise ValueError(f"unknown engine {name!r}")


__all__ = ["Placement", "discover", "make_engine"]
