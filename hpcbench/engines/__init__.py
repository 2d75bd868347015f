"""Engines: the only package that touches torch.distributed (and, lazily, Horovod).

Importing the package registers every engine module in it; the rest of hpcbench reaches an
engine through `ENGINES` by the name in the config, never by importing its module.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from hpcbench.engines.base import ENGINES, Engine
from hpcbench.engines.discovery import Placement, discover
from hpcbench.engines.mpi import MpiCollectives
from hpcbench.plugins import import_submodules

import_submodules(__name__, __path__, skip=("base", "discovery", "horovod_install", "mpi"))


def engine_options(name: str, given: dict[str, Any]) -> Any:
    """The engine's Options from plain values (a resolved config's `engine_options`)."""
    return ENGINES.get(name).Options(**given)


def start_engine(name: str, placement: Placement, device_type: str, timeout_s: float, options: dict[str, Any]) -> Engine:
    """Start the named engine for this process; the caller closes it in a finally block."""
    return ENGINES.get(name)(placement, device_type, timeout_s, engine_options(name, options))


def engine_libraries() -> dict[str, str | None]:
    """Every engine's library version as installed here (a system fact, the same whichever engine runs)."""
    return {name: cls.library_version() for name, cls in ENGINES.classes().items()}


@dataclass(frozen=True)
class NetbenchBackend:
    """A communication library netbench can time: an engine's backend on a device, or MPI's own."""

    name: str
    device_types: tuple[str, ...]
    """The first is the default."""
    engine: str | None
    """The engine whose collectives these are (None: MPI through mpi4py)."""
    local_launcher: str


MPI_BACKEND = NetbenchBackend(MpiCollectives.backend, ("cpu", "cuda"), None, "mpirun")


def netbench_backends() -> dict[str, NetbenchBackend]:
    """Every backend by name: each engine's on each device type (the first engine to use a backend
    owns it: DDP's gloo and NCCL), then MPI."""
    found: dict[str, NetbenchBackend] = {}
    for name, cls in ENGINES.classes().items():
        for device_type in ("cpu", "cuda"):
            backend = cls.backend_for(device_type)
            known = found.get(backend)
            if known is None:
                found[backend] = NetbenchBackend(backend, (device_type,), name, cls.local_launcher)
            elif known.engine == name and device_type not in known.device_types:
                found[backend] = replace(known, device_types=(*known.device_types, device_type))
    return {**found, MPI_BACKEND.name: MPI_BACKEND}


def check_collectives_available(backend: NetbenchBackend) -> None:
    """Raise a ConfigError naming what is missing when `backend` cannot start here."""
    (MpiCollectives if backend.engine is None else ENGINES.get(backend.engine)).check_available()


def start_collectives(backend: NetbenchBackend, placement: Placement, device_type: str,
                      timeout_s: float) -> Engine | MpiCollectives:
    """The collectives of `backend` for this process; the caller closes them in a finally block."""
    if backend.engine is None:
        return MpiCollectives(placement, device_type, timeout_s)
    return start_engine(backend.engine, placement, device_type, timeout_s, {})


__all__ = ["NetbenchBackend", "check_collectives_available", "netbench_backends", "start_collectives", "ENGINES", "Engine", "Placement", "discover", "engine_libraries", "engine_options", "start_engine"]
