"""Engines: the only package that touches torch.distributed (and, lazily, Horovod).

Importing the package registers every engine module in it; the rest of hpcbench reaches an
engine through `ENGINES` by the name in the config, never by importing its module.
"""

from __future__ import annotations

import dataclasses
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


def option_fields(name: str) -> list[dataclasses.Field]:
    return list(dataclasses.fields(ENGINES.get(name).Options))


__all__ = ["ENGINES", "Engine", "Placement", "discover", "engine_options", "option_fields", "start_engine"]
