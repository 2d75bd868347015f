"""Run modes (`--mode`). Importing the package registers every module in it."""

from __future__ import annotations

from hpcbench.modes.base import RUN_MODES, RunMode, Session, register
from hpcbench.plugins import import_submodules

import_submodules(__name__, __path__)

__all__ = ["RUN_MODES", "RunMode", "Session", "register"]
