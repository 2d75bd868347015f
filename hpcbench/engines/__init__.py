"""Engines: the only package that touches torch.distributed (and, lazily, Horovod).

Importing the package registers every engine module in it; the rest of hpcbench reaches an
engine through `ENGINES` by the name in the config, never by importing its module.
"""

from __future__ import annotations

from typing import Any

from hpcbench.engines.base import ENGINES, Engine
from hpcbench.engines.discovery import Placement, discover
from hpcbench.plugins import import_submodules

import_submodules(__name__, __path__, skip=("base", "discovery", "horovod_install"))


def engine_options(name: str, given: dict[str, Any]) -> Any:
    """The engine's Options from plain values (a resolved config's `engine_options`)."""
    return ENGINES.get(name).Options(**given)


def start_engine(name: str, placement: Placement, device_type: str, timeout_s: float, options: dict[str, Any]) -> Engine:
    """Start the named engine for this process; the caller closes it in a finally block."""
    return ENGINES.get(name)(placement, device_type, timeout_s, engine_options(name, options))


def engine_libraries() -> dict[str, str | None]:
    """Every engine's library version as installed here (a system fact, the same whichever engine runs)."""
    return {name: cls.library_version() for name, cls in ENGINES.classes().items()}


__all__ = ["ENGINES", "Engine", "Placement", "discover", "engine_libraries", "engine_options", "start_engine"]
